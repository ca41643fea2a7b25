//! One cluster's weigher: its policy's state, slow-start ages, and the
//! push decision.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::{EndpointInput, UtilizationController, WeighConfig, WeightReason, render, wrr};
use crate::registry::{MAX_WEIGHT, MIN_WEIGHT, Policy};

/// A cluster's policy and everything it remembers between steps.
#[derive(Debug, Clone)]
pub struct ClusterWeigher {
    policy: Policy,
    config: WeighConfig,
    controller: UtilizationController,
    /// Steps each endpoint has been in the cluster, for slow start.
    ages: BTreeMap<SocketAddr, u32>,
}

impl ClusterWeigher {
    /// A weigher running `policy`.
    pub fn new(policy: Policy, config: WeighConfig) -> Self {
        Self {
            policy,
            controller: UtilizationController::new(config.controller.clone()),
            config,
            ages: BTreeMap::new(),
        }
    }

    /// The policy it runs.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Weights and reasons for `inputs` at `now`, in their order. With
    /// `advance`, this is a control step (reports are acted on, new
    /// endpoints age); without, only membership changed.
    pub fn weigh(
        &mut self,
        inputs: &[EndpointInput],
        now: Instant,
        advance: bool,
    ) -> Vec<(u32, WeightReason)> {
        let ages = self.sync_ages(inputs, advance);
        let raw = match self.policy {
            Policy::Static => return render::configured(inputs, WeightReason::Configured),
            Policy::Utilization => self.controller.weigh(inputs, now, advance),
            Policy::Wrr => wrr::weigh(
                inputs,
                now,
                self.config.controller.expiry,
                self.config.wrr_error_penalty,
                self.config.controller.saturated_at,
            ),
        };
        render::render(inputs, &raw, &ages, &self.config.controller)
    }

    /// Tells the policy which weights were pushed for `inputs` (they may
    /// differ from what it computed: held back by the threshold, limited by
    /// the per-push cap).
    pub fn pushed(&mut self, inputs: &[EndpointInput], pushed: &[(u32, WeightReason)]) {
        if self.policy == Policy::Utilization {
            self.controller.pushed(inputs, pushed);
        }
    }

    fn sync_ages(&mut self, inputs: &[EndpointInput], advance: bool) -> Vec<u32> {
        // Endpoints present when the cluster is first seen need no
        // protecting: nobody sends them traffic yet.
        let initial = if self.ages.is_empty() {
            self.config.controller.slow_start_steps
        } else {
            0
        };
        // A set: membership is checked for every endpoint of the cluster.
        let present: std::collections::BTreeSet<SocketAddr> =
            inputs.iter().map(|i| i.address).collect();
        self.ages.retain(|address, _| present.contains(address));
        inputs
            .iter()
            .map(|input| {
                let age = self.ages.entry(input.address).or_insert(initial);
                if advance {
                    *age = age.saturating_add(1);
                }
                *age
            })
            .collect()
    }
}

/// The weights to push after a control step, if any: `candidate` when some
/// endpoint's share moved from `published` by more than the push threshold,
/// each share limited to within `max_push_change` of its published value
/// (`saturated_fall` times that while some endpoint is saturated). Shares,
/// not raw weights, are compared: the scale of weights is arbitrary (a
/// source's 1/2/7 and a policy's 1000-based weights say the same thing).
pub fn next_push(
    published: &[u32],
    candidate: &[(u32, WeightReason)],
    config: &WeighConfig,
) -> Option<Vec<u32>> {
    let threshold = config.push_threshold;
    let max_change = config.max_push_change;
    // While an endpoint is saturated, shares may move faster both ways: its
    // share falls and the others must take it.
    let max_change = if candidate
        .iter()
        .any(|(_, reason)| *reason == WeightReason::Saturated)
    {
        max_change * config.saturated_fall
    } else {
        max_change
    };
    let candidate: Vec<u32> = candidate.iter().map(|(w, _)| *w).collect();
    let candidate = candidate.as_slice();
    if published.len() != candidate.len() {
        return Some(candidate.to_vec());
    }
    if largest_change(published, candidate) <= threshold {
        return None;
    }
    // In share space: clamp each share to the band around its published
    // share, renormalize, repeat (renormalizing can push a share back out).
    let old_total: f64 = published.iter().map(|&w| f64::from(w)).sum();
    let new_total: f64 = candidate.iter().map(|&w| f64::from(w)).sum();
    if old_total <= 0.0 || new_total <= 0.0 {
        return Some(candidate.to_vec());
    }
    let old_shares: Vec<f64> = published
        .iter()
        .map(|&w| f64::from(w) / old_total)
        .collect();
    let mut shares: Vec<f64> = candidate
        .iter()
        .map(|&w| f64::from(w) / new_total)
        .collect();
    for _ in 0..8 {
        for (share, old) in shares.iter_mut().zip(&old_shares) {
            *share = share.clamp(old / (1.0 + max_change), old * (1.0 + max_change));
        }
        let total: f64 = shares.iter().sum();
        for share in &mut shares {
            *share /= total;
        }
    }
    let limited = shares
        .iter()
        .map(|share| {
            // Within [MIN_WEIGHT, MAX_WEIGHT] by the clamp.
            (share * new_total)
                .round()
                .clamp(f64::from(MIN_WEIGHT), f64::from(MAX_WEIGHT)) as u32
        })
        .collect();
    Some(limited)
}

/// The factor that brings `old` weights to the scale of `new`.
fn scale(old: &[u32], new: &[u32]) -> f64 {
    let old_total: f64 = old.iter().map(|&w| f64::from(w)).sum();
    let new_total: f64 = new.iter().map(|&w| f64::from(w)).sum();
    if old_total > 0.0 && new_total > 0.0 {
        new_total / old_total
    } else {
        1.0
    }
}

/// The largest relative change of any endpoint's share from `old` to `new`
/// weights of the same endpoints (1.0 when the endpoints differ).
pub fn largest_change(old: &[u32], new: &[u32]) -> f64 {
    if old.len() != new.len() {
        return 1.0;
    }
    let scale = scale(old, new);
    old.iter()
        .zip(new)
        .map(|(&o, &n)| {
            let base = (f64::from(o) * scale).max(f64::EPSILON);
            (f64::from(n) - base).abs() / base
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::weigh::LoadReport;

    fn inputs(reports: &[Option<f64>], at: Instant) -> Vec<EndpointInput> {
        reports
            .iter()
            .enumerate()
            .map(|(i, utilization)| EndpointInput {
                address: SocketAddr::from(([10, 0, 0, 1], 8000 + i as u16)),
                configured_weight: 1,
                client_errors: None,
                report: utilization.map(|utilization| LoadReport {
                    utilization,
                    rps: 100.0,
                    eps: 0.0,
                    at,
                    period: None,
                }),
            })
            .collect()
    }

    #[test]
    fn static_ignores_load() {
        let now = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Static, WeighConfig::default());
        let out = weigher.weigh(&inputs(&[Some(0.9), Some(0.1)], now), now, true);
        assert_eq!(out, vec![(1, WeightReason::Configured); 2]);
    }

    #[test]
    fn a_hot_endpoint_loses_weight_and_a_stale_one_gets_the_mean() {
        let start = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Utilization, WeighConfig::default());
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..5 {
            now += Duration::from_secs(1);
            out = weigher.weigh(&inputs(&[Some(0.9), Some(0.3), Some(0.3)], now), now, true);
        }
        assert!(out[0].0 < out[1].0, "{out:?}");
        assert_eq!(out[0].1, WeightReason::Feedback);
        // The hot one's stream dies; after the expiry it gets the mean.
        let reports = inputs(&[Some(0.9), Some(0.3), Some(0.3)], now);
        let later = now + weigher.config.controller.expiry + Duration::from_secs(1);
        let mut fresh = reports.clone();
        for input in &mut fresh[1..] {
            if let Some(report) = &mut input.report {
                report.at = later;
            }
        }
        let out = weigher.weigh(&fresh, later, true);
        assert_eq!(out[0].1, WeightReason::Stale);
        assert_eq!(out[0].0, out[1].0.midpoint(out[2].0));
    }

    #[test]
    fn a_server_reporting_every_30_s_stays_fresh_and_each_report_counts_once() {
        // grpc-go and grpc-java servers report every 30 s at best; the
        // control plane steps every second.
        let start = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Utilization, WeighConfig::default());
        let period = Duration::from_secs(30);
        let mut reports = inputs(&[Some(0.9), Some(0.3)], start);
        for input in &mut reports {
            if let Some(report) = &mut input.report {
                report.period = Some(period);
            }
        }
        let first = weigher.weigh(&reports, start, true);
        let mut out = first.clone();
        for second in 1..30 {
            out = weigher.weigh(&reports, start + Duration::from_secs(second), true);
            assert!(
                out.iter()
                    .all(|(_, reason)| *reason == WeightReason::Feedback),
                "{second} s after a report: {out:?}"
            );
        }
        // One report moved the weights once, not 30 times.
        assert_eq!(out, first);
        assert!(first[0].0 < first[1].0, "{first:?}");
        // A new report moves them again.
        for input in &mut reports {
            if let Some(report) = &mut input.report {
                report.at = start + period;
            }
        }
        let next = weigher.weigh(&reports, start + period, true);
        assert!(next[0].0 < first[0].0, "{next:?} after {first:?}");
        // Three periods without a report: stale.
        let silent = start + period * 4 + Duration::from_secs(1);
        let out = weigher.weigh(&reports, silent, true);
        assert!(
            out.iter()
                .all(|(_, reason)| *reason != WeightReason::Feedback),
            "{out:?}"
        );
    }

    #[test]
    fn utilization_zero_is_not_measured_and_gets_the_mean() {
        // A server that serves ORCA but records no utilization reports 0:
        // it must not be taken for idle and handed ten times the traffic.
        let start = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Utilization, WeighConfig::default());
        let mut out = Vec::new();
        for second in 0..20 {
            let now = start + Duration::from_secs(second);
            out = weigher.weigh(&inputs(&[Some(0.0), Some(0.5), Some(0.6)], now), now, true);
        }
        assert_eq!(out[0].1, WeightReason::Stale, "{out:?}");
        assert_eq!(out[0].0, out[1].0.midpoint(out[2].0), "{out:?}");
    }

    #[test]
    fn a_new_endpoint_slow_starts_but_a_cold_cluster_does_not() {
        let now = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Wrr, WeighConfig::default());
        let out = weigher.weigh(&inputs(&[Some(0.5), Some(0.5)], now), now, false);
        assert_eq!(out, vec![(1000, WeightReason::Formula); 2]);
        let out = weigher.weigh(&inputs(&[Some(0.5), Some(0.5), Some(0.5)], now), now, false);
        assert_eq!(out[2].1, WeightReason::SlowStart);
        assert!(out[2].0 < out[0].0 / 2, "{out:?}");
    }

    #[test]
    fn a_push_needs_the_threshold_and_moves_at_most_the_cap() {
        let config = WeighConfig {
            push_threshold: 0.05,
            max_push_change: 0.1,
            ..WeighConfig::default()
        };
        let fed = |weights: &[u32]| -> Vec<(u32, WeightReason)> {
            weights
                .iter()
                .map(|&w| (w, WeightReason::Feedback))
                .collect()
        };
        assert_eq!(next_push(&[1000, 1000], &fed(&[1040, 960]), &config), None);
        assert_eq!(
            next_push(&[1000, 1000], &fed(&[1500, 500]), &config),
            Some(vec![1091, 909])
        );
        // Scale does not matter: configured 1/1 to a policy's 1000-based.
        assert_eq!(next_push(&[1, 1], &fed(&[1000, 1000]), &config), None);
        assert_eq!(
            next_push(&[1, 1], &fed(&[1500, 500]), &config),
            Some(vec![1091, 909])
        );
        assert_eq!(
            next_push(&[1000], &fed(&[1000, 250]), &config),
            Some(vec![1000, 250])
        );
        // A saturated endpoint's share falls faster.
        let hot = [
            (1500, WeightReason::Feedback),
            (500, WeightReason::Saturated),
        ];
        let pushed = next_push(&[1000, 1000], &hot, &config).unwrap_or_default();
        assert!(pushed[1] < 850, "{pushed:?}");
    }

    #[test]
    fn errors_only_clients_see_cost_weight() {
        let start = Instant::now();
        let mut weigher = ClusterWeigher::new(Policy::Utilization, WeighConfig::default());
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..5 {
            now += Duration::from_secs(1);
            let mut reports = inputs(&[Some(0.5), Some(0.5)], now);
            reports[0].client_errors = Some(0.5);
            out = weigher.weigh(&reports, now, true);
        }
        assert!(out[0].0 < out[1].0, "{out:?}");
    }

    #[test]
    fn largest_change_is_relative() {
        assert!((largest_change(&[100, 200], &[100, 220]) - 0.0625).abs() < 1e-9);
        assert_eq!(largest_change(&[100, 200], &[1000, 2000]), 0.0);
        assert_eq!(largest_change(&[100], &[100, 1]), 1.0);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever (validated) reports arrive, every policy's weights
            /// stay in [1, 10000], and once slow start is over the spread
            /// stays within the max/min ratio (plus rounding).
            #[test]
            fn weights_stay_in_range_and_bounded(
                policy in prop_oneof![Just(Policy::Utilization), Just(Policy::Wrr), Just(Policy::Static)],
                steps in proptest::collection::vec(
                    proptest::collection::vec(
                        proptest::option::of((0.0..100.0f64, 0.0..10_000.0f64, 0.0..1.0f64, 0.0..1.0f64)),
                        4,
                    ),
                    1..30,
                ),
            ) {
                let config = WeighConfig::default();
                let mut weigher = ClusterWeigher::new(policy, config.clone());
                let start = Instant::now();
                for (i, step) in steps.iter().enumerate() {
                    let now = start + Duration::from_secs(i as u64 + 1);
                    let inputs: Vec<EndpointInput> = step
                        .iter()
                        .enumerate()
                        .map(|(j, report)| EndpointInput {
                            address: SocketAddr::from(([10, 0, 0, 1], 8000 + j as u16)),
                            configured_weight: 1 + j as u32,
                            client_errors: report.map(|r| r.3),
                            report: report.map(|(utilization, rps, errors, _)| LoadReport {
                                utilization,
                                rps,
                                eps: rps * errors,
                                at: now,
                                period: None,
                            }),
                        })
                        .collect();
                    let out = weigher.weigh(&inputs, now, true);
                    prop_assert_eq!(out.len(), inputs.len());
                    for (weight, _) in &out {
                        prop_assert!((1..=10_000).contains(weight), "{out:?}");
                    }
                    let slow_starting = out.iter().any(|(_, r)| *r == WeightReason::SlowStart);
                    let max = out.iter().map(|(w, _)| *w).max().unwrap_or(1);
                    let min = out.iter().map(|(w, _)| *w).min().unwrap_or(1);
                    if policy != Policy::Static && !slow_starting && out.iter().all(|(_, r)| *r != WeightReason::NoReports) {
                        prop_assert!(
                            f64::from(max) <= f64::from(min) * (config.controller.max_ratio + 0.01) + 1.0,
                            "{out:?}"
                        );
                    }
                }
            }
        }
    }
}
