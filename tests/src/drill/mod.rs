//! The parts of the fault drill (`fault-drill` binary, `scripts/fault-drill.sh`):
//! real processes for two control-plane replicas sharing one config file and
//! for the backends, with `lookaside-client` under open-loop load, while the
//! drill kills, restarts, drains, adds and corrupts things.
//!
//! - [`replica`]: a `lookaside serve` replica on a shared config file, killed
//!   and restarted on its port, and its admin API;
//! - [`proxy`]: the Kubernetes-Service stand-in that sends each new
//!   connection to a live replica;
//! - [`load`]: open-loop calls through `lookaside-client`, each recorded;
//! - [`analysis`]: failed calls and convergence times from those records.
//!
//! The drill reports; it never asserts. Nothing here runs in
//! `scripts/test.sh`, except the unit tests of these modules.

pub mod analysis;
pub mod load;
pub mod proxy;
pub mod replica;
