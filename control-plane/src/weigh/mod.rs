//! Weighing: turns the registry's endpoints into the weights clients get.
//!
//! Owns: weight policies and the `Weighted` view the snapshot stage reads.
//! Policies: `static` (the source's weights, clamped to `[1, 10000]`, what
//! the stage runs today) and `utilization` (a feedback controller driven by
//! load reports; see `controller`, tested in the deterministic `simulator`,
//! not yet wired to live ORCA reports).
//! Must never: encode xDS or talk to clients.

mod controller;
mod report;
pub mod simulator;
mod stage;
mod weighted;

pub use controller::{ControllerConfig, MEAN_WEIGHT, UtilizationController, WeightReason};
pub use report::LoadReport;
pub use stage::run;
#[cfg(test)]
pub(crate) use weighted::weighted_for_test;
pub use weighted::{Weighted, WeightedCluster, WeightedEndpoint, weigh_static};
