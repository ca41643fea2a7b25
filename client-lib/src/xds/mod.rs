//! The xDS side: one ADS stream per process (hyperium `xds-client`, state of
//! the world), a ClusterLoadAssignment watch per cluster, and the rules for
//! what the client accepts.
//!
//! Owns: decoding and validating assignments (a resource the client cannot
//! use is NACKed with the reason), keeping the last good assignment of every
//! cluster (through NACKs, control-plane outages and reconnects), feeding
//! changes to the cluster's balancer, and saying when the control plane is
//! out of reach.
//! Must never: drop a working assignment because the control plane is away.

mod assignment;
mod follow;
mod link;
mod runtime;
mod weigh;

pub use assignment::{AssignmentResource, EDS_TYPE_URL, MAX_SERVING_ENDPOINTS};
pub use follow::follow;
pub(crate) use link::ControlPlaneLink;
pub use runtime::{OwnedRuntime, Worker};
