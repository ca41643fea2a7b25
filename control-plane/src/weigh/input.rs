//! What a policy is given about one endpoint at a step.

use std::net::SocketAddr;
use std::time::Instant;

use super::LoadReport;

/// One endpoint as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointInput {
    /// The balanced address.
    pub address: SocketAddr,
    /// The weight the source asked for.
    pub configured_weight: u32,
    /// Its latest validated report, fresh or not.
    pub report: Option<LoadReport>,
}

impl EndpointInput {
    /// The report, if it is younger than `expiry` at `now`.
    pub fn fresh_report(&self, now: Instant, expiry: std::time::Duration) -> Option<LoadReport> {
        self.report
            .filter(|report| now.saturating_duration_since(report.at) <= expiry)
    }
}
