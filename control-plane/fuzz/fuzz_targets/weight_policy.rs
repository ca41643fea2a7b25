//! Fuzz target: the weight policies (`control-plane/src/weigh`) run through
//! `ClusterWeigher` the way the weigh stage runs them, over arbitrary
//! endpoint sets, configured weights, weigh flags, load reports (through
//! the real report validator, as the load stage passes them on), client
//! error ratios and ticks.
//!
//! Checked, as in the proptest in `weigh/cluster.rs`:
//! - nothing panics;
//! - every policy gives one weight per endpoint, each in
//!   `[MIN_WEIGHT, MAX_WEIGHT]`; `static` gives the configured weights;
//! - once nothing is slow-starting and some endpoint has reports, a
//!   load-driven policy keeps max/min within the max ratio (plus rounding);
//! - what the stage would push is one weight per endpoint, in range.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lookaside_control_plane::cli::WeighArgs;
use lookaside_control_plane::load::{ClientLoad, ReportValidator, Verdict};
use lookaside_control_plane::registry::{MAX_WEIGHT, MIN_WEIGHT, Policy};
use lookaside_control_plane::weigh::{
    ClusterWeigher, EndpointInput, LoadReport, WeighConfig, WeightReason, next_push,
};
use lookaside_proto::orca::data::OrcaLoadReport;

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    flags: Flags,
    steps: Vec<Step>,
}

/// The weigh flags, as a user may set them.
#[derive(Arbitrary, Debug)]
struct Flags {
    push_threshold: Value,
    push_min_interval_ms: u16,
    report_expiry_ms: u32,
    max_weight_ratio: Value,
    slow_start_steps: u8,
}

/// A float flag: anything, or a plausible value.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Raw(f64),
    /// In hundredths.
    Plausible(u16),
}

impl Value {
    fn get(self) -> f64 {
        match self {
            Value::Raw(value) => value,
            Value::Plausible(hundredths) => f64::from(hundredths) / 100.0,
        }
    }
}

impl Flags {
    fn config(&self) -> WeighConfig {
        WeighArgs {
            weigh_step_ms: 1000,
            push_threshold: self.push_threshold.get(),
            push_min_interval_ms: u64::from(self.push_min_interval_ms),
            report_expiry_ms: u64::from(self.report_expiry_ms),
            max_weight_ratio: self.max_weight_ratio.get(),
            slow_start_steps: u32::from(self.slow_start_steps),
        }
        .config()
    }
}

#[derive(Arbitrary, Debug)]
struct Step {
    /// A control step; otherwise only membership changed.
    control: bool,
    elapsed_ms: u16,
    endpoints: Vec<EndpointSpec>,
}

#[derive(Arbitrary, Debug)]
struct EndpointSpec {
    slot: u8,
    configured: u16,
    report: Option<ReportSpec>,
    /// Calls clients finished and saw fail (LRS).
    client: Option<(u16, u16)>,
}

#[derive(Arbitrary, Debug)]
enum ReportSpec {
    /// Plausible values: utilization in thousandths, requests per second,
    /// errors as a fraction of requests in thousandths.
    Plausible {
        utilization: u16,
        application: bool,
        rps: u32,
        errors: u16,
        age_ms: u32,
    },
    /// Anything a server may send.
    Raw {
        cpu: f64,
        application: f64,
        rps: f64,
        eps: f64,
        age_ms: u32,
    },
}

impl ReportSpec {
    fn report(&self) -> (OrcaLoadReport, u32) {
        match *self {
            ReportSpec::Plausible {
                utilization,
                application,
                rps,
                errors,
                age_ms,
            } => {
                let utilization = f64::from(utilization) / 1000.0;
                let rps = f64::from(rps);
                let report = OrcaLoadReport {
                    cpu_utilization: if application { 0.1 } else { utilization },
                    application_utilization: if application { utilization } else { 0.0 },
                    rps_fractional: rps,
                    eps: rps * f64::from(errors) / 1000.0,
                    ..Default::default()
                };
                (report, age_ms)
            }
            ReportSpec::Raw {
                cpu,
                application,
                rps,
                eps,
                age_ms,
            } => {
                let report = OrcaLoadReport {
                    cpu_utilization: cpu,
                    application_utilization: application,
                    rps_fractional: rps,
                    eps,
                    ..Default::default()
                };
                (report, age_ms)
            }
        }
    }
}

/// What the load stage knows of one endpoint.
#[derive(Default)]
struct Load {
    validator: ReportValidator,
    latest: Option<LoadReport>,
}

fn address(slot: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, slot % 32], 8000))
}

/// Checks one set of weights computed for `inputs`.
fn check(
    policy: Policy,
    config: &WeighConfig,
    inputs: &[EndpointInput],
    out: &[(u32, WeightReason)],
) {
    assert_eq!(out.len(), inputs.len());
    for (weight, _) in out {
        assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(weight), "{out:?}");
    }
    if policy == Policy::Static {
        for (input, (weight, reason)) in inputs.iter().zip(out) {
            assert_eq!(*reason, WeightReason::Configured);
            assert_eq!(*weight, input.configured_weight);
        }
        return;
    }
    let slow_starting = out.iter().any(|(_, r)| *r == WeightReason::SlowStart);
    let unfed = out.iter().all(|(_, r)| *r == WeightReason::NoReports);
    if slow_starting || unfed || out.is_empty() {
        return;
    }
    let max = out.iter().map(|(w, _)| *w).max().unwrap_or(1);
    let min = out.iter().map(|(w, _)| *w).min().unwrap_or(1);
    let ratio = config.controller.max_ratio;
    assert!(
        f64::from(max) <= f64::from(min) * (ratio + 0.01) + 1.0,
        "max/min {max}/{min} over the ratio {ratio}: {out:?}"
    );
}

fuzz_target!(|input: Input| {
    let policy = match input.policy % 3 {
        0 => Policy::Static,
        1 => Policy::Utilization,
        _ => Policy::Wrr,
    };
    let config = input.flags.config();
    let mut weigher = ClusterWeigher::new(policy, config.clone());
    let mut loads: HashMap<SocketAddr, Load> = HashMap::new();
    let start = Instant::now();
    let mut now = start;
    // What the stage published: endpoints and their weights.
    let mut published: Option<(Vec<SocketAddr>, Vec<u32>)> = None;
    let mut last_push: Option<Instant> = None;
    for step in &input.steps {
        now += Duration::from_millis(u64::from(step.elapsed_ms));
        // Addresses are unique within a cluster (the registry's promise).
        let mut seen = HashSet::new();
        let mut inputs = Vec::new();
        for spec in &step.endpoints {
            let address = address(spec.slot);
            if !seen.insert(address) {
                continue;
            }
            let load = loads.entry(address).or_default();
            if let Some(report) = &spec.report {
                let (report, age_ms) = report.report();
                let at = now
                    .checked_sub(Duration::from_millis(u64::from(age_ms)))
                    .unwrap_or(start)
                    .max(start);
                if let Verdict::Accepted(accepted) | Verdict::Clamped(accepted) =
                    load.validator.judge(&report, at)
                {
                    load.latest = Some(accepted);
                }
            }
            let client_errors = spec.client.and_then(|(finished, failed)| {
                ClientLoad {
                    rps: f64::from(finished),
                    eps: f64::from(failed),
                    ..ClientLoad::default()
                }
                .error_ratio()
            });
            inputs.push(EndpointInput {
                address,
                configured_weight: u32::from(spec.configured).clamp(MIN_WEIGHT, MAX_WEIGHT),
                report: if policy.needs_load() {
                    load.latest
                } else {
                    None
                },
                client_errors: if policy.needs_load() {
                    client_errors
                } else {
                    None
                },
            });
        }
        loads.retain(|address, _| seen.contains(address));
        let addresses: Vec<SocketAddr> = inputs.iter().map(|i| i.address).collect();
        // A membership change is published at once, without a step.
        let membership_changed = published.as_ref().map(|(a, _)| a) != Some(&addresses);
        if membership_changed || !step.control {
            let out = weigher.weigh(&inputs, now, false);
            check(policy, &config, &inputs, &out);
            published = Some((addresses.clone(), out.iter().map(|(w, _)| *w).collect()));
        }
        if !step.control || !policy.needs_load() {
            continue;
        }
        // A control step, as `Weigher::on_step` takes it.
        let candidate = weigher.weigh(&inputs, now, true);
        check(policy, &config, &inputs, &candidate);
        let recent = last_push
            .is_some_and(|last| now.saturating_duration_since(last) < config.push_min_interval);
        if recent {
            continue;
        }
        let old = published
            .as_ref()
            .map(|(_, w)| w.clone())
            .unwrap_or_default();
        let Some(limited) = next_push(&old, &candidate, &config) else {
            continue;
        };
        assert_eq!(limited.len(), candidate.len());
        for weight in &limited {
            assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(weight), "{limited:?}");
        }
        let pushed: Vec<(u32, WeightReason)> = limited
            .iter()
            .zip(&candidate)
            .map(|(&w, &(_, reason))| (w, reason))
            .collect();
        weigher.pushed(&inputs, &pushed);
        published = Some((addresses, limited));
        last_push = Some(now);
    }
});
