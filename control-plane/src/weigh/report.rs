//! What a weight policy knows about one endpoint's load.

use std::time::{Duration, Instant};

/// The latest load report of an endpoint, already validated (finite,
/// non-negative, clamped) by the load stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// CPU (or application) utilization, a fraction of capacity; may exceed 1.
    pub utilization: f64,
    /// Requests per second it served.
    pub rps: f64,
    /// Errors per second it returned.
    pub eps: f64,
    /// When the report arrived.
    pub at: Instant,
    /// How long after the previous report of the same stream it came (the
    /// interval the server keeps, which may be longer than asked: grpc-go
    /// and grpc-java servers send one per 30 s at most by default); `None`
    /// for a stream's first report.
    pub period: Option<Duration>,
}

impl LoadReport {
    /// Whether it carries a utilization: 0 is ORCA's "not set" (a server
    /// that serves ORCA but records none), never "idle", as gRPC's
    /// weighted_round_robin reads it.
    pub fn measured(&self) -> bool {
        self.utilization > 0.0
    }
}
