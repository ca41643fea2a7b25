//! What a policy is given about one endpoint at a step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::LoadReport;

/// The longest a report stays fresh however seldom its server reports.
pub(super) const LONGEST_FRESHNESS: Duration = Duration::from_secs(120);

/// One endpoint as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointInput {
    /// The balanced address.
    pub address: SocketAddr,
    /// The weight the source asked for.
    pub configured_weight: u32,
    /// Its latest validated report, fresh or not.
    pub report: Option<LoadReport>,
    /// The fraction of calls that clients saw fail (LRS), if they report.
    pub client_errors: Option<f64>,
}

impl EndpointInput {
    /// The fraction of calls that failed: the worse of what the server
    /// reported and what clients saw (a server cannot count the calls that
    /// never reached it).
    pub fn error_ratio(&self, report: &LoadReport) -> f64 {
        // More errors than requests (a server counting only successes as
        // requests) reads as every call failing, never as none.
        let calls = report.rps.max(report.eps);
        let server = if calls > 0.0 { report.eps / calls } else { 0.0 };
        server.max(self.client_error_ratio()).clamp(0.0, 1.0)
    }

    /// The fraction of calls clients saw fail (LRS), 0 when they do not
    /// report; always in `[0, 1]`.
    pub fn client_error_ratio(&self) -> f64 {
        self.client_errors
            .filter(|ratio| ratio.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    }

    /// The report, if it is younger than `expiry` at `now`, or than three
    /// of the server's report periods when it reports less often than that
    /// (up to `LONGEST_FRESHNESS`): a grpc-go or grpc-java server reports
    /// every 30 s at best, and its reports must not go stale in between.
    pub fn fresh_report(&self, now: Instant, expiry: Duration) -> Option<LoadReport> {
        self.report.filter(|report| {
            let period = report.period.unwrap_or_default().saturating_mul(3);
            let limit = expiry.max(period.min(LONGEST_FRESHNESS));
            now.saturating_duration_since(report.at) <= limit
        })
    }
}
