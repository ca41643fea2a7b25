//! Validation of raw load reports.

use std::time::Instant;

use lookaside_proto::orca::data::OrcaLoadReport;

use crate::weigh::LoadReport;

/// Utilization above this (a fraction of one core's capacity times 100
/// cores) is not a measurement.
pub const MAX_UTILIZATION: f64 = 100.0;

/// Identical busy reports in a row after which a reporter counts as frozen.
pub const FROZEN_AFTER: u32 = 5;

/// Why a report was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// NaN or infinite.
    NotFinite,
    /// Below zero.
    Negative,
    /// Utilization above `MAX_UTILIZATION`.
    Absurd,
    /// The same busy report again and again: the reporter is stuck.
    Frozen,
}

impl Rejection {
    /// Short name for metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NotFinite => "not_finite",
            Rejection::Negative => "negative",
            Rejection::Absurd => "absurd",
            Rejection::Frozen => "frozen",
        }
    }
}

/// The outcome for one report.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Usable as is.
    Accepted(LoadReport),
    /// Usable, though inconsistent: more errors than requests (a server
    /// that counts only successes as requests). Kept as reported; the error
    /// ratio reads it as every call failing.
    Clamped(LoadReport),
    /// Dropped.
    Rejected(Rejection),
}

/// Validates one endpoint's stream of reports (it remembers the previous
/// one to spot a frozen reporter).
#[derive(Debug, Default)]
pub struct ReportValidator {
    previous: Option<(f64, f64, f64)>,
    repeats: u32,
    /// When the previous report of the current stream arrived.
    previous_at: Option<Instant>,
}

impl ReportValidator {
    /// A new stream to the same endpoint: the time between its reports is
    /// measured afresh (an outage is not a report period).
    pub fn new_stream(&mut self) {
        self.previous_at = None;
    }

    /// Judges `report`, received at `at`. The utilization used is the
    /// application utilization when the server sets one, else CPU (as gRPC's
    /// weighted_round_robin does).
    pub fn judge(&mut self, report: &OrcaLoadReport, at: Instant) -> Verdict {
        // Every report received counts for the period, rejected or not: a
        // reporter frozen for a while must not look like a slow one.
        let period = self
            .previous_at
            .replace(at)
            .map(|previous| at.saturating_duration_since(previous));
        let utilization = if report.application_utilization > 0.0 {
            report.application_utilization
        } else {
            report.cpu_utilization
        };
        let rps = report.rps_fractional;
        let eps = report.eps;
        let values = [
            utilization,
            rps,
            eps,
            report.cpu_utilization,
            report.application_utilization,
        ];
        if values.iter().any(|v| !v.is_finite()) {
            return Verdict::Rejected(Rejection::NotFinite);
        }
        if values.iter().any(|v| *v < 0.0) {
            return Verdict::Rejected(Rejection::Negative);
        }
        if utilization > MAX_UTILIZATION {
            return Verdict::Rejected(Rejection::Absurd);
        }
        let current = (utilization, rps, eps);
        let busy = utilization > 0.0 || rps > 0.0;
        if busy && self.previous == Some(current) {
            self.repeats += 1;
        } else {
            self.repeats = 0;
        }
        self.previous = Some(current);
        if self.repeats >= FROZEN_AFTER {
            return Verdict::Rejected(Rejection::Frozen);
        }
        let clamped = eps > rps;
        let accepted = LoadReport {
            utilization,
            rps,
            eps,
            at,
            period,
        };
        if clamped {
            Verdict::Clamped(accepted)
        } else {
            Verdict::Accepted(accepted)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(cpu: f64, rps: f64, eps: f64) -> OrcaLoadReport {
        OrcaLoadReport {
            cpu_utilization: cpu,
            rps_fractional: rps,
            eps,
            ..Default::default()
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let now = Instant::now();
        let mut validator = ReportValidator::default();
        assert_eq!(
            validator.judge(&report(f64::NAN, 10.0, 0.0), now),
            Verdict::Rejected(Rejection::NotFinite)
        );
        assert_eq!(
            validator.judge(&report(0.5, f64::INFINITY, 0.0), now),
            Verdict::Rejected(Rejection::NotFinite)
        );
        assert_eq!(
            validator.judge(&report(-1.0, 10.0, 0.0), now),
            Verdict::Rejected(Rejection::Negative)
        );
        assert_eq!(
            validator.judge(&report(1e9, 10.0, 0.0), now),
            Verdict::Rejected(Rejection::Absurd)
        );
    }

    #[test]
    fn sane_reports_pass_and_errors_over_requests_are_flagged() {
        let now = Instant::now();
        let mut validator = ReportValidator::default();
        assert!(
            matches!(validator.judge(&report(0.7, 100.0, 2.0), now), Verdict::Accepted(r) if r.utilization == 0.7)
        );
        // Over one core's soft limit is fine.
        assert!(matches!(
            validator.judge(&report(1.5, 100.0, 2.0), now),
            Verdict::Accepted(_)
        ));
        assert!(
            matches!(validator.judge(&report(0.7, 10.0, 20.0), now), Verdict::Clamped(r) if r.eps == 20.0 && r.rps == 10.0)
        );
        // Requests counted as successes only: every call failed.
        assert!(
            matches!(validator.judge(&report(0.05, 0.0, 500.0), now), Verdict::Clamped(r) if r.eps == 500.0 && r.rps == 0.0)
        );
    }

    #[test]
    fn the_report_period_is_measured_within_one_stream() {
        let start = Instant::now();
        let mut validator = ReportValidator::default();
        let period = |verdict| match verdict {
            Verdict::Accepted(r) | Verdict::Clamped(r) => r.period,
            Verdict::Rejected(_) => None,
        };
        assert_eq!(
            period(validator.judge(&report(0.5, 10.0, 0.0), start)),
            None
        );
        let later = start + Duration::from_secs(30);
        assert_eq!(
            period(validator.judge(&report(0.6, 10.0, 0.0), later)),
            Some(Duration::from_secs(30))
        );
        // Rejected reports count too: a frozen reporter is not a slow one.
        let garbage = later + Duration::from_secs(1);
        assert!(matches!(
            validator.judge(&report(f64::NAN, 10.0, 0.0), garbage),
            Verdict::Rejected(_)
        ));
        assert_eq!(
            period(validator.judge(&report(0.6, 10.0, 0.0), garbage + Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        // A reconnect is not a report period.
        validator.new_stream();
        let after_outage = later + Duration::from_secs(300);
        assert_eq!(
            period(validator.judge(&report(0.7, 10.0, 0.0), after_outage)),
            None
        );
    }

    #[test]
    fn application_utilization_wins_when_set() {
        let mut validator = ReportValidator::default();
        let mut with_app = report(0.2, 10.0, 0.0);
        with_app.application_utilization = 0.9;
        assert!(
            matches!(validator.judge(&with_app, Instant::now()), Verdict::Accepted(r) if r.utilization == 0.9)
        );
    }

    #[test]
    fn a_frozen_busy_reporter_is_caught_but_an_idle_one_is_not() {
        let now = Instant::now();
        let mut validator = ReportValidator::default();
        let mut verdicts = Vec::new();
        for _ in 0..=FROZEN_AFTER {
            verdicts.push(validator.judge(&report(0.63, 120.0, 1.0), now));
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Rejected(Rejection::Frozen)));
        assert!(
            verdicts[..FROZEN_AFTER as usize]
                .iter()
                .all(|v| matches!(v, Verdict::Accepted(_)))
        );
        // A change thaws it.
        assert!(matches!(
            validator.judge(&report(0.64, 121.0, 1.0), now),
            Verdict::Accepted(_)
        ));

        let mut idle = ReportValidator::default();
        for _ in 0..20 {
            assert!(matches!(
                idle.judge(&report(0.0, 0.0, 0.0), now),
                Verdict::Accepted(_)
            ));
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn value() -> impl Strategy<Value = f64> {
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-1.0),
                Just(0.0),
                Just(1e9),
                -10.0..200.0f64,
                any::<f64>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Whatever a server sends, an accepted report is finite,
            /// non-negative, at most MAX_UTILIZATION, with requests and
            /// errors as reported.
            #[test]
            fn accepted_reports_are_always_sane(
                reports in proptest::collection::vec((value(), value(), value(), value()), 1..20)
            ) {
                let mut validator = ReportValidator::default();
                let now = Instant::now();
                for (cpu, app, rps, eps) in reports {
                    let report = OrcaLoadReport {
                        cpu_utilization: cpu,
                        application_utilization: app,
                        rps_fractional: rps,
                        eps,
                        ..Default::default()
                    };
                    if let Verdict::Accepted(r) | Verdict::Clamped(r) = validator.judge(&report, now) {
                        prop_assert!(r.utilization.is_finite() && r.utilization >= 0.0);
                        prop_assert!(r.utilization <= MAX_UTILIZATION);
                        prop_assert!(r.rps.is_finite() && r.rps >= 0.0);
                        prop_assert!(r.eps.is_finite() && r.eps >= 0.0);
                        prop_assert_eq!((r.rps, r.eps), (rps, eps));
                    }
                }
            }
        }
    }
}
