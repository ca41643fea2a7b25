//! What a weight policy knows about one endpoint's load.

use std::time::Instant;

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
}
