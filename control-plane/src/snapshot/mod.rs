//! Snapshots: immutable, versioned xDS resources, encoded once.
//!
//! Owns: the shape of every resource we serve (Listener, RouteConfiguration,
//! Cluster, ClusterLoadAssignment per cluster), their encoding and versions,
//! and the task that publishes a new `Snapshot` for every weight change.
//! Must never: know about streams or clients. Every stream shares the same
//! encoded bytes.

mod build;
mod client_cap;
mod resource;
pub mod resources;
mod stage;
mod type_url;

pub use build::build;
pub use resource::{Framed, Resource};
pub use stage::run;
pub use type_url::ResourceType;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::weigh::Weighted;

/// Every resource we serve at one moment. Immutable once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Content hash of every resource version: equal snapshots have equal
    /// versions, across restarts and replicas.
    pub version: String,
    /// Position in this process's sequence of snapshots (0 = initial).
    pub sequence: u64,
    /// When it was built (monotonic), for push latency.
    pub built: Instant,
    /// When it was built (wall clock), for the admin API.
    pub built_at: SystemTime,
    /// The weights it was built from, for the admin API.
    pub weighted: Arc<Weighted>,
    resources: [BTreeMap<String, Arc<Resource>>; 4],
}

impl Snapshot {
    /// Resources of one type, by name.
    pub fn resources(&self, kind: ResourceType) -> &BTreeMap<String, Arc<Resource>> {
        &self.resources[kind.index()]
    }

    /// One resource.
    pub fn get(&self, kind: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.resources(kind).get(name)
    }

    /// Replaces one resource (tests only: snapshots are otherwise immutable).
    #[cfg(test)]
    pub(crate) fn replace_for_test(&mut self, kind: ResourceType, resource: Resource) {
        self.resources[kind.index()].insert(resource.name.clone(), Arc::new(resource));
    }
}
