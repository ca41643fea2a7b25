//! Discovery sources: where the set of clusters and endpoints comes from.
//!
//! Owns: reading inputs (a watched YAML file; Kubernetes EndpointSlices of
//! opted-in Services), rejecting bad input with a precise reason, and the
//! health of each source for the admin API.
//! Must never: publish a half-valid input. A rejected input leaves the last
//! good one serving.

pub mod file;
pub mod kube;
mod status;

pub use status::{SourceError, SourceState, SourceStatus};
