//! The latest validated load of every endpoint: written by the ORCA streams
//! (each writes only its own endpoint), read by the weigh stage and the
//! admin API.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;

use super::Rejection;
use crate::weigh::LoadReport;

/// What is known of one endpoint's load.
#[derive(Debug, Clone, Default)]
pub struct EndpointLoad {
    /// The latest accepted report.
    pub report: Option<LoadReport>,
    /// Reports accepted so far.
    pub accepted: u64,
    /// Reports dropped so far, and the latest reason.
    pub rejected: u64,
    /// Why the latest dropped report was dropped.
    pub last_rejection: Option<Rejection>,
    /// Whether the ORCA stream is up.
    pub connected: bool,
}

/// Every endpoint's load. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LoadTable {
    endpoints: Arc<DashMap<SocketAddr, EndpointLoad>>,
}

impl LoadTable {
    /// The load of `address`, if it is watched.
    pub fn get(&self, address: &SocketAddr) -> Option<EndpointLoad> {
        self.endpoints.get(address).map(|e| e.value().clone())
    }

    pub(crate) fn update(&self, address: SocketAddr, change: impl FnOnce(&mut EndpointLoad)) {
        change(&mut self.endpoints.entry(address).or_default());
    }

    /// Number of endpoints watched.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no endpoint is watched.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}
