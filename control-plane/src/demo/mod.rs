//! `lookaside demo`: Lookaside on one screen. One process runs a control
//! plane, demo backends of different capacities that report their
//! utilization over ORCA, and a client sending open-loop load through
//! `lookaside-client`; every second a table shows each backend's capacity,
//! weight, share of calls, utilization and latency. Halfway through, one
//! backend slows down and the weights follow.
//!
//! One concept per module:
//! - `busy`: busy worker-time and utilization over a sliding window;
//! - `workers`: the capacity model (K workers, a cost per call, a slowdown);
//! - `backend`: a greeter server on those workers with the ORCA reporter;
//! - `greeter`: the generated `helloworld.Greeter` code;
//! - `load`: the open-loop load generator;
//! - `stats`: calls per backend, latency percentiles, max/mean;
//! - `table`: the per-second table;
//! - `narration`: the words around it (introduction, banner, summary);
//! - `options`: what a run is, checked;
//! - `run`: one run, start to end;
//! - `error`: why a run could not happen.
//!
//! `DemoBackend` and `LoadGenerator` are also what the end-to-end tests and
//! benchmarks of weights that follow load run on.
//!
//! Owns: everything the demo starts, for the length of the run.
//! Must never: change how the control plane or the client work; the demo
//! uses them exactly as a deployment does (config file, xDS, ORCA).

mod backend;
mod busy;
mod error;
mod greeter;
mod load;
mod narration;
mod options;
mod run;
mod stats;
mod table;
mod workers;

pub use backend::{DemoBackend, DemoBackendConfig, MIN_REPORT_INTERVAL, PUBLISH_EVERY};
pub use busy::BusyMeter;
pub use error::DemoError;
pub use greeter::helloworld;
pub use load::LoadGenerator;
pub use narration::Phase;
pub use options::{DemoOptions, MAX_BACKENDS};
pub use run::{CLUSTER, DemoOutcome, run};
pub use stats::{BackendCalls, CallWindow, max_over_mean};
pub use workers::{UTILIZATION_WINDOW, Workers};
