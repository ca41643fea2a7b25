//! The `wrr` policy: gRPC's weighted round robin formula (gRFC A58),
//! computed by the control plane so every client family gets it:
//! `weight = qps / (utilization + eps / qps * error_penalty)`.
//!
//! An endpoint whose report has no requests or no utilization has no
//! weight (A58 treats it the same) and gets the mean. Stateless: each step
//! uses the latest fresh report.
//!
//! Owns: the formula. Must never: keep history; that is `controller`'s way.

use std::time::{Duration, Instant};

use super::{EndpointInput, WeightReason};

/// Raw weights for `inputs` at `now` (`None`: no usable fresh report).
pub(super) fn weigh(
    inputs: &[EndpointInput],
    now: Instant,
    expiry: Duration,
    error_penalty: f64,
    saturated_at: f64,
) -> Vec<Option<(f64, WeightReason)>> {
    inputs
        .iter()
        .map(|input| {
            let report = input.fresh_report(now, expiry)?;
            if report.rps <= 0.0 || !report.measured() {
                return None;
            }
            let load = report.utilization + input.error_ratio(&report) * error_penalty;
            let reason = if report.utilization >= saturated_at {
                WeightReason::Saturated
            } else {
                WeightReason::Formula
            };
            Some((report.rps / load, reason))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::weigh::LoadReport;

    fn input(utilization: f64, rps: f64, eps: f64, at: Instant) -> EndpointInput {
        EndpointInput {
            address: SocketAddr::from(([10, 0, 0, 1], 1)),
            configured_weight: 1,
            client_errors: None,
            report: Some(LoadReport {
                utilization,
                rps,
                eps,
                at,
                period: None,
            }),
        }
    }

    #[test]
    fn weight_is_qps_per_utilization_with_an_error_penalty() {
        let now = Instant::now();
        let expiry = Duration::from_secs(10);
        let out = weigh(
            &[
                input(0.5, 100.0, 0.0, now),
                input(0.5, 50.0, 0.0, now),
                input(0.5, 100.0, 50.0, now),
                input(0.0, 100.0, 0.0, now),
            ],
            now,
            expiry,
            1.0,
            0.95,
        );
        let weights: Vec<Option<f64>> = out.iter().map(|w| w.map(|(w, _)| w)).collect();
        assert_eq!(weights, vec![Some(200.0), Some(100.0), Some(100.0), None]);
    }

    #[test]
    fn more_errors_than_requests_never_raise_a_weight() {
        // A server counting only successes as requests: 10 served, 20
        // failed. Its weight stays the requests over a load of every call
        // failing; it must not grow with the errors.
        let now = Instant::now();
        let out = weigh(
            &[
                input(0.5, 10.0, 0.0, now),
                input(0.5, 10.0, 20.0, now),
                input(0.5, 0.0, 500.0, now),
            ],
            now,
            Duration::from_secs(10),
            1.0,
            0.95,
        );
        let weights: Vec<Option<f64>> = out.iter().map(|w| w.map(|(w, _)| w)).collect();
        assert_eq!(weights, vec![Some(20.0), Some(10.0 / 1.5), None]);
    }

    #[test]
    fn an_expired_report_gives_no_weight() {
        let then = Instant::now();
        let now = then + Duration::from_secs(11);
        let out = weigh(
            &[input(0.5, 100.0, 0.0, then)],
            now,
            Duration::from_secs(10),
            1.0,
            0.95,
        );
        assert_eq!(out, vec![None]);
    }
}
