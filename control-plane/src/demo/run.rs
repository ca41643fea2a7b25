//! One demo run: starts the backends, a control plane on a config file
//! naming them, a client and its load; prints a table every second, slows
//! a backend halfway, and closes with a summary.
//!
//! Owns: the order things start and stop in, and the clock of the run.
//! Must never: keep running past its duration or Ctrl-C, or leave its
//! config file behind.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use super::narration::{self, BackendIntro, Intro, Phase, Slowdown};
use super::table::{self, Frame, Row};
use super::{CallWindow, DemoBackend, DemoError, DemoOptions, LoadGenerator};
use crate::server::{self, ServeConfig};
use crate::weigh::Weighted;

/// The demo's one cluster.
pub const CLUSTER: &str = "greeter";

/// Deadline of each call the client makes.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the client may take to be able to call a backend.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds each phase of the closing summary covers.
const SUMMARY_SECONDS: u64 = 5;

/// The column titles come again after this many tables.
const TITLES_EVERY: u64 = 10;

/// What a run showed.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOutcome {
    /// The phases of the closing summary.
    pub phases: Vec<Phase>,
    /// Calls answered over the run.
    pub ok: u64,
    /// Calls failed over the run.
    pub failed: u64,
}

/// One second of the run, kept for the summary.
struct Second {
    second: u64,
    calls: CallWindow,
    max_over_mean: Option<f64>,
}

/// Runs the demo `options` describe, printing as it goes; stops early on
/// Ctrl-C.
pub async fn run(options: &DemoOptions) -> Result<DemoOutcome, DemoError> {
    let policy = options.policy.as_str();
    let mut backends = Vec::new();
    for config in options.backends()? {
        backends.push(DemoBackend::start(config).await?);
    }
    let folder = tempfile::Builder::new()
        .prefix("lookaside-demo-")
        .tempdir()
        .map_err(DemoError::ConfigFile)?;
    let path = folder.path().join("lookaside.yaml");
    let addresses: Vec<SocketAddr> = backends.iter().map(DemoBackend::address).collect();
    tokio::fs::write(&path, config_text(policy, &addresses))
        .await
        .map_err(DemoError::ConfigFile)?;

    let mut config = ServeConfig::local(path);
    config.xds_listen = options.xds_listen;
    config.weigh.step = options.step;
    config.weigh.push_min_interval = options.step;
    config.load.stream.interval = options.orca_interval;
    let (stop_control_plane, stopped) = oneshot::channel::<()>();
    let running = server::start(config, async move {
        let _ = stopped.await;
    })
    .await?;

    let client = lookaside_client::Client::builder(format!("http://{}", running.xds_address))
        .node_id("lookaside-demo")
        .build()?;
    let channel = client.channel(CLUSTER);
    let ready = Instant::now() + READY_TIMEOUT;
    while !channel.is_usable() {
        if Instant::now() >= ready {
            return Err(DemoError::NotReady(READY_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let slowdown_at = options.slowdown_at();
    let slow_backend = backends.get(options.slow_backend).map(DemoBackend::name);
    println!(
        "{}",
        narration::intro(&Intro {
            policy: policy.to_owned(),
            backends: backends
                .iter()
                .map(|backend| BackendIntro {
                    name: backend.name().to_owned(),
                    address: backend.address(),
                    workers: backend.workers().count(),
                    cost: backend.workers().call_time(),
                    capacity: backend.capacity(),
                })
                .collect(),
            rate: options.rate(),
            load: options.load,
            step: options.step,
            slowdown: slowdown_at.zip(slow_backend).map(|(at, name)| (
                at,
                name.to_owned(),
                options.slowdown
            )),
            duration: options.duration,
            xds_address: running.xds_address,
        })
    );

    let load = LoadGenerator::start(channel, options.rate(), CALL_TIMEOUT);
    let start = Instant::now();
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut history: Vec<Second> = Vec::new();
    let mut slowed_at = None;
    let mut second = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut interrupted => {
                println!("\nStopped by Ctrl-C.");
                break;
            }
        }
        second += 1;
        let mut calls = load.take();
        let frame = frame(
            second,
            load.rate(),
            &mut calls,
            &backends,
            &running.weighted.borrow(),
        );
        if second % TITLES_EVERY == 1 {
            println!("{}", table::column_titles());
        }
        println!("{}", table::render(&frame));
        history.push(Second {
            second,
            calls,
            max_over_mean: frame.max_over_mean(),
        });
        let elapsed = start.elapsed();
        if let (None, Some(at), Some(backend)) =
            (slowed_at, slowdown_at, backends.get(options.slow_backend))
            && elapsed >= at
        {
            backend.set_slowdown(options.slowdown);
            println!(
                "{}",
                narration::slowdown_banner(&Slowdown {
                    at: Duration::from_secs(second),
                    backend: backend.name(),
                    factor: options.slowdown,
                    call_time: backend.workers().call_time(),
                    policy,
                })
            );
            slowed_at = Some(second);
        }
        if elapsed >= options.duration {
            break;
        }
    }
    drop(load);
    let outcome = outcome(&history, slowed_at);
    println!("\n{}", narration::summary(policy, &outcome.phases));
    let _ = stop_control_plane.send(());
    drop(folder);
    Ok(outcome)
}

/// The demo's config file: one cluster, every backend at weight 1 (the file
/// knows nothing of their capacities; load-driven policies move from there).
fn config_text(policy: &str, addresses: &[SocketAddr]) -> String {
    let mut text =
        format!("clusters:\n  - name: {CLUSTER}\n    policy: {policy}\n    endpoints:\n");
    for address in addresses {
        let _ = writeln!(text, "      - {{ address: \"{address}\", weight: 1 }}");
    }
    text
}

/// The table of one second.
fn frame(
    second: u64,
    rate: f64,
    calls: &mut CallWindow,
    backends: &[DemoBackend],
    weighted: &Arc<Weighted>,
) -> Frame {
    let assignment = weighted.clusters.get(CLUSTER);
    let rows = backends
        .iter()
        .map(|backend| {
            let endpoint = assignment.and_then(|cluster| {
                cluster
                    .endpoints
                    .iter()
                    .find(|endpoint| endpoint.address == backend.address())
            });
            Row {
                backend: backend.name().to_owned(),
                capacity: backend.capacity(),
                slowdown: backend.workers().slowdown(),
                weight: endpoint.map(|endpoint| endpoint.weight),
                reason: endpoint
                    .map_or("-", |endpoint| endpoint.reason.as_str())
                    .to_owned(),
                share: calls.share(backend.name()),
                utilization: backend.utilization(),
                p50: calls.percentile(backend.name(), 0.5),
                p99: calls.percentile(backend.name(), 0.99),
            }
        })
        .collect();
    let mut all = calls.all();
    Frame {
        second,
        sent_per_second: rate,
        ok: calls.ok(),
        failed: calls.failed,
        rows,
        p50: all.percentile(0.5),
        p99: all.percentile(0.99),
    }
}

/// The closing summary's phases: the seconds just before the slowdown and
/// the last seconds of the run.
fn outcome(history: &[Second], slowed_at: Option<u64>) -> DemoOutcome {
    let last = history.last().map_or(0, |s| s.second);
    let mut phases = Vec::new();
    if let Some(slowed) = slowed_at {
        phases.extend(phase("before the slowdown", history, slowed));
        if last > slowed {
            let from = last.saturating_sub(SUMMARY_SECONDS).max(slowed);
            phases.extend(phase_between("end of the run", history, from, last));
        }
    } else {
        phases.extend(phase("end of the run", history, last));
    }
    let mut ok = 0;
    let mut failed = 0;
    for second in history {
        ok += second.calls.ok();
        failed += second.calls.failed;
    }
    DemoOutcome { phases, ok, failed }
}

/// The last `SUMMARY_SECONDS` seconds up to `to`.
fn phase(label: &str, history: &[Second], to: u64) -> Option<Phase> {
    phase_between(label, history, to.saturating_sub(SUMMARY_SECONDS), to)
}

/// The seconds after `from` up to `to`.
fn phase_between(label: &str, history: &[Second], from: u64, to: u64) -> Option<Phase> {
    let seconds: Vec<&Second> = history
        .iter()
        .filter(|s| s.second > from && s.second <= to)
        .collect();
    let first = seconds.first()?.second;
    let mut calls = CallWindow::default();
    for second in &seconds {
        calls.merge(&second.calls);
    }
    let ratios: Vec<f64> = seconds.iter().filter_map(|s| s.max_over_mean).collect();
    let mut all = calls.all();
    Some(Phase {
        label: label.to_owned(),
        seconds: (first, to),
        p50: all.percentile(0.5),
        p99: all.percentile(0.99),
        max_over_mean: (!ratios.is_empty())
            .then(|| ratios.iter().sum::<f64>() / ratios.len() as f64),
        ok: calls.ok(),
        failed: calls.failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn second(number: u64, latency_ms: u64, ratio: f64) -> Second {
        let mut calls = CallWindow::default();
        for _ in 0..10 {
            calls.record_ok("a", Duration::from_millis(latency_ms));
        }
        Second {
            second: number,
            calls,
            max_over_mean: Some(ratio),
        }
    }

    #[test]
    fn the_config_file_names_every_backend_at_the_same_weight() {
        let text = config_text(
            "static",
            &[
                SocketAddr::from(([127, 0, 0, 1], 4001)),
                "[::1]:4002"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0))),
            ],
        );
        assert_eq!(
            text,
            "clusters:\n  - name: greeter\n    policy: static\n    endpoints:\n      \
             - { address: \"127.0.0.1:4001\", weight: 1 }\n      \
             - { address: \"[::1]:4002\", weight: 1 }\n"
        );
        let parsed = crate::sources::file::parse(&text, std::path::Path::new("demo.yaml"));
        assert!(parsed.is_ok_and(
            |clusters| clusters[0].policy == crate::registry::Policy::Static
                && clusters[0].endpoints.len() == 2
        ));
    }

    #[test]
    fn the_summary_compares_before_the_slowdown_with_the_end() {
        let history: Vec<Second> = (1..=20)
            .map(|n| second(n, if n > 10 && n < 15 { 500 } else { 40 }, 1.0))
            .collect();
        let outcome = outcome(&history, Some(10));
        assert_eq!(outcome.ok, 200);
        assert_eq!(outcome.phases.len(), 2);
        assert_eq!(outcome.phases[0].seconds, (6, 10));
        assert_eq!(outcome.phases[0].p99, Some(40 * MS));
        assert_eq!(outcome.phases[0].ok, 50);
        assert_eq!(outcome.phases[1].seconds, (16, 20));
        assert_eq!(outcome.phases[1].max_over_mean, Some(1.0));
        // Without a slowdown: the end of the run only.
        let outcome = super::outcome(&history[..3], None);
        assert_eq!(outcome.phases.len(), 1);
        assert_eq!(outcome.phases[0].seconds, (1, 3));
    }
}
