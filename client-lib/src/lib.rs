//! Lookaside client: follows the weighted endpoint assignments a Lookaside
//! control plane streams over xDS, keeps a long-lived HTTP/2 connection to
//! every endpoint, and splits calls by weight.
//!
//! Layers, each in its own module:
//! - [`balance`]: the lock-free weighted picker;
//! - [`endpoint`]: one address and its HTTP/2 connection;
//! - [`cluster`]: a cluster's endpoints, ejection and probing, and the
//!   `tower::Service` tonic clients call through.
//!
//! The xDS subscription that feeds assignments comes next (issue 3).

pub mod balance;
pub mod cluster;
pub mod endpoint;
