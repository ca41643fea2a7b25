//! Metrics the client reports through the `metrics` facade (install any
//! recorder, e.g. `metrics-exporter-prometheus`; without one they cost
//! nothing). Handles are registered once per endpoint, so a call only
//! increments an atomic.
//!
//! The facade cannot unregister a label set, so the series of a removed
//! endpoint (a deleted pod's address) stay in the recorder. Under pod
//! churn, let the recorder drop idle series, e.g.
//! `PrometheusBuilder::idle_timeout(MetricKindMask::COUNTER, ..)`. Not
//! gauges: an idle timeout drops any series that has not changed lately,
//! and `lookaside_client_control_plane_connected` or
//! `lookaside_client_usable_endpoints` may stay unchanged for hours (an
//! alert on them would go quiet). The per-endpoint gauge
//! `lookaside_client_calls_waiting_for_stream` of a removed endpoint stays.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `lookaside_client_picks_total` | cluster, endpoint | calls sent to the endpoint |
//! | `lookaside_client_ejections_total` | cluster, endpoint | connection failures that ejected it |
//! | `lookaside_client_recoveries_total` | cluster, endpoint | probes that brought it back |
//! | `lookaside_client_penalties_total` | cluster, endpoint | times it was taken out for failing calls in a row (failure accrual) |
//! | `lookaside_client_connections_total` | cluster, endpoint | HTTP/2 connections made to it (more than one: connections that ended and were replaced) |
//! | `lookaside_client_calls_waiting_for_stream` | cluster, endpoint | calls held back now because the server's `MAX_CONCURRENT_STREAMS` are all in use (raise the server's limit if this stays up) |
//! | `lookaside_client_usable_endpoints` | cluster | endpoints taking calls now |
//! | `lookaside_client_penalties_withheld_total` | cluster | runs of failed calls that took no endpoint out: its tier's cap on penalties was reached, or it was the last taking calls (rising: failures on many endpoints at once, e.g. a poison request or a bad deploy; reported at a run's threshold, 2x, 4x... and every 64x) |
//! | `lookaside_client_assignments_total` | cluster | new assignments applied |
//! | `lookaside_client_assignments_rejected_total` | cluster | assignments NACKed or unusable |
//! | `lookaside_client_transparent_retries_total` | cluster | unprocessed requests moved to another endpoint |
//! | `lookaside_client_control_plane_connected` | control_plane | clients of this process whose ADS stream to that control plane is up (1 for the usual one client); shown at 0 once it could not be reached, or has not answered within the first wait (calls go on with the last assignments) |
//! | `lookaside_client_control_plane_failures_total` | control_plane | times the control plane went from reachable to unreachable (gRFC A78's `server_failure`) |

use std::net::SocketAddr;

use metrics::{Counter, Gauge, counter, gauge};

/// Per-endpoint handles.
#[derive(Debug, Clone)]
pub(crate) struct EndpointMetrics {
    pub(crate) picks: Counter,
    pub(crate) ejections: Counter,
    pub(crate) recoveries: Counter,
    pub(crate) penalties: Counter,
}

impl EndpointMetrics {
    pub(crate) fn new(cluster: &str, endpoint: SocketAddr) -> Self {
        let labels = endpoint_labels(cluster, endpoint);
        Self {
            picks: counter!("lookaside_client_picks_total", &labels),
            ejections: counter!("lookaside_client_ejections_total", &labels),
            recoveries: counter!("lookaside_client_recoveries_total", &labels),
            penalties: counter!("lookaside_client_penalties_total", &labels),
        }
    }
}

/// The count of connections made to `endpoint` of `cluster`.
pub(crate) fn connections(cluster: &str, endpoint: SocketAddr) -> Counter {
    counter!(
        "lookaside_client_connections_total",
        &endpoint_labels(cluster, endpoint)
    )
}

/// Calls held back on the endpoint's connections, past the server's
/// stream limit.
pub(crate) fn waiting_for_stream(cluster: &str, endpoint: SocketAddr) -> Gauge {
    gauge!(
        "lookaside_client_calls_waiting_for_stream",
        &endpoint_labels(cluster, endpoint)
    )
}

/// The labels of a per-endpoint series.
fn endpoint_labels(cluster: &str, endpoint: SocketAddr) -> [(&'static str, String); 2] {
    [
        ("cluster", cluster.to_string()),
        ("endpoint", endpoint.to_string()),
    ]
}

/// Per-cluster handles.
#[derive(Debug, Clone)]
pub(crate) struct ClusterMetrics {
    pub(crate) usable: Gauge,
    pub(crate) assignments: Counter,
    pub(crate) rejected: Counter,
    pub(crate) retries: Counter,
    pub(crate) withheld: Counter,
}

impl ClusterMetrics {
    pub(crate) fn new(cluster: &str) -> Self {
        let labels = [("cluster", cluster.to_string())];
        Self {
            usable: gauge!("lookaside_client_usable_endpoints", &labels),
            assignments: counter!("lookaside_client_assignments_total", &labels),
            rejected: counter!("lookaside_client_assignments_rejected_total", &labels),
            retries: counter!("lookaside_client_transparent_retries_total", &labels),
            withheld: counter!("lookaside_client_penalties_withheld_total", &labels),
        }
    }
}

/// `error` and its sources, joined by ": " (for logs and statuses).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let next = source.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = source.source();
    }
    text
}
