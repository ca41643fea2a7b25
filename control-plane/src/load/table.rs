//! The latest validated load of every endpoint: written by the ORCA streams
//! (each writes only its own endpoint) and the collector, read by the weigh
//! stage and the admin API. It also holds the clients' LRS view.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;

use super::{ClientLoads, Rejection, Verdict};
use crate::telemetry::Metrics;
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
    /// Why the stream last failed, e.g. the server does not serve ORCA.
    pub last_error: Option<String>,
    /// Wanted but not watched: this replica is at its stream cap.
    pub over_cap: bool,
}

/// Every watched endpoint's load, keyed by the address its reports come
/// from. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LoadTable {
    endpoints: Arc<DashMap<SocketAddr, EndpointLoad>>,
    clients: ClientLoads,
    metrics: Option<Arc<Metrics>>,
}

impl LoadTable {
    /// A table that also counts report outcomes in `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Self {
            endpoints: Arc::default(),
            clients: ClientLoads::default(),
            metrics: Some(metrics),
        }
    }

    /// What clients report of each endpoint (LRS), keyed by the address
    /// they call.
    pub fn clients(&self) -> &ClientLoads {
        &self.clients
    }

    /// The load of `address`, if it is watched.
    pub fn get(&self, address: &SocketAddr) -> Option<EndpointLoad> {
        self.endpoints.get(address).map(|e| e.value().clone())
    }

    /// The latest accepted report of `address`, if any.
    pub fn report(&self, address: &SocketAddr) -> Option<LoadReport> {
        self.endpoints.get(address).and_then(|e| e.report)
    }

    pub(crate) fn update(&self, address: SocketAddr, change: impl FnOnce(&mut EndpointLoad)) {
        change(&mut self.endpoints.entry(address).or_default());
    }

    /// Like `update`, but only while `address` is watched: a stream that
    /// was just stopped must not bring its entry back.
    pub(crate) fn update_watched(
        &self,
        address: SocketAddr,
        change: impl FnOnce(&mut EndpointLoad),
    ) {
        if let Some(mut load) = self.endpoints.get_mut(&address) {
            change(&mut load);
        }
    }

    /// Records the verdict on one report of `address`.
    pub(crate) fn record(&self, address: SocketAddr, verdict: Verdict) {
        let outcome = match &verdict {
            Verdict::Accepted(_) => "accepted",
            Verdict::Clamped(_) => "clamped",
            Verdict::Rejected(reason) => reason.as_str(),
        };
        if let Some(metrics) = &self.metrics {
            metrics
                .load_reports
                .get_or_create(&Metrics::report(outcome))
                .inc();
        }
        self.update_watched(address, |load| match verdict {
            Verdict::Accepted(report) | Verdict::Clamped(report) => {
                load.report = Some(report);
                load.accepted += 1;
            }
            Verdict::Rejected(reason) => {
                load.rejected += 1;
                load.last_rejection = Some(reason);
            }
        });
    }

    pub(crate) fn remove(&self, address: &SocketAddr) {
        self.endpoints.remove(address);
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
