//! The `utilization` policy: a feedback controller that moves each
//! endpoint's weight until utilizations converge to the cluster mean
//! (Dropbox Robinhood-style), damped, bounded and error-aware.
//!
//! Each step, for every endpoint with a report that is new since the last
//! step (a report moves the weight once, however many steps it stays
//! fresh: grpc-go and grpc-java servers send one per 30 s):
//!
//! 1. smooth its utilization (EWMA) so one noisy report cannot swing it;
//! 2. charge errors: `load = utilization + error_penalty * errors`, where
//!    `errors` is the failed fraction of calls (the worse of the server's
//!    ORCA and the clients' LRS view), so an endpoint that fails fast looks
//!    busy instead of attracting traffic;
//! 3. a saturated endpoint (smoothed load at `saturated_at`, 95 %) cannot
//!    report how far past capacity it is: charge it `saturation_penalty`
//!    times the larger of its load and the mean, and correct it fully;
//! 4. move its weight multiplicatively toward equal load:
//!    `w *= (mean_load / load) ^ gain`, with the change capped per step;
//! 5. keep the state scaled to a mean of `MEAN_WEIGHT` and bounded by
//!    `max_ratio`, so it cannot wind up.
//!
//! An endpoint without a fresh report, or whose report has utilization 0
//! (ORCA's "not set"), restarts from the mean of the others (stale data is
//! worse than none); `render` then takes off what clients saw fail. A new endpoint starts from its
//! configured share of the mean. The shared `render` step then turns the
//! state into integers (stale, bounds, slow start).
//!
//! Owns: the per-endpoint controller state and the arithmetic above.
//! Must never: read the network or a clock of its own; time comes in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::render::scale_and_bound;
use super::{ControllerConfig, EndpointInput, LoadReport, MEAN_WEIGHT, WeightReason};

#[derive(Debug, Clone)]
struct EndpointState {
    weight: f64,
    /// The smoothed load, and when the last report in it arrived: each
    /// report moves the weight once, however many steps it stays fresh.
    smoothed: Option<(f64, Instant)>,
}

impl EndpointState {
    fn load(&self) -> Option<f64> {
        self.smoothed.map(|(load, _)| load)
    }
}

/// One cluster's controller state.
#[derive(Debug, Clone)]
pub struct UtilizationController {
    config: ControllerConfig,
    endpoints: BTreeMap<SocketAddr, EndpointState>,
}

impl UtilizationController {
    /// A controller with `config`.
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            endpoints: BTreeMap::new(),
        }
    }

    /// Raw weights for `inputs` at `now` (`None`: no fresh report). With
    /// `advance`, one control step runs first; without, only membership is
    /// brought up to date (a source change must not count as a step).
    pub fn weigh(
        &mut self,
        inputs: &[EndpointInput],
        now: Instant,
        advance: bool,
    ) -> Vec<Option<(f64, WeightReason)>> {
        self.sync_membership(inputs);
        let loads: Vec<Option<(f64, Instant)>> = inputs
            .iter()
            .map(|input| {
                input
                    .fresh_report(now, self.config.expiry)
                    // No utilization: no load to steer by.
                    .filter(LoadReport::measured)
                    .map(|r| {
                        let load =
                            r.utilization + self.config.error_penalty * input.error_ratio(&r);
                        (load, r.at)
                    })
            })
            .collect();
        if advance {
            self.step(inputs, &loads);
        }
        let saturated_at = self.config.saturated_at;
        inputs
            .iter()
            .zip(&loads)
            .map(|(input, load)| {
                load.and(self.endpoints.get(&input.address)).map(|state| {
                    // Smoothed, so one noisy report does not count.
                    let reason = if state.load().is_some_and(|l| l >= saturated_at) {
                        WeightReason::Saturated
                    } else {
                        WeightReason::Feedback
                    };
                    (state.weight, reason)
                })
            })
            .collect()
    }

    /// Brings the state of endpoints under feedback to the ratios actually
    /// pushed (`pushed` in the order of `inputs`), so the controller never
    /// integrates past what clients use (anti-windup when a push was held
    /// back or limited). Their total weight is kept, so endpoints in slow
    /// start or stale are not disturbed.
    pub fn pushed(&mut self, inputs: &[EndpointInput], pushed: &[(u32, WeightReason)]) {
        let fed: Vec<(SocketAddr, f64)> = inputs
            .iter()
            .zip(pushed)
            .filter(|(_, (_, reason))| {
                matches!(reason, WeightReason::Feedback | WeightReason::Saturated)
            })
            .map(|(input, (weight, _))| (input.address, f64::from(*weight)))
            .collect();
        let state_total: f64 = fed
            .iter()
            .filter_map(|(address, _)| self.endpoints.get(address).map(|s| s.weight))
            .sum();
        let pushed_total: f64 = fed.iter().map(|(_, w)| w).sum();
        if pushed_total <= 0.0 || state_total <= 0.0 {
            return;
        }
        for (address, weight) in fed {
            if let Some(state) = self.endpoints.get_mut(&address) {
                state.weight = weight * state_total / pushed_total;
            }
        }
    }

    fn sync_membership(&mut self, inputs: &[EndpointInput]) {
        // A set: membership is checked for every endpoint of the cluster.
        let present: std::collections::BTreeSet<SocketAddr> =
            inputs.iter().map(|i| i.address).collect();
        self.endpoints
            .retain(|address, _| present.contains(address));
        let configured_mean = inputs
            .iter()
            .map(|i| f64::from(i.configured_weight))
            .sum::<f64>()
            / inputs.len().max(1) as f64;
        for input in inputs {
            self.endpoints
                .entry(input.address)
                .or_insert_with(|| EndpointState {
                    weight: MEAN_WEIGHT * f64::from(input.configured_weight)
                        / configured_mean.max(1.0),
                    smoothed: None,
                });
        }
    }

    fn step(&mut self, inputs: &[EndpointInput], loads: &[Option<(f64, Instant)>]) {
        let config = &self.config;
        // 1-2. Smoothed load, moved by new reports only (a server that
        // reports every 30 s is not counted 30 times).
        let mut smoothed = Vec::with_capacity(inputs.len());
        for (input, load) in inputs.iter().zip(loads) {
            let Some(state) = self.endpoints.get_mut(&input.address) else {
                continue;
            };
            let new = match (*load, state.smoothed) {
                (None, _) => {
                    state.smoothed = None;
                    false
                }
                (Some((_, at)), Some((_, seen))) if at == seen => false,
                (Some((load, at)), previous) => {
                    let smoothed = match previous {
                        Some((previous, _)) => previous + config.smoothing * (load - previous),
                        None => load,
                    };
                    state.smoothed = Some((smoothed, at));
                    true
                }
            };
            let hot = state.load().is_some_and(|l| l >= config.saturated_at);
            smoothed.push((input.address, state.load(), hot, new));
        }
        let fresh: Vec<f64> = smoothed.iter().filter_map(|(_, l, _, _)| *l).collect();
        if fresh.is_empty() {
            return;
        }
        let mean_load = fresh.iter().sum::<f64>() / fresh.len() as f64;
        // 3. Multiplicative correction, capped.
        if mean_load > 0.0 {
            for (address, load, hot, _) in smoothed.iter().filter(|(.., new)| *new) {
                if let (Some(load), Some(state)) = (load, self.endpoints.get_mut(address)) {
                    let ratio = if *hot {
                        mean_load / (load.max(mean_load) * config.saturation_penalty)
                    } else {
                        (mean_load / load.max(1e-3)).powf(config.gain)
                    };
                    let ratio = ratio.clamp(1.0 / (1.0 + config.max_step), 1.0 + config.max_step);
                    state.weight *= ratio;
                }
            }
        }
        // Endpoints without fresh load restart from the mean of the fed.
        let fed: Vec<f64> = smoothed
            .iter()
            .filter(|(_, l, ..)| l.is_some())
            .filter_map(|(a, ..)| self.endpoints.get(a).map(|s| s.weight))
            .collect();
        let fed_mean = fed.iter().sum::<f64>() / fed.len().max(1) as f64;
        for (address, load, ..) in &smoothed {
            if load.is_none()
                && let Some(state) = self.endpoints.get_mut(address)
            {
                state.weight = fed_mean;
            }
        }
        // 5. Scale and bound the state.
        let mut weights: Vec<&mut f64> =
            self.endpoints.values_mut().map(|s| &mut s.weight).collect();
        scale_and_bound(&mut weights, config.max_ratio);
    }
}
