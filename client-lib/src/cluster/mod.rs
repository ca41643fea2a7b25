//! One balanced cluster: its endpoints, the picker over the usable ones, and
//! the `tower::Service` tonic clients call through.
//!
//! Owns: applying assignments (add, re-weight, remove endpoints), ejecting
//! endpoints whose connection fails and probing them back, taking out for a
//! while those that fail calls in a row (failure accrual), and publishing an
//! immutable [`EndpointSet`] that calls read without locks.
//! Must never: talk xDS. Assignments arrive from the outside.

mod accrual;
mod balancer;
mod channel;
mod ready;
mod retry;
mod set;

pub use accrual::FailureAccrual;
pub use balancer::{Assignment, ClusterBalancer};
pub use channel::LbChannel;
pub use ready::WaitForReady;
pub use set::EndpointSet;
