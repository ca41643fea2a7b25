//! The `utilization` policy: a feedback controller that moves each
//! endpoint's weight until utilizations converge to the cluster mean
//! (Dropbox Robinhood-style), damped, bounded and error-aware.
//!
//! Each step, for every endpoint with a fresh report:
//!
//! 1. smooth its utilization (EWMA) so one noisy report cannot swing it;
//! 2. charge errors: `load = utilization + error_penalty * eps / rps`, so an
//!    endpoint that fails fast looks busy instead of attracting traffic;
//! 3. move its weight multiplicatively toward equal load:
//!    `w *= (mean_load / load) ^ gain`, with the change capped per step;
//! 4. bound the spread: no weight below `max / max_ratio`.
//!
//! Endpoints without a fresh report get the mean weight (stale data is worse
//! than none); new endpoints ramp up from a fraction of the mean (slow
//! start). Weights are scaled so their mean is `MEAN_WEIGHT`, leaving
//! resolution for integer weights in `[1, 10000]`.
//!
//! Owns: the per-endpoint controller state and the arithmetic above.
//! Must never: read the network or a clock of its own; time comes in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::LoadReport;
use crate::registry::{MAX_WEIGHT, MIN_WEIGHT};

/// The mean weight the controller scales to.
pub const MEAN_WEIGHT: f64 = 1000.0;

/// Tuning of the controller. The defaults are what the simulator tests.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Exponent of the multiplicative correction (0..=1): 1 corrects fully
    /// in one step, smaller damps.
    pub gain: f64,
    /// Weight of a new report in the utilization average (0..=1].
    pub smoothing: f64,
    /// Largest relative weight change in one step (0.25 = +-25 %).
    pub max_step: f64,
    /// Largest max/min weight ratio in a cluster.
    pub max_ratio: f64,
    /// Load added per error/request ratio.
    pub error_penalty: f64,
    /// Reports older than this are ignored (the endpoint gets the mean).
    pub expiry: Duration,
    /// Steps a new endpoint takes to ramp from `slow_start_floor` to its
    /// computed weight.
    pub slow_start_steps: u32,
    /// Fraction of the mean a new endpoint starts at.
    pub slow_start_floor: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            gain: 0.5,
            smoothing: 0.5,
            max_step: 0.5,
            max_ratio: 10.0,
            error_penalty: 1.0,
            expiry: Duration::from_secs(30),
            slow_start_steps: 5,
            slow_start_floor: 0.25,
        }
    }
}

/// Why an endpoint has the weight it has, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightReason {
    /// Computed from fresh reports.
    Feedback,
    /// No fresh report: the cluster mean.
    Stale,
    /// Ramping up after it appeared.
    SlowStart,
    /// Held by the max/min ratio bound.
    Bounded,
}

#[derive(Debug, Clone)]
struct EndpointState {
    weight: f64,
    smoothed: Option<f64>,
    age_steps: u32,
}

/// One cluster's controller. Feed it reports, step it, read weights.
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

    /// One control step over the cluster's current endpoints and their
    /// latest reports (if any), at time `now`. Returns integer weights in
    /// `[1, 10000]` and why, in the order of `endpoints`.
    pub fn step(
        &mut self,
        endpoints: &[(SocketAddr, Option<LoadReport>)],
        now: Instant,
    ) -> Vec<(SocketAddr, u32, WeightReason)> {
        let config = self.config.clone();
        self.endpoints
            .retain(|address, _| endpoints.iter().any(|(a, _)| a == address));
        // On a cold start nobody needs protecting: no slow start.
        let cold = self.endpoints.is_empty();
        let initial_age = if cold { config.slow_start_steps } else { 0 };
        // 1-2. Smoothed load per endpoint with a fresh report.
        let mut loads: Vec<(SocketAddr, Option<f64>)> = Vec::with_capacity(endpoints.len());
        for (address, report) in endpoints {
            let state = self
                .endpoints
                .entry(*address)
                .or_insert_with(|| EndpointState {
                    weight: MEAN_WEIGHT,
                    smoothed: None,
                    age_steps: initial_age,
                });
            state.age_steps = state.age_steps.saturating_add(1);
            let fresh = report.filter(|r| now.saturating_duration_since(r.at) <= config.expiry);
            let load = fresh.map(|r| {
                let errors = if r.rps > 0.0 { r.eps / r.rps } else { 0.0 };
                r.utilization + config.error_penalty * errors.min(1.0)
            });
            match load {
                Some(load) => {
                    let smoothed = match state.smoothed {
                        Some(previous) => previous + config.smoothing * (load - previous),
                        None => load,
                    };
                    state.smoothed = Some(smoothed);
                    loads.push((*address, Some(smoothed)));
                }
                None => {
                    state.smoothed = None;
                    loads.push((*address, None));
                }
            }
        }
        let fresh: Vec<f64> = loads.iter().filter_map(|(_, l)| *l).collect();
        let mean_load = if fresh.is_empty() {
            0.0
        } else {
            fresh.iter().sum::<f64>() / fresh.len() as f64
        };
        // 3. Multiplicative correction, capped.
        let mut reasons = BTreeMap::new();
        for (address, load) in &loads {
            let Some(state) = self.endpoints.get_mut(address) else {
                continue;
            };
            match load {
                Some(load) if mean_load > 0.0 => {
                    let ratio = (mean_load / load.max(1e-3)).powf(config.gain);
                    let ratio = ratio.clamp(1.0 / (1.0 + config.max_step), 1.0 + config.max_step);
                    state.weight *= ratio;
                    reasons.insert(*address, WeightReason::Feedback);
                }
                Some(_) => {
                    reasons.insert(*address, WeightReason::Feedback);
                }
                None => {
                    reasons.insert(*address, WeightReason::Stale);
                }
            }
        }
        // Stale endpoints take the mean of the others.
        let fed: Vec<f64> = loads
            .iter()
            .filter(|(_, l)| l.is_some())
            .filter_map(|(a, _)| self.endpoints.get(a).map(|s| s.weight))
            .collect();
        let fed_mean = if fed.is_empty() {
            MEAN_WEIGHT
        } else {
            fed.iter().sum::<f64>() / fed.len() as f64
        };
        for (address, load) in &loads {
            if load.is_none()
                && let Some(state) = self.endpoints.get_mut(address)
            {
                state.weight = fed_mean;
            }
        }
        // Normalize the mean to MEAN_WEIGHT.
        let count = self.endpoints.len().max(1) as f64;
        let mean = self.endpoints.values().map(|s| s.weight).sum::<f64>() / count;
        if mean > 0.0 {
            for state in self.endpoints.values_mut() {
                state.weight *= MEAN_WEIGHT / mean;
            }
        }
        // 4. Bound the spread.
        let max = self
            .endpoints
            .values()
            .map(|s| s.weight)
            .fold(0.0_f64, f64::max);
        let floor = max / config.max_ratio;
        for (address, state) in &mut self.endpoints {
            if state.weight < floor {
                state.weight = floor;
                reasons.insert(*address, WeightReason::Bounded);
            }
        }
        // Slow start applies to what is sent, not to the controller state.
        endpoints
            .iter()
            .map(|(address, _)| {
                let Some(state) = self.endpoints.get(address) else {
                    return (*address, MIN_WEIGHT, WeightReason::Stale);
                };
                let mut weight = state.weight;
                let mut reason = reasons.get(address).copied().unwrap_or(WeightReason::Stale);
                if state.age_steps <= config.slow_start_steps && config.slow_start_steps > 0 {
                    let progress = f64::from(state.age_steps) / f64::from(config.slow_start_steps);
                    let start = MEAN_WEIGHT * config.slow_start_floor;
                    weight = start + (weight - start) * progress;
                    reason = WeightReason::SlowStart;
                }
                let integer = weight
                    .round()
                    .clamp(f64::from(MIN_WEIGHT), f64::from(MAX_WEIGHT));
                (*address, integer as u32, reason)
            })
            .collect()
    }

    /// Forgets endpoints and their history (e.g. after a policy change).
    pub fn reset(&mut self) {
        self.endpoints.clear();
    }
}
