//! Lookaside client: follows the weighted endpoint assignments a Lookaside
//! control plane streams over xDS, keeps a long-lived HTTP/2 connection to
//! every endpoint, and splits calls by weight.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let lb = lookaside_client::Client::connect("http://lookaside.lookaside-system:18000").await?;
//! let channel = lb.channel("greeter"); // give it to any tonic-generated client
//! # let _ = channel;
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each in its own module, data flowing down:
//! - [`xds`]: the ADS subscription and what the client accepts;
//! - [`cluster`]: a cluster's endpoints, ejection and probing, penalties
//!   for endpoints that fail calls in a row, and the `tower::Service` tonic
//!   clients call through;
//! - [`endpoint`]: one address and its HTTP/2 connection;
//! - [`balance`]: the lock-free weighted picker;
//! - `load`: what the calls to each endpoint did (issued, succeeded,
//!   failed, in progress), reported back to the control plane over LRS.
//!
//! And for backends: [`orca`], the load reporter a tonic server links in.
//!
//! Metrics go through the `metrics` facade (see the `telemetry` module's
//! table); logs and spans through `tracing`, with cluster and endpoint.

pub mod balance;
mod client;
mod clock;
pub mod cluster;
pub mod endpoint;
mod load;
pub mod orca;
mod telemetry;
pub mod xds;

pub use client::{Client, ClientBuilder, ClientError};
pub use cluster::{FailureAccrual, LbChannel, WaitForReady};
