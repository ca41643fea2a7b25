//! `lb-load`: load through `lookaside-client`. One [`lookaside_client::Client`]
//! of the control plane at `--control-plane`, one balanced channel to
//! `--cluster` for the whole run, `--concurrency` workers calling
//! `lookaside.test.v1.Echo/Who` and counting which backend answered.
//!
//! Always stops by itself: after `--calls` calls, after `--duration-ms`, or
//! (with `--stop-on-stdin`) when stdin says `stop` or closes, whichever comes
//! first. Prints JSON lines on stdout (see `lookaside_tests::client_load`): a
//! start line, a progress line every `--report-ms` with cumulative counts and
//! the time of each failure, and one final report with per-backend counts and
//! every failed call's status. Exits 0 whatever the calls did; the reader
//! judges.
//!
//! ```sh
//! lb-load --control-plane http://127.0.0.1:18000 --cluster greeter --calls 3000
//! lb-load --control-plane http://127.0.0.1:18000 --cluster greeter \
//!     --concurrency 8 --duration-ms 4000 --rate 1000 --report-ms 200
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use lookaside_client::{Client, LbChannel};
use lookaside_tests::client_load::{
    DONE_EVENT, Failure, LoadReport, MAX_LISTED_FAILURES, PROGRESS_EVENT, Progress, START_EVENT,
    STOP_COMMAND, Start,
};
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::time::{Instant, MissedTickBehavior};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "lb-load",
    about = "Calls Echo/Who through lookaside-client and reports where the calls landed, as JSON lines"
)]
struct Args {
    /// The control plane's xDS address: `http://HOST:PORT` (or `HOST:PORT`).
    #[arg(long)]
    control_plane: String,
    /// The cluster to call.
    #[arg(long, default_value = "greeter")]
    cluster: String,
    /// Calls in flight at most (one worker each).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Stop after this many calls.
    #[arg(long, required_unless_present = "duration_ms")]
    calls: Option<u64>,
    /// Stop after this many milliseconds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Calls per second over all workers; 0 or absent: as fast as they go.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Print a progress line this often, in milliseconds; 0: never.
    #[arg(long, default_value_t = 0)]
    report_ms: u64,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    call_timeout_ms: u64,
    /// The node id the control plane shows for this client.
    #[arg(long, default_value = "lb-load")]
    node_id: String,
    /// Longest reconnect backoff towards the control plane, in milliseconds
    /// (the first is 50 ms).
    #[arg(long, default_value_t = 500)]
    reconnect_max_ms: u64,
    /// Also stop when stdin says `stop` or reaches end of file.
    #[arg(long)]
    stop_on_stdin: bool,
}

/// Counts shared by the workers.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    backends: BTreeMap<String, u64>,
    failures: Vec<Failure>,
    messages: BTreeMap<String, u64>,
}

/// What every worker shares.
#[derive(Debug)]
struct Shared {
    start: Instant,
    started: AtomicU64,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn elapsed_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn progress(&self) -> Progress {
        let tally = self.tally();
        Progress {
            event: PROGRESS_EVENT.to_owned(),
            elapsed_ms: self.elapsed_ms(),
            started: self.started.load(Ordering::Relaxed),
            ok: tally.ok,
            failed: tally.failed,
            backends: tally.backends.clone(),
            failure_ms: tally.failures.iter().map(|f| f.ended_ms).collect(),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(run(args));
    // Not a plain drop: that would wait for the blocking read of stdin.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn run(args: Args) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let control_plane = if args.control_plane.contains("://") {
        args.control_plane.clone()
    } else {
        format!("http://{}", args.control_plane)
    };
    let lb = Client::builder(control_plane)
        .node_id(args.node_id.clone())
        .reconnect_backoff(
            Duration::from_millis(50),
            Duration::from_millis(args.reconnect_max_ms.max(50)),
        )
        .first_assignment_timeout(Duration::from_secs(5))
        .build()
        .context("building the lookaside client")?;
    let channel = lb.channel(&args.cluster);

    let shared = Arc::new(Shared {
        start: Instant::now(),
        started: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        tally: Mutex::new(Tally::default()),
    });
    print_line(&Start {
        event: START_EVENT.to_owned(),
        unix_ms: unix_ms(),
        node_id: args.node_id.clone(),
    });

    let mut workers = Vec::with_capacity(args.concurrency);
    for worker in 0..args.concurrency {
        workers.push(tokio::spawn(work(
            worker,
            channel.clone(),
            shared.clone(),
            Plan::of(&args),
        )));
    }
    let all_done = futures::future::join_all(workers);
    tokio::pin!(all_done);

    let deadline = args
        .duration_ms
        .map(|ms| shared.start + Duration::from_millis(ms));
    let mut report = (args.report_ms > 0).then(|| {
        let mut interval = tokio::time::interval_at(
            shared.start + Duration::from_millis(args.report_ms),
            Duration::from_millis(args.report_ms),
        );
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut stdin_stop = std::pin::pin!(stop_requested(args.stop_on_stdin));
    let mut stopped_by = "calls";
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            () = sleep_until(deadline) => {
                stopped_by = "duration";
                shared.stop.store(true, Ordering::Relaxed);
                (&mut all_done).await;
                break;
            }
            () = &mut stdin_stop => {
                stopped_by = "stdin";
                shared.stop.store(true, Ordering::Relaxed);
                (&mut all_done).await;
                break;
            }
            _ = tick(report.as_mut()) => print_line(&shared.progress()),
        }
    }

    let tally = shared.tally();
    print_line(&LoadReport {
        event: DONE_EVENT.to_owned(),
        elapsed_ms: shared.elapsed_ms(),
        stopped_by: stopped_by.to_owned(),
        started: shared.started.load(Ordering::Relaxed),
        ok: tally.ok,
        failed: tally.failed,
        backends: tally.backends.clone(),
        failures: tally.failures.clone(),
        messages: tally.messages.clone(),
    });
    Ok(())
}

/// One worker's share of the load.
#[derive(Debug, Clone, Copy)]
struct Plan {
    calls: Option<u64>,
    /// How many workers share the load.
    workers: usize,
    /// Time between two calls of this worker, if paced.
    period: Option<Duration>,
    call_timeout: Duration,
}

impl Plan {
    fn of(args: &Args) -> Self {
        let period = (args.rate > 0)
            .then(|| Duration::from_secs_f64(args.concurrency as f64 / f64::from(args.rate)));
        Self {
            calls: args.calls,
            workers: args.concurrency,
            period,
            call_timeout: Duration::from_millis(args.call_timeout_ms),
        }
    }
}

/// Makes calls until the plan's count is reached or the run is stopped.
async fn work(worker: usize, channel: LbChannel, shared: Arc<Shared>, plan: Plan) {
    let mut client = EchoClient::new(channel);
    let mut pace = plan.period.map(|period| {
        // Spread the workers' first calls over one period.
        let offset = period.mul_f64(worker as f64 / plan.workers as f64);
        let mut interval = tokio::time::interval_at(shared.start + offset, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    loop {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let number = shared.started.fetch_add(1, Ordering::Relaxed);
        if plan.calls.is_some_and(|calls| number >= calls) {
            shared.started.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let started_ms = shared.elapsed_ms();
        let mut request = tonic::Request::new(WhoRequest {});
        request.set_timeout(plan.call_timeout);
        // The outer timeout catches a call that ignores its deadline.
        let outcome = tokio::time::timeout(
            plan.call_timeout + Duration::from_millis(500),
            client.who(request),
        )
        .await;
        let ended_ms = shared.elapsed_ms();
        let mut tally = shared.tally();
        match outcome {
            Ok(Ok(reply)) => {
                tally.ok += 1;
                *tally
                    .backends
                    .entry(reply.into_inner().backend)
                    .or_default() += 1;
            }
            Ok(Err(status)) => {
                record_failure(
                    &mut tally,
                    Failure {
                        started_ms,
                        ended_ms,
                        code: format!("{:?}", status.code()),
                        message: status.message().to_owned(),
                    },
                );
            }
            Err(_) => record_failure(
                &mut tally,
                Failure {
                    started_ms,
                    ended_ms,
                    code: "DeadlineExceeded".to_owned(),
                    message: format!("no answer within {:?} (client side)", plan.call_timeout),
                },
            ),
        }
    }
}

fn record_failure(tally: &mut Tally, failure: Failure) {
    tally.failed += 1;
    *tally
        .messages
        .entry(format!("{}: {}", failure.code, failure.message))
        .or_default() += 1;
    if tally.failures.len() < MAX_LISTED_FAILURES {
        tally.failures.push(failure);
    }
}

/// Resolves when stdin says `stop` or closes, if `enabled`; never otherwise.
async fn stop_requested(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == STOP_COMMAND {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn print_line(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("lb-load: cannot encode a line: {error}"),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}
