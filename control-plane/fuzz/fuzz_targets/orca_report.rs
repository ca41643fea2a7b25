//! Fuzz target: ORCA load report validation (`control-plane/src/load/validate.rs`)
//! fed one endpoint's stream of arbitrary reports: fields set directly
//! (NaN, infinities, negatives, huge values, huge metric maps) or decoded
//! from arbitrary bytes as they come off the wire.
//!
//! Checked, as in the proptest beside the validator:
//! - nothing panics;
//! - an accepted (or clamped) report is finite, non-negative, its
//!   utilization at most `MAX_UTILIZATION` and its errors at most its
//!   requests; it uses the application utilization when set, else CPU;
//! - the verdict is the documented one: not finite, then negative, then
//!   absurd, and frozen exactly when the same busy report comes
//!   `FROZEN_AFTER` more times in a row.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lookaside_control_plane::load::{
    FROZEN_AFTER, MAX_UTILIZATION, Rejection, ReportValidator, Verdict,
};
use lookaside_proto::orca::data::OrcaLoadReport;
use prost::Message;

/// Largest metric map built from a count (keeps one run fast).
const MAX_GENERATED_METRICS: usize = 500;

#[derive(Arbitrary, Debug)]
enum ReportSpec {
    Fields(Fields),
    /// Bytes as a server would send them.
    Wire(Vec<u8>),
    /// The previous report again (frozen reporters).
    Repeat(u8),
}

#[derive(Arbitrary, Debug)]
struct Fields {
    cpu: f64,
    memory: f64,
    application: f64,
    rps_fractional: f64,
    eps: f64,
    request_cost: Vec<(String, f64)>,
    utilization: Vec<(String, f64)>,
    named_metrics: Vec<(String, f64)>,
    /// Adds this many generated entries to each map.
    generated: u16,
}

impl Fields {
    fn report(&self) -> OrcaLoadReport {
        let count = usize::from(self.generated).min(MAX_GENERATED_METRICS);
        let map = |given: &[(String, f64)]| {
            given
                .iter()
                .cloned()
                .chain((0..count).map(|i| (format!("m{i}"), i as f64 * self.cpu)))
                .collect()
        };
        OrcaLoadReport {
            cpu_utilization: self.cpu,
            mem_utilization: self.memory,
            request_cost: map(&self.request_cost),
            utilization: map(&self.utilization),
            rps_fractional: self.rps_fractional,
            eps: self.eps,
            named_metrics: map(&self.named_metrics),
            application_utilization: self.application,
            // The deprecated integer `rps` comes in through `Wire`.
            ..Default::default()
        }
    }
}

fuzz_target!(|specs: Vec<ReportSpec>| {
    let mut validator = ReportValidator::default();
    let start = Instant::now();
    // The last report that passed the range checks, and how many times in
    // a row it came.
    let mut run: Option<((f64, f64, f64), u32)> = None;
    let mut previous = OrcaLoadReport::default();
    for (i, spec) in specs.iter().enumerate() {
        let report = match spec {
            ReportSpec::Fields(fields) => fields.report(),
            ReportSpec::Wire(bytes) => match OrcaLoadReport::decode(bytes.as_slice()) {
                Ok(report) => report,
                Err(_) => continue,
            },
            ReportSpec::Repeat(times) => {
                for _ in 0..*times % 8 {
                    let at = start + Duration::from_millis(i as u64);
                    check(&mut validator, &previous, at, &mut run);
                }
                previous.clone()
            }
        };
        let at = start + Duration::from_millis(i as u64);
        check(&mut validator, &report, at, &mut run);
        previous = report;
    }
});

fn check(
    validator: &mut ReportValidator,
    report: &OrcaLoadReport,
    at: Instant,
    run: &mut Option<((f64, f64, f64), u32)>,
) {
    let verdict = validator.judge(report, at);
    let cpu = report.cpu_utilization;
    let application = report.application_utilization;
    let rps = report.rps_fractional;
    let eps = report.eps;
    let utilization = if application > 0.0 { application } else { cpu };
    let values = [cpu, application, rps, eps];
    if values.iter().any(|v| !v.is_finite()) {
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection::NotFinite),
            "{report:?}"
        );
        return;
    }
    if values.iter().any(|v| *v < 0.0) {
        assert_eq!(
            verdict,
            Verdict::Rejected(Rejection::Negative),
            "{report:?}"
        );
        return;
    }
    if utilization > MAX_UTILIZATION {
        assert_eq!(verdict, Verdict::Rejected(Rejection::Absurd), "{report:?}");
        return;
    }
    let current = (utilization, rps, eps);
    let times = match run {
        Some((last, times)) if *last == current => *times + 1,
        _ => 1,
    };
    *run = Some((current, times));
    let busy = utilization > 0.0 || rps > 0.0;
    if busy && times > FROZEN_AFTER {
        assert_eq!(verdict, Verdict::Rejected(Rejection::Frozen), "{report:?}");
        return;
    }
    let (accepted, clamped) = match verdict {
        Verdict::Accepted(accepted) => (accepted, false),
        Verdict::Clamped(accepted) => (accepted, true),
        Verdict::Rejected(reason) => panic!("a sane report was rejected as {reason:?}: {report:?}"),
    };
    assert!(accepted.utilization.is_finite() && accepted.utilization >= 0.0);
    assert!(accepted.utilization <= MAX_UTILIZATION);
    assert!(accepted.rps.is_finite() && accepted.rps >= 0.0);
    assert!(accepted.eps.is_finite() && accepted.eps >= 0.0 && accepted.eps <= accepted.rps);
    assert_eq!(accepted.utilization, utilization);
    assert_eq!(accepted.rps, rps);
    assert_eq!(accepted.at, at);
    assert_eq!(clamped, eps > rps, "{report:?}");
    if !clamped {
        assert_eq!(accepted.eps, eps);
    }
}
