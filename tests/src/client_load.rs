//! Load through `lookaside-client`: runs the `lb-load` binary (one process,
//! one [`lookaside_client::Client`], one balanced channel for its whole life)
//! against a control plane and reads what it reports.
//!
//! `lb-load` prints one JSON object per line on stdout: a [`Start`] line, a
//! [`Progress`] line every `--report-ms` (cumulative counts, so that a test
//! can watch the split change while the load runs) and one [`LoadReport`]
//! line at the end. The types here are what it writes and what the tests
//! read. Times are milliseconds since the load started; [`ClientLoad::now_ms`]
//! puts the test's own events (a kill, an edit) on the same time line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::process::{ChildProcess, Output};
use crate::split::Split;
use crate::workspace;

/// What a [`Start`] line says in `event`.
pub const START_EVENT: &str = "start";
/// What a [`Progress`] line says in `event`.
pub const PROGRESS_EVENT: &str = "progress";
/// What the final [`LoadReport`] line says in `event`.
pub const DONE_EVENT: &str = "done";
/// What `lb-load --stop-on-stdin` reads on stdin to stop early.
pub const STOP_COMMAND: &str = "stop";

/// How long `lb-load` may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The first line: when the load started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// Always [`START_EVENT`].
    pub event: String,
    /// Wall-clock time of the start, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The node id the client shows the control plane.
    pub node_id: String,
}

/// A periodic line: everything so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Always [`PROGRESS_EVENT`].
    pub event: String,
    /// When this line was written.
    pub elapsed_ms: u64,
    /// Calls started so far.
    pub started: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Successful calls per backend (the name `Who` answered with).
    pub backends: BTreeMap<String, u64>,
    /// When each failed call ended (the first [`MAX_LISTED_FAILURES`]).
    pub failure_ms: Vec<u64>,
}

/// The last line: everything, with every failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Always [`DONE_EVENT`].
    pub event: String,
    /// How long the load ran.
    pub elapsed_ms: u64,
    /// Why it stopped: `calls`, `duration` or `stdin`.
    pub stopped_by: String,
    /// Calls started.
    pub started: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Successful calls per backend.
    pub backends: BTreeMap<String, u64>,
    /// Failed calls, in the order they ended (the first
    /// [`MAX_LISTED_FAILURES`]).
    pub failures: Vec<Failure>,
    /// Failed calls per `code: message`.
    pub messages: BTreeMap<String, u64>,
}

/// One failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When it started.
    pub started_ms: u64,
    /// When it failed.
    pub ended_ms: u64,
    /// gRPC status code, e.g. `Unavailable` (`DeadlineExceeded` also for the
    /// client-side timeout).
    pub code: String,
    /// The status message.
    pub message: String,
}

/// How many failures a line lists at most (the counts are always whole).
pub const MAX_LISTED_FAILURES: usize = 1000;

impl Progress {
    /// Successful calls per backend as a [`Split`].
    pub fn split(&self) -> Split {
        split_of(&self.backends)
    }

    /// Successful calls per backend between `earlier` and this line.
    pub fn since(&self, earlier: &Progress) -> Split {
        let mut split = Split::new();
        for (backend, count) in &self.backends {
            let before = earlier.backends.get(backend).copied().unwrap_or(0);
            if *count > before {
                split.add(backend, count - before);
            }
        }
        split
    }
}

impl LoadReport {
    /// Successful calls per backend as a [`Split`].
    pub fn split(&self) -> Split {
        split_of(&self.backends)
    }
}

fn split_of(backends: &BTreeMap<String, u64>) -> Split {
    let mut split = Split::new();
    for (backend, count) in backends {
        split.add(backend, *count);
    }
    split
}

/// What load to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The cluster to call (`lb.channel(cluster)`).
    pub cluster: String,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Stop after this many calls.
    pub calls: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Calls per second over all workers (`None`: as fast as they go).
    pub rate: Option<u32>,
    /// How often to print a [`Progress`] line (`None`: never).
    pub report_every: Option<Duration>,
    /// Node id shown to the control plane.
    pub node_id: String,
    /// Deadline of each call.
    pub call_timeout: Duration,
}

impl LoadOptions {
    /// `calls` calls to `cluster`, one at a time, as fast as they go.
    pub fn calls(cluster: &str, calls: u64) -> Self {
        Self {
            calls: Some(calls),
            ..Self::base(cluster)
        }
    }

    /// Calls to `cluster` at `rate` per second for `duration` (a test may
    /// stop it earlier with [`ClientLoad::stop`]), reporting progress every
    /// 100 ms.
    pub fn timed(cluster: &str, duration: Duration, rate: u32) -> Self {
        Self {
            duration: Some(duration),
            rate: Some(rate),
            report_every: Some(Duration::from_millis(100)),
            ..Self::base(cluster)
        }
    }

    fn base(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            concurrency: 1,
            calls: None,
            duration: None,
            rate: None,
            report_every: None,
            node_id: "lb-load".to_owned(),
            call_timeout: Duration::from_secs(5),
        }
    }

    /// The same with at most `concurrency` calls in flight.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The same, reporting progress every `every`.
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = Some(every);
        self
    }

    /// The same with node id `node_id`.
    pub fn node_id(mut self, node_id: &str) -> Self {
        self.node_id = node_id.to_owned();
        self
    }

    /// The longest this load can run, from its own options.
    fn bound(&self) -> Duration {
        let calls = self.calls.map_or(Duration::ZERO, |calls| {
            // A generous bound for calls one at a time in a debug build.
            Duration::from_millis(calls.saturating_mul(5))
        });
        let duration = self.duration.unwrap_or(Duration::ZERO);
        let longest = if self.calls.is_some() && self.duration.is_some() {
            calls.min(duration)
        } else {
            calls.max(duration)
        };
        longest + self.call_timeout + START_TIMEOUT
    }
}

/// A running `lb-load`.
#[derive(Debug)]
pub struct ClientLoad {
    process: ChildProcess,
    start: Start,
    bound: Duration,
}

impl ClientLoad {
    /// Starts `lb-load` against the control plane at `xds`; returns once it
    /// has started its client (its first calls may still be waiting for the
    /// first assignment).
    pub async fn start(xds: SocketAddr, options: &LoadOptions) -> Result<Self> {
        let binary = workspace::binary("lb-load")?;
        let mut command = Command::new(binary);
        command
            .args(["--control-plane", &format!("http://{xds}")])
            .args(["--cluster", &options.cluster])
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--node-id", &options.node_id])
            .args([
                "--call-timeout-ms",
                &options.call_timeout.as_millis().to_string(),
            ])
            .arg("--stop-on-stdin");
        if let Some(calls) = options.calls {
            command.args(["--calls", &calls.to_string()]);
        }
        if let Some(duration) = options.duration {
            command.args(["--duration-ms", &duration.as_millis().to_string()]);
        }
        if let Some(rate) = options.rate {
            command.args(["--rate", &rate.to_string()]);
        }
        if let Some(every) = options.report_every {
            command.args(["--report-ms", &every.as_millis().to_string()]);
        }
        let mut process = ChildProcess::spawn("lb-load", command)?;
        let start = process
            .wait_for_line(0, "its start line", START_TIMEOUT, parse::<Start>)
            .await?;
        Ok(Self {
            process,
            start,
            bound: options.bound(),
        })
    }

    /// Runs `options` to the end and returns the final report.
    pub async fn run(xds: SocketAddr, options: &LoadOptions) -> Result<LoadReport> {
        Self::start(xds, options).await?.finish().await
    }

    /// The start line.
    pub fn started(&self) -> &Start {
        &self.start
    }

    /// Now, in milliseconds on the load's time line.
    pub fn now_ms(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        now.saturating_sub(self.start.unix_ms)
    }

    /// Every progress line so far.
    pub fn progress(&self) -> Vec<Progress> {
        self.process
            .output()
            .lines()
            .iter()
            .filter_map(|line| parse::<Progress>(line))
            .collect()
    }

    /// The latest progress line, if any.
    pub fn latest(&self) -> Option<Progress> {
        self.progress().pop()
    }

    /// What `lb-load` printed so far.
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Waits up to `timeout` for a progress line that `accept`s; returns it.
    /// Fails if the load ends first.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&Progress) -> bool,
    ) -> Result<Progress> {
        self.process
            .wait_for_line(0, what, timeout, |line| {
                parse::<Progress>(line).filter(|progress| accept(progress))
            })
            .await
    }

    /// Waits up to `timeout` for the first window of progress lines, starting
    /// at or after `after_ms`, with at least `min_calls` successful calls
    /// split as `weights` ask (within `tolerance` percentage points, and
    /// nothing to other backends). Each progress line ends one candidate
    /// window: the shortest one back to an earlier line with enough calls,
    /// so a slow machine only makes windows longer.
    pub async fn wait_for_split(
        &mut self,
        after_ms: u64,
        weights: &[(&str, u32)],
        tolerance: f64,
        min_calls: u64,
        timeout: Duration,
    ) -> Result<Window> {
        let what = format!("a window after {after_ms} ms split as {weights:?}");
        let mut lines: Vec<Progress> = Vec::new();
        let mut last_seen = String::from("no window yet");
        let found = self
            .process
            .wait_for_line(0, &what, timeout, |line| {
                let progress = parse::<Progress>(line)?;
                // `wait_for_line` scans from the first line again at each
                // wake-up: start over when time goes back.
                if lines
                    .last()
                    .is_some_and(|last| progress.elapsed_ms <= last.elapsed_ms)
                {
                    lines.clear();
                }
                if progress.elapsed_ms < after_ms {
                    return None;
                }
                let earlier = lines
                    .iter()
                    .rev()
                    .find(|earlier| progress.ok.saturating_sub(earlier.ok) >= min_calls)
                    .cloned();
                lines.push(progress.clone());
                let Some(earlier) = earlier else {
                    last_seen = format!("fewer than {min_calls} calls since {after_ms} ms");
                    return None;
                };
                let split = progress.since(&earlier);
                match split.check(weights, tolerance) {
                    Ok(()) => Some(Window {
                        from_ms: earlier.elapsed_ms,
                        to_ms: progress.elapsed_ms,
                        split,
                    }),
                    Err(error) => {
                        last_seen = format!(
                            "{}..{} ms: {error:#}",
                            earlier.elapsed_ms, progress.elapsed_ms
                        );
                        None
                    }
                }
            })
            .await;
        found.with_context(|| format!("last window: {last_seen}"))
    }

    /// Asks it to stop now (it then prints its final report).
    pub async fn stop(&mut self) -> Result<()> {
        self.process.send_line(STOP_COMMAND).await
    }

    /// Waits for the final report (at most as long as the load's own bound)
    /// and for the process to exit. [`ClientLoad::progress`] still works
    /// afterwards.
    pub async fn finish(&mut self) -> Result<LoadReport> {
        let report = self
            .process
            .wait_for_line(0, "its final report", self.bound, parse::<LoadReport>)
            .await?;
        let status = self.process.wait(Duration::from_secs(5)).await?;
        if !status.success() {
            bail!(
                "lb-load exited with {status} after its report; its last output:\n{}",
                self.process.output().tail(20)
            );
        }
        Ok(report)
    }
}

/// Calls between two progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Time of the earlier line.
    pub from_ms: u64,
    /// Time of the later line.
    pub to_ms: u64,
    /// Successful calls per backend in between.
    pub split: Split,
}

/// `line` as a `T`, if it is one (the `event` field tells which).
fn parse<T: for<'de> Deserialize<'de> + HasEvent>(line: &str) -> Option<T> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("event")?.as_str()? != T::EVENT {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// A line type and the `event` it carries.
trait HasEvent {
    const EVENT: &'static str;
}

impl HasEvent for Start {
    const EVENT: &'static str = START_EVENT;
}

impl HasEvent for Progress {
    const EVENT: &'static str = PROGRESS_EVENT;
}

impl HasEvent for LoadReport {
    const EVENT: &'static str = DONE_EVENT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_it_writes() {
        let progress = Progress {
            event: PROGRESS_EVENT.to_owned(),
            elapsed_ms: 200,
            ok: 3,
            backends: BTreeMap::from([("b1".to_owned(), 1), ("b2".to_owned(), 2)]),
            ..Progress::default()
        };
        let line = serde_json::to_string(&progress).unwrap();
        assert_eq!(parse::<Progress>(&line), Some(progress.clone()));
        assert_eq!(parse::<LoadReport>(&line), None);
        let earlier = Progress {
            backends: BTreeMap::from([("b1".to_owned(), 1)]),
            ..Progress::default()
        };
        assert_eq!(progress.since(&earlier).counts().get("b2"), Some(&2));
        assert_eq!(progress.since(&earlier).total(), 2);
    }
}
