//! Why an endpoint has the weight it has.

/// Why an endpoint has its weight, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightReason {
    /// The source's weight (`static` policy).
    Configured,
    /// No endpoint of the cluster reports load yet: the source's weights.
    NoReports,
    /// Moved by the `utilization` controller from fresh reports.
    Feedback,
    /// The `wrr` formula over fresh reports.
    Formula,
    /// No fresh report (stream down, expired, over the stream cap, or
    /// rejected reports): the mean of the cluster's fed endpoints.
    Stale,
    /// Ramping up after it appeared.
    SlowStart,
    /// Held up by the max/min weight ratio bound.
    Bounded,
    /// Reports (nearly) 100 % utilization: it cannot show how far past its
    /// capacity it is, so its share is cut harder and faster.
    Saturated,
}

impl WeightReason {
    /// The name shown by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightReason::Configured => "configured",
            WeightReason::NoReports => "no_reports",
            WeightReason::Feedback => "feedback",
            WeightReason::Formula => "wrr_formula",
            WeightReason::Stale => "stale",
            WeightReason::SlowStart => "slow_start",
            WeightReason::Bounded => "bounded",
            WeightReason::Saturated => "saturated",
        }
    }
}
