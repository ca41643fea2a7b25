//! `soak`: many xDS clients on one real `lookaside serve` for a long time,
//! with clients coming and going and weights changing, to show that the
//! control plane's memory and CPU do not creep and pushes stay fast.
//!
//! The driver starts `lookaside serve` (the binary next to this one, or
//! `--lookaside`) on a config file of `--clusters` x `--endpoints` (policy
//! `static`), opens `--streams` ADS streams over `--connections` HTTP/2
//! connections (half SotW, half Delta; each watches one cluster's EDS, a
//! `--cds-fraction` of them also every Cluster), and then for
//! `--duration-s` seconds:
//!
//! - every second rewrites the config file with new weights for a
//!   `--change-fraction` of the clusters (the weights carry the
//!   generation, see `lookaside_tests::soak::config_file`);
//! - every second closes a `--churn` fraction of the streams (spread over
//!   the second, picked at random) and opens as many new ones, with new
//!   node ids;
//! - every `--sample-s` seconds prints one line: the control plane's RSS
//!   and CPU (% of one core), the driver's CPU, the rest of the machine's
//!   CPU, open streams as the driver and the server count them, pushes and
//!   their p99 in that window.
//!
//! At the end it prints a table per minute, the least-squares slope of RSS
//! over the second half of the run, push latency percentiles over the
//! whole run, and every error. Push latency is measured from the moment
//! the driver starts writing a generation's file to the moment a stream
//! subscribed before that write has decoded that generation: it includes
//! the control plane's config poll interval and its settle re-read.
//!
//! The driver is bounded: fixed-size histograms, two atomics per stream, a
//! few queued requests per stream, capped error list; it decodes only the
//! response fields it needs. Exits non-zero only when it cannot run (the
//! control plane does not start or dies); the figures are for a human.
//!
//! ```sh
//! scripts/soak.sh                                  # the full run: 10,000 streams, 10 min
//! scripts/soak.sh --duration-s 60 --streams 2000   # a short one
//! ```

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use lookaside_tests::soak::config_file::{MAX_GENERATION, Plan, splitmix64};
use lookaside_tests::soak::histogram::Histogram;
use lookaside_tests::soak::proc_stats::{Process, TICKS_PER_SECOND, machine_busy_ticks};
use lookaside_tests::soak::report::{mib, ms, slope};
use lookaside_tests::soak::stream::{
    self, CounterSnapshot, Protocol, Run, StreamSpec, StreamState,
};
use lookaside_tests::{http, workspace};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::{Channel, Endpoint};

/// Control steps per second (churn is spread over them).
const STEPS_PER_SECOND: u64 = 10;

/// How long the control plane may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the ramp may take until every stream has its first assignment.
const RAMP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long, after the last write, every stream may take to have it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// A stream subscribed before a generation was written this long ago must
/// have received it, or it counts as lagging.
const LAG_SECONDS: u32 = 5;

/// Seconds with every stream open and nothing changing, before the run
/// (the baseline sample's CPU is measured over them).
const IDLE_SECONDS: u64 = 5;

/// Streams opened per ramp step (every 100 ms).
const RAMP_BATCH: usize = 500;

/// Warning and error lines of the control plane kept for the summary.
const KEPT_LOG_LINES: usize = 10;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Soak a real `lookaside serve`: many ADS streams with churn and weight changes; prints RSS, CPU and push latency over time"
)]
struct Args {
    /// ADS streams kept open.
    #[arg(long, env = "LOOKASIDE_SOAK_STREAMS", default_value_t = 10_000)]
    streams: usize,
    /// Fraction of the streams closed and replaced every second.
    #[arg(long, env = "LOOKASIDE_SOAK_CHURN", default_value_t = 0.1)]
    churn: f64,
    /// Length of the measured run, in seconds (after the ramp).
    #[arg(long, env = "LOOKASIDE_SOAK_DURATION_S", default_value_t = 600)]
    duration_s: u32,
    /// Clusters in the config file.
    #[arg(long, env = "LOOKASIDE_SOAK_CLUSTERS", default_value_t = 100)]
    clusters: u32,
    /// Endpoints per cluster.
    #[arg(long, env = "LOOKASIDE_SOAK_ENDPOINTS", default_value_t = 10)]
    endpoints: u32,
    /// HTTP/2 connections the streams share.
    #[arg(long, env = "LOOKASIDE_SOAK_CONNECTIONS", default_value_t = 100)]
    connections: usize,
    /// Fraction of the clusters whose weights each second's write changes.
    #[arg(long, env = "LOOKASIDE_SOAK_CHANGE_FRACTION", default_value_t = 1.0)]
    change_fraction: f64,
    /// Fraction of the streams that also watch every Cluster (CDS wildcard).
    #[arg(long, env = "LOOKASIDE_SOAK_CDS_FRACTION", default_value_t = 0.1)]
    cds_fraction: f64,
    /// Seconds between two samples (and the latency window of each line).
    #[arg(long, env = "LOOKASIDE_SOAK_SAMPLE_S", default_value_t = 10)]
    sample_s: u32,
    /// The control plane's `--config-poll-ms`.
    #[arg(long, env = "LOOKASIDE_SOAK_CONFIG_POLL_MS", default_value_t = 50)]
    config_poll_ms: u64,
    /// The control plane's `--log` filter (`info` is its default, and logs
    /// a line per connecting client).
    #[arg(long, env = "LOOKASIDE_SOAK_CP_LOG", default_value = "info")]
    cp_log: String,
    /// The `lookaside` binary; default: the one next to this binary.
    #[arg(long, env = "LOOKASIDE_SOAK_LOOKASIDE")]
    lookaside: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    check(&args)?;
    let plan = Plan {
        clusters: args.clusters,
        endpoints: args.endpoints,
        change_fraction: args.change_fraction,
    };
    let dir = tempfile::Builder::new()
        .prefix("lookaside-soak-")
        .tempdir()
        .context("creating a temporary folder")?;
    let config_path = dir.path().join("soak.yaml");
    let mut current = vec![0u32; args.clusters as usize];
    write_atomically(&config_path, &plan.yaml(&current))?;

    let binary = match &args.lookaside {
        Some(path) => path.clone(),
        None => workspace::binary("lookaside")?,
    };
    let mut control_plane = ControlPlane::start(&binary, &config_path, &args).await?;
    print_header(&args, &binary, control_plane.pid);

    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let channel = Endpoint::from_shared(format!("http://{}", control_plane.xds))
            .context("xDS address")?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", control_plane.xds))?;
        channels.push(channel);
    }

    let window = Duration::from_secs(u64::from(args.sample_s));
    let run = Arc::new(Run::new(
        plan,
        args.duration_s,
        window,
        Duration::from_secs(u64::from(args.duration_s)),
    ));
    let mut driver = Driver {
        args: &args,
        run: run.clone(),
        channels,
        slots: Vec::with_capacity(args.streams),
        next_serial: 0,
        rng: 0x5eed,
    };

    // Ramp: open every stream, RAMP_BATCH per 100 ms, and wait for each
    // one's first assignment.
    let ramp_started = Instant::now();
    while driver.slots.len() < args.streams {
        for _ in 0..RAMP_BATCH.min(args.streams - driver.slots.len()) {
            let slot = driver.open(driver.slots.len());
            driver.slots.push(slot);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + RAMP_TIMEOUT;
    loop {
        let subscribed = driver.subscribed();
        if subscribed == args.streams {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {subscribed} of {} streams had their first assignment after {RAMP_TIMEOUT:?}; errors: {:?}; control plane's last warnings: {:?}",
                args.streams,
                run.errors(),
                control_plane.log.kept()
            );
        }
        control_plane.ensure_running()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = ramp_started.elapsed();
    let ramp_subscribe = run.subscribe_window(0);
    println!(
        "ramp: {} streams subscribed in {:.1} s (open to first assignment p50 {} ms, p99 {} ms)",
        args.streams,
        ramp.as_secs_f64(),
        ms(ramp_subscribe.and_then(|h| h.quantile(0.5))),
        ms(ramp_subscribe.and_then(|h| h.quantile(0.99))),
    );
    // Let the ramp's burst settle; the baseline sample's CPU figures are
    // those of these idle seconds with every stream open.
    let mut sampler = Sampler::new(control_plane.pid);
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;

    // The measured run.
    run.begin_windows();
    let epoch = Instant::now();
    let baseline = sampler.sample(0.0, &driver, &control_plane, 0, None).await;
    print_sample(&baseline);
    let mut samples = vec![baseline];
    let mut ticks = tokio::time::interval_at(
        epoch + Duration::from_millis(1000 / STEPS_PER_SECOND),
        Duration::from_millis(1000 / STEPS_PER_SECOND),
    );
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let steps = u64::from(args.duration_s) * STEPS_PER_SECOND;
    let per_step = args.streams as f64 * args.churn / STEPS_PER_SECOND as f64;
    let mut churn_budget = 0.0;
    let mut generation = 0u32;
    let mut late_steps = 0u64;
    for step in 1..=steps {
        let at = ticks.tick().await;
        if at.elapsed() > Duration::from_millis(50) {
            late_steps += 1;
        }
        // A new generation at the start of every second.
        if (step - 1) % STEPS_PER_SECOND == 0 {
            generation += 1;
            for (cluster, carried) in current.iter_mut().enumerate() {
                if plan.changes(cluster as u32, generation) {
                    *carried = generation;
                }
            }
            run.mark_written(generation);
            write_atomically(&config_path, &plan.yaml(&current))?;
        }
        driver.replace_failed();
        churn_budget += per_step;
        let closing = churn_budget.floor() as usize;
        churn_budget -= closing as f64;
        driver.churn(closing);
        if step % (u64::from(args.sample_s) * STEPS_PER_SECOND) == 0 {
            control_plane.ensure_running()?;
            let seconds = step as f64 / STEPS_PER_SECOND as f64;
            let window = (step / (u64::from(args.sample_s) * STEPS_PER_SECOND)) as usize;
            let old = generation.checked_sub(LAG_SECONDS);
            let sample = sampler
                .sample(seconds, &driver, &control_plane, window, old)
                .await;
            print_sample(&sample);
            samples.push(sample);
        }
    }

    // Settle: every stream must get the last generation.
    let settle_started = Instant::now();
    let unsettled = loop {
        let unsettled = driver.behind(generation, true);
        if unsettled == 0 || settle_started.elapsed() >= SETTLE_TIMEOUT {
            break unsettled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let settled_in = settle_started.elapsed();
    control_plane.ensure_running()?;
    let server = scrape(control_plane.metrics).await;

    print_summary(&Summary {
        args: &args,
        run: &run,
        samples: &samples,
        generation,
        unsettled,
        settled_in,
        late_steps,
        server: &server,
        log: &control_plane.log,
    });
    driver.close_all();
    control_plane.stop().await;
    Ok(())
}

/// Refuses arguments the run cannot honour.
fn check(args: &Args) -> Result<()> {
    ensure!(args.streams > 0, "--streams must be at least 1");
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(
        args.clusters > 0 && args.endpoints > 0,
        "--clusters and --endpoints must be at least 1"
    );
    ensure!(
        u64::from(args.clusters) * u64::from(args.endpoints) < 1 << 24,
        "--clusters x --endpoints must stay under 2^24 (one 10.x.y.z address each)"
    );
    ensure!(
        (0.0..=1.0).contains(&args.churn)
            && (0.0..=1.0).contains(&args.cds_fraction)
            && args.change_fraction > 0.0
            && args.change_fraction <= 1.0,
        "--churn and --cds-fraction must be in 0..=1, --change-fraction in (0, 1]"
    );
    ensure!(
        args.duration_s >= args.sample_s && args.sample_s > 0,
        "--duration-s must be at least --sample-s, which must be at least 1"
    );
    ensure!(
        args.duration_s <= MAX_GENERATION,
        "--duration-s must be at most {MAX_GENERATION} (one generation a second, carried in a weight of at most 10000)"
    );
    Ok(())
}

/// Replaces `path` through a temporary file and a rename, so the control
/// plane never reads half a file.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, contents)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

/// One open stream: its task and what it saw.
struct Slot {
    handle: JoinHandle<()>,
    state: Arc<StreamState>,
}

/// The streams and how they are opened and closed.
struct Driver<'a> {
    args: &'a Args,
    run: Arc<Run>,
    channels: Vec<Channel>,
    slots: Vec<Slot>,
    next_serial: u64,
    rng: u64,
}

impl Driver<'_> {
    /// Opens a new stream for slot `index` (on that slot's connection).
    fn open(&mut self, index: usize) -> Slot {
        let serial = self.next_serial;
        self.next_serial += 1;
        let draw = splitmix64(serial ^ 0xc0ffee);
        let spec = StreamSpec {
            serial,
            cluster: ((serial / 2) % u64::from(self.args.clusters)) as u32,
            protocol: if serial.is_multiple_of(2) {
                Protocol::Sotw
            } else {
                Protocol::Delta
            },
            cds: ((draw >> 11) as f64 / (1u64 << 53) as f64) < self.args.cds_fraction,
        };
        let channel = self.channels[index % self.channels.len()].clone();
        let (handle, state) = stream::spawn(spec, channel, self.run.clone());
        Slot { handle, state }
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(1);
        splitmix64(self.rng)
    }

    /// Closes `count` streams picked at random and opens as many new ones.
    fn churn(&mut self, count: usize) {
        let count = count.min(self.slots.len());
        let mut picked = HashSet::with_capacity(count);
        while picked.len() < count {
            let index = (self.random() % self.slots.len() as u64) as usize;
            picked.insert(index);
        }
        for index in picked {
            self.slots[index].handle.abort();
            self.run.counters().closed.fetch_add(1, Ordering::Relaxed);
            self.slots[index] = self.open(index);
        }
    }

    /// Opens a new stream in place of every one that ended by itself (a
    /// real client reconnects; the failure is already counted).
    fn replace_failed(&mut self) {
        for index in 0..self.slots.len() {
            if self.slots[index].handle.is_finished() {
                self.slots[index] = self.open(index);
            }
        }
    }

    /// Streams that have had their first assignment.
    fn subscribed(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.state.generation().is_some())
            .count()
    }

    /// Streams without their cluster's state as of `generation`: of those
    /// that had subscribed before it was written, or of all (`all`).
    fn behind(&self, generation: u32, all: bool) -> usize {
        let Some(written) = self.run.written_at(generation) else {
            return 0;
        };
        let plan = self.run.plan();
        let expected: Vec<u32> = (0..plan.clusters)
            .map(|cluster| plan.last_change(cluster, generation))
            .collect();
        self.slots
            .iter()
            .filter(|slot| all || slot.state.subscribed_at().is_some_and(|at| at <= written))
            .filter(|slot| {
                let cluster = slot.state.spec().cluster as usize;
                slot.state
                    .generation()
                    .is_none_or(|got| got < expected[cluster])
            })
            .count()
    }

    fn close_all(&mut self) {
        for slot in self.slots.drain(..) {
            slot.handle.abort();
        }
    }
}

/// The control plane's counters read from `/metrics`.
#[derive(Debug, Clone, Default)]
struct ServerCounters {
    /// `lookaside_xds_streams`.
    streams: Option<u64>,
    /// `lookaside_xds_nacks_total`, all labels.
    nacks: Option<u64>,
    /// `lookaside_xds_limit_hits_total`, all labels.
    limit_hits: Option<u64>,
    /// `lookaside_config_rejections_total`.
    config_rejections: Option<u64>,
}

/// Reads the control plane's metrics; absent values if it does not answer.
async fn scrape(metrics: SocketAddr) -> ServerCounters {
    let Ok(text) = http::get_ok(metrics, "/metrics").await else {
        return ServerCounters::default();
    };
    ServerCounters {
        streams: Some(metric_sum(&text, "lookaside_xds_streams")),
        nacks: Some(metric_sum(&text, "lookaside_xds_nacks_total")),
        limit_hits: Some(metric_sum(&text, "lookaside_xds_limit_hits_total")),
        config_rejections: Some(metric_sum(&text, "lookaside_config_rejections_total")),
    }
}

/// The sum of every series of metric `name` in a Prometheus text page (0
/// without any: prometheus-client shows no labelled family before its
/// first series).
fn metric_sum(text: &str, name: &str) -> u64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += value;
        }
    }
    sum as u64
}

/// One sample line's figures.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the measured run started.
    at_s: f64,
    cp_rss_kib: u64,
    /// Percent of one core since the previous sample.
    cp_cpu: f64,
    driver_cpu: f64,
    driver_rss_kib: u64,
    /// The machine's busy CPU not spent by the control plane or driver.
    other_cpu: f64,
    live: usize,
    server: ServerCounters,
    lagging: usize,
    counters: CounterSnapshot,
    /// The latency window this sample closes (0 for the baseline).
    window: usize,
}

/// Reads CPU time deltas between samples.
struct Sampler {
    pid: u32,
    last: Instant,
    cp_ticks: u64,
    driver_ticks: u64,
    machine_ticks: u64,
}

impl Sampler {
    fn new(pid: u32) -> Self {
        Self {
            pid,
            last: Instant::now(),
            cp_ticks: Process::Pid(pid).cpu_ticks().unwrap_or(0),
            driver_ticks: Process::Current.cpu_ticks().unwrap_or(0),
            machine_ticks: machine_busy_ticks().unwrap_or(0),
        }
    }

    async fn sample(
        &mut self,
        at_s: f64,
        driver: &Driver<'_>,
        control_plane: &ControlPlane,
        window: usize,
        lag_generation: Option<u32>,
    ) -> Sample {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64().max(1e-3);
        let cp_ticks = Process::Pid(self.pid).cpu_ticks().unwrap_or(self.cp_ticks);
        let driver_ticks = Process::Current.cpu_ticks().unwrap_or(self.driver_ticks);
        let machine_ticks = machine_busy_ticks().unwrap_or(self.machine_ticks);
        let percent = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / elapsed * 100.0;
        let cp = cp_ticks.saturating_sub(self.cp_ticks);
        let own = driver_ticks.saturating_sub(self.driver_ticks);
        let machine = machine_ticks.saturating_sub(self.machine_ticks);
        self.last = now;
        self.cp_ticks = cp_ticks;
        self.driver_ticks = driver_ticks;
        self.machine_ticks = machine_ticks;
        Sample {
            at_s,
            cp_rss_kib: Process::Pid(self.pid).rss_kib().unwrap_or(0),
            cp_cpu: percent(cp),
            driver_cpu: percent(own),
            driver_rss_kib: Process::Current.rss_kib().unwrap_or(0),
            other_cpu: percent(machine.saturating_sub(cp + own)),
            live: driver.slots.len(),
            server: scrape(control_plane.metrics).await,
            lagging: lag_generation.map_or(0, |g| driver.behind(g, false)),
            counters: driver.run.counters().snapshot(),
            window,
        }
    }
}

fn print_header(args: &Args, binary: &Path, pid: u32) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} GiB", mib(kib) / 1024.0),
        );
    println!(
        "soak: {} ADS streams (half SotW, half Delta; {:.0} % also CDS wildcard) over {} HTTP/2 connections",
        args.streams,
        args.cds_fraction * 100.0,
        args.connections
    );
    println!(
        "      {} clusters x {} endpoints (policy static); every second: {:.0} % of clusters get new weights, {:.0} % of streams replaced",
        args.clusters,
        args.endpoints,
        args.change_fraction * 100.0,
        args.churn * 100.0
    );
    println!(
        "      {} s measured, a sample every {} s; control plane {} (pid {pid}), --config-poll-ms {}, --log {}",
        args.duration_s,
        args.sample_s,
        binary.display(),
        args.config_poll_ms,
        args.cp_log
    );
    println!(
        "      machine: {cores} cores ({cpu}), {memory}; driver and control plane share it (and with anything else running: see `other`)"
    );
}

fn print_sample(sample: &Sample) {
    println!(
        "[{:>5.0} s] control plane: rss {:>7.1} MiB, cpu {:>5.1} % | driver: cpu {:>5.1} %, rss {:>6.1} MiB | other {:>5.1} % | streams {} (server {}) lagging {} | opened {} closed {} failed {} | pushes {} nacks {} skipped {}",
        sample.at_s,
        mib(sample.cp_rss_kib),
        sample.cp_cpu,
        sample.driver_cpu,
        mib(sample.driver_rss_kib),
        sample.other_cpu,
        sample.live,
        sample
            .server
            .streams
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        sample.lagging,
        sample.counters.opened,
        sample.counters.closed,
        sample.counters.failed,
        sample.counters.pushes,
        sample.counters.nacks,
        sample.counters.skipped,
    );
}

/// Everything the summary prints.
struct Summary<'a> {
    args: &'a Args,
    run: &'a Run,
    samples: &'a [Sample],
    generation: u32,
    unsettled: usize,
    settled_in: Duration,
    late_steps: u64,
    server: &'a ServerCounters,
    log: &'a LogTail,
}

fn print_summary(summary: &Summary<'_>) {
    let Summary {
        args,
        run,
        samples,
        generation,
        unsettled,
        settled_in,
        late_steps,
        server,
        log,
    } = summary;
    println!();
    println!(
        "Per minute (RSS at the minute's end; CPU as % of one core, mean over the minute; push latency = start of the file write to the stream decoding that generation, so it includes --config-poll-ms {} and the control plane's settle re-read; new-stream = open to first assignment; skipped = generations superseded by a newer one before the stream was served; lagging = streams without a generation written {LAG_SECONDS} s before the sample):",
        args.config_poll_ms
    );
    println!();
    println!(
        "| minute | CP RSS MiB | CP CPU % | driver CPU % | other CPU % | pushes | push p50 ms | push p99 ms | push max ms | new-stream p99 ms | failed | skipped | lagging (max) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let per_minute = (60 / args.sample_s).max(1) as usize;
    let measured = &samples[1..];
    let total = Histogram::new();
    let mut previous = samples[0].counters;
    for (minute, chunk) in measured.chunks(per_minute).enumerate() {
        let push = Histogram::new();
        let subscribe = Histogram::new();
        for sample in chunk {
            if let Some(h) = run.push_window(sample.window) {
                push.merge(h);
                total.merge(h);
            }
            if let Some(h) = run.subscribe_window(sample.window) {
                subscribe.merge(h);
            }
        }
        let Some(last) = chunk.last() else { continue };
        let mean = |f: fn(&Sample) -> f64| chunk.iter().map(f).sum::<f64>() / chunk.len() as f64;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            minute + 1,
            mib(last.cp_rss_kib),
            mean(|s| s.cp_cpu),
            mean(|s| s.driver_cpu),
            mean(|s| s.other_cpu),
            push.count(),
            ms(push.quantile(0.5)),
            ms(push.quantile(0.99)),
            ms((push.count() > 0).then(|| push.max())),
            ms(subscribe.quantile(0.99)),
            last.counters.failed - previous.failed,
            last.counters.skipped - previous.skipped,
            chunk.iter().map(|s| s.lagging).max().unwrap_or(0),
        );
        previous = last.counters;
    }
    println!();

    let end_s = f64::from(args.duration_s);
    let second_half: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.at_s >= end_s / 2.0)
        .map(|s| (s.at_s / 60.0, mib(s.cp_rss_kib)))
        .collect();
    let whole: Vec<(f64, f64)> = measured
        .iter()
        .map(|s| (s.at_s / 60.0, mib(s.cp_rss_kib)))
        .collect();
    let rss_max = samples.iter().map(|s| s.cp_rss_kib).max().unwrap_or(0);
    let first = &samples[0];
    let Some(last) = samples.last() else { return };
    println!(
        "control-plane RSS: {:.1} MiB at the start, {:.1} MiB at the end, {:.1} MiB at most; slope over the second half {} MiB/min ({} samples), over the whole run {} MiB/min",
        mib(first.cp_rss_kib),
        mib(last.cp_rss_kib),
        mib(rss_max),
        slope(&second_half).map_or_else(|| "-".to_owned(), |s| format!("{s:+.3}")),
        second_half.len(),
        slope(&whole).map_or_else(|| "-".to_owned(), |s| format!("{s:+.3}")),
    );
    let mean_cpu = measured.iter().map(|s| s.cp_cpu).sum::<f64>() / measured.len().max(1) as f64;
    let max_cpu = measured.iter().map(|s| s.cp_cpu).fold(0.0, f64::max);
    let driver_cpu =
        measured.iter().map(|s| s.driver_cpu).sum::<f64>() / measured.len().max(1) as f64;
    println!(
        "control-plane CPU: mean {mean_cpu:.1} %, max {max_cpu:.1} % of one core (driver mean {driver_cpu:.1} %)"
    );
    println!(
        "push latency over the run: {} pushes, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (includes the config poll interval, {} ms, and the settle re-read)",
        total.count(),
        ms(total.quantile(0.5)),
        ms(total.quantile(0.99)),
        ms(total.quantile(0.999)),
        ms((total.count() > 0).then(|| total.max())),
        args.config_poll_ms
    );
    let c = last.counters;
    println!(
        "streams: {} opened, {} closed by the driver, {} failed; {} generations written; after the last one, {} streams not up to date within {:.1} s",
        c.opened,
        c.closed,
        c.failed,
        generation,
        unsettled,
        settled_in.as_secs_f64()
    );
    println!(
        "responses: {} pushes timed, {} new generations first seen by streams opened after the write, {} repeated, {} older than already seen, {} generations skipped; CDS {} responses ({} after a stream's first)",
        c.pushes, c.late, c.repeated, c.regressions, c.skipped, c.cds_responses, c.cds_repeats
    );
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    println!(
        "server: {} streams open at the end (driver {}), {} NACKs received, {} limit hits, {} config rejections; log: {} lines, {} warnings or errors",
        show(server.streams),
        last.live,
        show(server.nacks),
        show(server.limit_hits),
        show(server.config_rejections),
        log.lines.load(Ordering::Relaxed),
        log.warnings.load(Ordering::Relaxed),
    );
    if *late_steps > 0 {
        println!(
            "driver: {late_steps} control steps ran over 50 ms late (the driver was starved of CPU)"
        );
    }
    let max_lagging = measured.iter().map(|s| s.lagging).max().unwrap_or(0);
    let errors = c.failed
        + c.nacks
        + c.regressions
        + *unsettled as u64
        + max_lagging as u64
        + server.nacks.unwrap_or(0);
    println!(
        "errors: {errors} (failed streams {}, NACKs sent {}, NACKs counted by the server {}, older generations {}; missing generations: streams lagging over {LAG_SECONDS} s at worst {max_lagging}, not up to date at the end {unsettled})",
        c.failed,
        c.nacks,
        show(server.nacks),
        c.regressions,
    );
    println!(
        "superseded generations: {} of {} (a stream got a newer generation first: the server sends the latest state, not a backlog, so these measure lateness, not loss)",
        c.skipped,
        c.skipped + c.pushes + c.late,
    );
    for (message, count) in run.errors() {
        println!("  {count} x {message}");
    }
    for line in log.kept() {
        println!("  control plane: {line}");
    }
}

/// What the control plane printed: counted, its last warnings kept.
#[derive(Debug, Default)]
struct LogTail {
    lines: AtomicU64,
    warnings: AtomicU64,
    kept: Mutex<VecDeque<String>>,
}

impl LogTail {
    fn kept(&self) -> Vec<String> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn push(&self, line: &str) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
            self.warnings.fetch_add(1, Ordering::Relaxed);
            let mut kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if kept.len() == KEPT_LOG_LINES {
                kept.pop_front();
            }
            kept.push_back(line.chars().take(400).collect());
        }
    }
}

/// The running `lookaside serve`.
struct ControlPlane {
    child: Child,
    pid: u32,
    xds: SocketAddr,
    metrics: SocketAddr,
    log: Arc<LogTail>,
}

impl ControlPlane {
    async fn start(binary: &Path, config: &Path, args: &Args) -> Result<Self> {
        let max_streams = (args.streams * 2 + 1000).to_string();
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--xds-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(["--log", &args.cp_log])
            .args(["--config-poll-ms", &args.config_poll_ms.to_string()])
            .args(["--xds-max-streams", &max_streams])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the control plane exited at once")?;
        let log = Arc::new(LogTail::default());
        let (found_tx, mut found_rx) = mpsc::channel(4);
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, log.clone(), found_tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, log.clone(), found_tx);
        }
        let mut xds = None;
        let mut metrics = None;
        let deadline = Instant::now() + START_TIMEOUT;
        while xds.is_none() || metrics.is_none() {
            match tokio::time::timeout_at(deadline, found_rx.recv()).await {
                Ok(Some((message, address))) if message == "xDS listening" => xds = Some(address),
                Ok(Some((message, address))) if message == "metrics listening" => {
                    metrics = Some(address);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!(
                    "the control plane did not say where it listens within {START_TIMEOUT:?}; its warnings: {:?}",
                    log.kept()
                ),
            }
        }
        let (Some(xds), Some(metrics)) = (xds, metrics) else {
            bail!("the control plane's addresses were not found");
        };
        Ok(Self {
            child,
            pid,
            xds,
            metrics,
            log,
        })
    }

    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("checking the control plane")?
        {
            bail!(
                "the control plane exited ({status}); its last warnings: {:?}",
                self.log.kept()
            );
        }
        Ok(())
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Reads `stream` line by line into `log`; sends the address of each
/// "... listening" line to `found`.
fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<LogTail>,
    found: mpsc::Sender<(String, SocketAddr)>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(read) = reader.read_until(b'\n', &mut line).await {
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            log.push(&text);
            if text.contains(" listening\"")
                && let Some(listening) = listening(&text)
            {
                let _ = found.try_send(listening);
            }
            line.clear();
        }
    });
}

/// The message and address of a JSON "... listening" log line.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let field = |name: &str| {
        value
            .get(name)
            .or_else(|| value.get("fields").and_then(|fields| fields.get(name)))
            .and_then(|v| v.as_str())
    };
    Some((
        field("message")?.to_owned(),
        field("address")?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels() {
        let text = "# HELP lookaside_xds_streams Open ADS streams\nlookaside_xds_streams{protocol=\"sotw\"} 10\nlookaside_xds_streams{protocol=\"delta\"} 5\nlookaside_xds_streams_refused_total 3\n";
        assert_eq!(metric_sum(text, "lookaside_xds_streams"), 15);
        assert_eq!(metric_sum(text, "lookaside_xds_streams_refused_total"), 3);
        assert_eq!(metric_sum(text, "lookaside_xds_nacks_total"), 0);
    }

    #[test]
    fn reads_listening_lines() {
        let line =
            r#"{"level":"INFO","fields":{"message":"xDS listening","address":"127.0.0.1:4000"}}"#;
        assert_eq!(
            listening(line),
            Some((
                "xDS listening".to_owned(),
                "127.0.0.1:4000".parse().expect("address")
            ))
        );
        assert_eq!(listening("plain text"), None);
    }
}
