//! End-to-end test fixtures for Lookaside.
//!
//! The tests in `tests/tests/` run the real `lookaside` binary against real
//! xDS clients (Envoy, gRPC Python, grpcurl, hyperium `tonic-xds`, and our own
//! `lookaside-client` through the `lb-load` binary) and real gRPC backends,
//! each in its own process. This library starts and stops those
//! processes and reads what they report; one concept per module:
//!
//! - [`workspace`]: where the repository and its built binaries are;
//! - [`peers`]: where the installed third-party peers are;
//! - [`process`]: a child process that is killed on drop and keeps its output;
//! - [`poll`]: waiting for a condition with a deadline;
//! - [`config`]: writing Lookaside config files;
//! - [`control_plane`]: a running `lookaside serve`, killed and restarted on
//!   its port;
//! - [`backend`]: running test backends (`test-backend`, the Echo service),
//!   stopped gracefully or killed;
//! - [`orca_backend`]: running ORCA backends (`orca-backend`, `lookaside
//!   demo`'s backend with a modelled capacity, reporting its utilization);
//! - [`balance`]: open-loop load through `lookaside-client` onto ORCA
//!   backends, and how evenly it lands (shares, utilization max/mean);
//! - [`echo`]: the Echo service's generated code;
//! - [`load`]: sending calls to the Echo service and counting where they land;
//! - [`client_load`]: the same through `lookaside-client`, from the `lb-load`
//!   binary, with progress while it runs;
//! - [`split`]: per-backend call counts and how they compare to weights;
//! - [`envoy`]: a running Envoy fed by ADS;
//! - [`http`]: the tiny HTTP/1.1 client that reads Envoy's admin pages;
//! - [`python`]: a running gRPC Python xDS client;
//! - [`python_backend`]: a running gRPC Python (C-core) backend;
//! - [`grpcurl`]: running grpcurl;
//! - [`drill`]: the fault drill's replicas, proxy, load and analysis.
//!
//! Everything here returns `anyhow::Result`: a fixture that cannot do its job
//! says why, and the test decides to fail.
//!
//! Running: `scripts/test.sh` installs the peers (`scripts/install-peers.sh`,
//! into `$LOOKASIDE_PEERS`, default `<repo>/.peers`), builds every binary
//! (`cargo build --workspace --all-targets`) and runs the whole suite. After
//! that, `cargo nextest run -p lookaside-tests` reruns just these tests; they
//! run the `lookaside` and `test-backend` binaries found next to the test
//! executables, so rebuild the workspace after changing the control plane.
//! Missing peers or binaries fail the tests with a message saying which
//! command to run; nothing is skipped.

pub mod backend;
pub mod balance;
pub mod client_load;
pub mod config;
pub mod control_plane;
pub mod drill;
pub mod echo;
pub mod envoy;
pub mod grpcurl;
pub mod http;
pub mod load;
pub mod orca_backend;
pub mod peers;
pub mod poll;
pub mod process;
pub mod python;
pub mod python_backend;
pub mod quiet;
pub mod soak;
pub mod split;
pub mod workspace;
