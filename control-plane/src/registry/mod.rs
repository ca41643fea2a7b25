//! The registry: every cluster and its endpoints, merged from all discovery
//! sources, one value per cluster name.
//!
//! Owns: the domain model (`Cluster`, `Endpoint`, `Health`, `Locality`) and the
//! merged view that the weigh stage reads.
//! Must never: know about weights policies, xDS encoding or clients.

mod cluster;
mod store;

pub use cluster::{Cluster, Endpoint, Health, Locality, MAX_WEIGHT, MIN_WEIGHT, OrcaPort, Policy};
pub use store::{Registry, RegistryWriter, SourceId};
