//! What the demo says around its tables, for someone who has never seen
//! Lookaside: what runs, what each column means, what is about to happen,
//! and at the end what it showed.
//!
//! Owns: the words.
//! Must never: gather numbers or print; the runner does both.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::table::{latency, trim_number};

/// One backend as the introduction describes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BackendIntro {
    /// Its name.
    pub(super) name: String,
    /// Where it listens.
    pub(super) address: SocketAddr,
    /// Its workers.
    pub(super) workers: usize,
    /// How long a call holds a worker.
    pub(super) cost: Duration,
    /// Calls per second it can serve.
    pub(super) capacity: f64,
}

/// What the introduction needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Intro {
    /// The demo cluster's policy.
    pub(super) policy: String,
    /// The backends.
    pub(super) backends: Vec<BackendIntro>,
    /// Calls per second the client sends.
    pub(super) rate: f64,
    /// That rate as a fraction of the total capacity.
    pub(super) load: f64,
    /// How often backends report load and the control plane steps.
    pub(super) step: Duration,
    /// When a backend slows down, if it does: `(when, which, factor)`.
    pub(super) slowdown: Option<(Duration, String, f64)>,
    /// How long the demo runs.
    pub(super) duration: Duration,
    /// Where the control plane serves xDS and its admin API.
    pub(super) xds_address: SocketAddr,
}

/// The text printed before the first table.
pub(super) fn intro(intro: &Intro) -> String {
    let mut out = String::new();
    let total: f64 = intro.backends.iter().map(|b| b.capacity).sum();
    let _ = writeln!(
        out,
        "Lookaside demo: a control plane, {} backends and a client, all in this process, \
         for {} s.",
        intro.backends.len(),
        intro.duration.as_secs()
    );
    out.push('\n');
    for backend in &intro.backends {
        let _ = writeln!(
            out,
            "  backend {:<5} {:<21} capacity {:>4.0} calls/s ({} workers, {} ms per call)",
            backend.name,
            backend.address.to_string(),
            backend.capacity,
            backend.workers,
            backend.cost.as_millis()
        );
    }
    let _ = writeln!(
        out,
        "  client        sends {:.0} calls/s, {:.0}% of the {:.0} calls/s the backends can serve \
         together,\n                on schedule whether or not earlier calls have answered,\n                \
         through lookaside-client, which splits them by the weights the control plane sends",
        intro.rate,
        intro.load * 100.0,
        total
    );
    let _ = writeln!(
        out,
        "  control plane {}, policy `{}`:\n{}",
        intro.xds_address,
        intro.policy,
        policy_in_words(&intro.policy, intro.step)
    );
    if let Some((at, backend, factor)) = &intro.slowdown {
        let _ = writeln!(
            out,
            "  at {:<10} backend {backend} becomes {}x slower (say, a noisy neighbour moved onto \
             its node)",
            format!("{} s", at.as_secs()),
            trim_number(*factor)
        );
    }
    out.push('\n');
    out.push_str(
        "Every second, one line per backend:\n\
         \x20 capacity  calls/s it can serve now\n\
         \x20 weight    what the control plane tells the client (twice the weight, twice the \
         calls), set by: the reason\n\
         \x20 share     its part of the calls answered in that second\n\
         \x20 util      how busy its workers were over the last second (what it reports over ORCA)\n\
         \x20 p50, p99  latency the client saw\n\
         and a line for all: utilization max/mean near 1.00 means every backend is equally busy,\n\
         nobody overloaded while others idle.\n",
    );
    let _ = writeln!(
        out,
        "While it runs: grpcurl -plaintext {} lookaside.admin.v1.Admin/GetAssignment",
        intro.xds_address
    );
    out
}

/// What `policy` does, in a few indented lines.
fn policy_in_words(policy: &str, step: Duration) -> String {
    let indent = "                ";
    match policy {
        "static" => format!(
            "{indent}weights stay as the config file says (all equal): no load feedback,\n\
             {indent}like plain round robin"
        ),
        "wrr" => format!(
            "{indent}each backend reports its load over ORCA; every {} ms the control plane sets\n\
             {indent}weights by gRPC's weighted round robin formula (calls/s over utilization)\n\
             {indent}and pushes them to the client over xDS",
            step.as_millis()
        ),
        _ => format!(
            "{indent}each backend reports its utilization over ORCA; every {} ms the control plane\n\
             {indent}nudges weights towards even utilization and pushes them to the client over xDS",
            step.as_millis()
        ),
    }
}

/// What the slowdown banner says.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Slowdown<'a> {
    /// When, since the start.
    pub(super) at: Duration,
    /// Which backend.
    pub(super) backend: &'a str,
    /// By how much.
    pub(super) factor: f64,
    /// How long one of its calls takes now.
    pub(super) call_time: Duration,
    /// The cluster's policy.
    pub(super) policy: &'a str,
}

/// The banner printed when a backend slows down.
pub(super) fn slowdown_banner(slowdown: &Slowdown<'_>) -> String {
    let Slowdown {
        at,
        backend,
        factor,
        call_time,
        policy,
    } = *slowdown;
    let factor = trim_number(factor);
    let watch = if policy == "static" {
        "With static weights nothing moves: watch its queue, utilization and p99 grow."
    } else {
        "Watch its utilization and p99 jump, then its weight fall until utilizations are even \
         and latency recovers."
    };
    format!(
        ">>> {} s: backend {backend} is now {factor}x slower: 1/{factor} of its capacity, and each \
         of its calls takes {} ms.\n>>> {watch}",
        at.as_secs(),
        call_time.as_millis()
    )
}

/// What one part of the run looked like, for the closing summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// e.g. `before the slowdown`.
    pub label: String,
    /// The seconds it covers, first and last.
    pub seconds: (u64, u64),
    /// Median latency of every call answered in it.
    pub p50: Option<Duration>,
    /// 99th percentile latency.
    pub p99: Option<Duration>,
    /// Mean over its seconds of utilization max/mean.
    pub max_over_mean: Option<f64>,
    /// Calls answered.
    pub ok: u64,
    /// Calls failed.
    pub failed: u64,
}

/// The closing summary.
pub(super) fn summary(policy: &str, phases: &[Phase]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Summary, policy `{policy}`:");
    let _ = writeln!(
        out,
        "  {:<24} {:>9} {:>9} {:>9} {:>13} {:>8}",
        "", "seconds", "p50", "p99", "util max/mean", "failed"
    );
    for phase in phases {
        let evenness = phase
            .max_over_mean
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"));
        let _ = writeln!(
            out,
            "  {:<24} {:>9} {:>9} {:>9} {evenness:>13} {:>8}",
            phase.label,
            format!("{}-{}", phase.seconds.0, phase.seconds.1),
            latency(phase.p50),
            latency(phase.p99),
            phase.failed,
        );
    }
    let next = if policy == "static" {
        "Now run `lookaside demo` (policy `utilization`) to see weights follow load."
    } else {
        "Now run `lookaside demo --policy static` to see the same run with fixed weights."
    };
    let _ = write!(out, "{next}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn intro_of(policy: &str) -> Intro {
        Intro {
            policy: policy.to_owned(),
            backends: ["a", "b", "c"]
                .iter()
                .zip([4, 4, 8])
                .enumerate()
                .map(|(i, (name, workers))| BackendIntro {
                    name: (*name).to_owned(),
                    address: SocketAddr::from(([127, 0, 0, 1], 40001 + i as u16)),
                    workers,
                    cost: 40 * MS,
                    capacity: workers as f64 * 25.0,
                })
                .collect(),
            rate: 320.0,
            load: 0.8,
            step: 500 * MS,
            slowdown: Some((Duration::from_secs(20), "a".to_owned(), 2.0)),
            duration: Duration::from_secs(40),
            xds_address: SocketAddr::from(([127, 0, 0, 1], 18000)),
        }
    }

    #[test]
    fn the_intro_says_what_runs_and_what_will_happen() {
        let text = intro(&intro_of("utilization"));
        for expected in [
            "3 backends and a client",
            "  backend a     127.0.0.1:40001       capacity  100 calls/s (4 workers, 40 ms per call)",
            "  backend c     127.0.0.1:40003       capacity  200 calls/s (8 workers, 40 ms per call)",
            "  client        sends 320 calls/s, 80% of the 400 calls/s",
            "policy `utilization`:\n                each backend reports its utilization over ORCA; \
             every 500 ms",
            "  at 20 s       backend a becomes 2x slower",
            "grpcurl -plaintext 127.0.0.1:18000 lookaside.admin.v1.Admin/GetAssignment",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let text = intro(&Intro {
            slowdown: None,
            ..intro_of("static")
        });
        assert!(
            text.contains("weights stay as the config file says"),
            "{text}"
        );
        assert!(!text.contains("slower"), "{text}");
        assert!(intro(&intro_of("wrr")).contains("weighted round robin formula"));
    }

    #[test]
    fn the_banner_says_what_to_watch_for_each_policy() {
        let mut slowdown = Slowdown {
            at: Duration::from_secs(20),
            backend: "a",
            factor: 2.0,
            call_time: 80 * MS,
            policy: "utilization",
        };
        let banner = slowdown_banner(&slowdown);
        assert!(
            banner.starts_with(
                ">>> 20 s: backend a is now 2x slower: 1/2 of its capacity, and each of its calls \
                 takes 80 ms."
            ),
            "{banner}"
        );
        assert!(banner.contains("weight fall"), "{banner}");
        slowdown.policy = "static";
        let banner = slowdown_banner(&slowdown);
        assert!(banner.contains("nothing moves"), "{banner}");
    }

    #[test]
    fn the_summary_has_a_row_per_phase() {
        let phase = |label: &str, from, p99| Phase {
            label: label.to_owned(),
            seconds: (from, from + 4),
            p50: Some(41 * MS),
            p99: Some(p99 * MS),
            max_over_mean: Some(1.03),
            ok: 1600,
            failed: 0,
        };
        let text = summary(
            "utilization",
            &[
                phase("before the slowdown", 16, 60),
                phase("end of the run", 36, 70),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[2],
            "  before the slowdown          16-20      41ms      60ms          1.03        0"
        );
        assert!(lines[4].contains("--policy static"), "{text}");
    }
}
