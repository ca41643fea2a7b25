//! Weighing: turns the registry's endpoints and their latest load into the
//! weights clients get.
//!
//! Owns: the weight policies, chosen per cluster: `static` (the source's
//! weights), `utilization` (a feedback controller, `controller`) and `wrr`
//! (gRPC's A58 formula, `wrr`); what they share (`render`: stale endpoints
//! get the mean, bounds, slow start); each cluster's state (`cluster`); and
//! the task that steps them and decides when to push (`stage`). The
//! deterministic `simulator` runs the same code against modelled servers.
//! Must never: encode xDS, talk to clients or open connections; load comes
//! in through the load table, time through arguments.

mod cluster;
mod config;
mod controller;
mod input;
mod reason;
mod render;
mod report;
pub mod simulator;
mod stage;
mod weighted;
mod wrr;

pub use cluster::{ClusterWeigher, largest_change, next_push};
pub use config::{ControllerConfig, WeighConfig};
pub use controller::UtilizationController;
pub use input::EndpointInput;
pub use reason::WeightReason;
pub use render::MEAN_WEIGHT;
pub use report::LoadReport;
pub use stage::{Weigher, run};
#[cfg(test)]
pub(crate) use weighted::weighted_for_test;
pub use weighted::{Weighted, WeightedCluster, WeightedEndpoint};
