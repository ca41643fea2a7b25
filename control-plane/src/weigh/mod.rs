//! Weighing: turns the registry's endpoints into the weights clients get.
//!
//! Owns: weight policies and the `Weighted` view the snapshot stage reads.
//! Today the policy is `static` (the source's weights, clamped to
//! `[1, 10000]`); load-driven policies plug in here.
//! Must never: encode xDS or talk to clients.

mod stage;
mod weighted;

pub use stage::run;
#[cfg(test)]
pub(crate) use weighted::weighted_for_test;
pub use weighted::{Weighted, WeightedCluster, WeightedEndpoint, weigh_static};
