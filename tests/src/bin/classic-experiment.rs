//! The experiment behind the project, with every part in its own process:
//! n concurrent calls to 3 test backends (separate processes) that sleep
//! 500 ms, through (a) a new connection per call, (b) one reused tonic
//! channel, (c) lookaside-client following a real `lookaside serve`
//! (separate process), (d) round robin over three plain tonic channels
//! (what "watch endpoints + round robin" gives), (e) as (d) but over
//! hyper's own HTTP/2 connections without tonic's `Channel` (which shows the
//! per-call cost is hyper's dispatch, not tonic's buffer). Prints a
//! Markdown table.
//!
//! ```text
//! cargo build --release --workspace --all-targets
//! target/release/classic-experiment --calls 1000,3000,10000
//! ```
//!
//! Total time runs from starting the first call until the last one has
//! completed; every call of a run is in flight at once. `--cpu` adds the CPU
//! time the client and the backends used during each run (from
//! `/proc/<pid>/stat`), which is where the time beyond the 500 ms sleep goes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lookaside_control_plane::telemetry::error_chain;
use lookaside_tests::backend::{ARRIVALS, Backend};
use lookaside_tests::config::{Config, Endpoint as ConfigEndpoint};
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use tonic::transport::{Channel, Endpoint};

/// How the client process issues the n concurrent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Issue {
    /// One tokio task per call (spread over the runtime's workers).
    Spawn,
    /// Every call a future of one `FuturesUnordered` polled by one task.
    Unordered,
}

#[derive(Debug, Parser)]
struct Args {
    /// Concurrent calls per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000,10000")]
    calls: Vec<usize>,
    /// Backend delay per call, milliseconds.
    #[arg(long, default_value_t = 500)]
    delay_ms: u64,
    /// Weights of the three backends for (c).
    #[arg(long, value_delimiter = ',', default_value = "1,2,7")]
    weights: Vec<u32>,
    /// Modes: a, b, c, d, e.
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d")]
    modes: Vec<String>,
    /// Runs of each (calls, mode) pair; each run prints its own row.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// How the calls are issued.
    #[arg(long, value_enum, default_value_t = Issue::Spawn)]
    issue: Issue,
    /// Worker threads of the client's runtime (0: one per core; -1: a
    /// current-thread runtime, everything on the main thread).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    client_workers: i32,
    /// An argument for every `test-backend` (repeat the flag for more, e.g.
    /// `--backend-arg=--workers --backend-arg=2`).
    #[arg(long, allow_hyphen_values = true)]
    backend_arg: Vec<String>,
    /// HTTP/2 connections per backend for (d), calls spread over them.
    #[arg(long, default_value_t = 1)]
    plain_connections: usize,
    /// Adds the CPU time of the client and of the backends to every row.
    #[arg(long)]
    cpu: bool,
    /// Adds when the calls completed (percentiles, from the start of the
    /// run) to every row.
    #[arg(long)]
    timeline: bool,
}

/// One call through `channel`; the name of the backend that answered.
async fn who<S>(channel: S) -> Result<String, String>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    EchoClient::new(channel)
        .who(WhoRequest {})
        .await
        .map(|r| r.into_inner().backend)
        .map_err(|status| {
            let mut text = status.message().to_string();
            if let Some(source) = std::error::Error::source(&status) {
                text.push_str(": ");
                text.push_str(&error_chain(source));
            }
            text.chars().take(200).collect()
        })
}

/// A generated client's requests over hyper's own HTTP/2 connection (no
/// tonic `Channel`, no buffer task).
#[derive(Clone)]
struct RawH2 {
    send: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    authority: http::uri::Authority,
}

impl RawH2 {
    async fn connect(address: &str) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(hyper_util::rt::TokioIo::new(tcp))
                .await?;
        tokio::spawn(connection);
        Ok(Self {
            send,
            authority: address.parse()?,
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for RawH2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        Box::pin(self.send.send_request(request))
    }
}

/// What the calls of a run go through.
struct Targets {
    raw: Vec<RawH2>,
    balanced: lookaside_client::LbChannel,
    reused: Channel,
    plain: Vec<Channel>,
    addresses: Vec<String>,
}

/// One call, and when it completed.
type Outcome = (Result<String, String>, Instant);

/// Makes `n` calls, all in flight at once: call `i` is the future
/// `make(i)`. Each mode gets its own future type, so a call's task holds
/// only what that mode needs.
async fn issue_calls<F>(n: usize, issue: Issue, make: impl Fn(usize) -> F) -> Vec<Outcome>
where
    F: Future<Output = Result<String, String>> + Send + 'static,
{
    let timed = |i| {
        let call = make(i);
        async move { (call.await, Instant::now()) }
    };
    match issue {
        Issue::Spawn => {
            let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(timed(i))).collect();
            let mut outcomes = Vec::with_capacity(n);
            for task in tasks {
                outcomes.push(
                    task.await
                        .unwrap_or_else(|join| (Err(join.to_string()), Instant::now())),
                );
            }
            outcomes
        }
        Issue::Unordered => {
            (0..n)
                .map(timed)
                .collect::<FuturesUnordered<_>>()
                .collect()
                .await
        }
    }
}

impl Targets {
    /// The `n` calls of one run in `mode`.
    async fn run(&self, mode: &str, n: usize, issue: Issue) -> Vec<Outcome> {
        match mode {
            "a" => {
                issue_calls(n, issue, |i| {
                    let address = self.addresses[i % self.addresses.len()].clone();
                    async move {
                        let channel = Endpoint::from_shared(address)
                            .map_err(|e| e.to_string())?
                            .connect()
                            .await
                            .map_err(|e| format!("connect: {}", error_chain(&e)))?;
                        who(channel).await
                    }
                })
                .await
            }
            "b" => issue_calls(n, issue, |_| who(self.reused.clone())).await,
            "d" => issue_calls(n, issue, |i| who(self.plain[i % self.plain.len()].clone())).await,
            "e" => issue_calls(n, issue, |i| who(self.raw[i % self.raw.len()].clone())).await,
            _ => issue_calls(n, issue, |_| who(self.balanced.clone())).await,
        }
    }
}

/// `test-backend`'s arrivals line as `first-p50-last ms` from `started`.
fn arrivals(line: &str, started: SystemTime) -> Option<String> {
    let start = started.duration_since(UNIX_EPOCH).ok()?.as_micros();
    let fields: Vec<&str> = line.strip_prefix(ARRIVALS)?.split_whitespace().collect();
    let at = |name: &str| -> Option<String> {
        let index = fields.iter().position(|field| *field == name)?;
        let micros: u128 = fields.get(index + 1)?.parse().ok()?;
        Some((micros.saturating_sub(start) / 1000).to_string())
    };
    Some(format!(
        "{}-{}-{} ms",
        at("first")?,
        at("p50")?,
        at("last")?
    ))
}

/// CPU time used so far by this process, by each of `backends` (pids) and
/// by the whole machine, in that order.
fn cpu_snapshot(backends: &[String]) -> Vec<Option<Duration>> {
    std::iter::once(cpu_time("self"))
        .chain(backends.iter().map(|pid| cpu_time(pid)))
        .chain(std::iter::once(machine_busy()))
        .collect()
}

/// CPU time every core of the machine spent busy so far (all processes),
/// from `/proc/stat`; `None` where that cannot be read.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, ticks)| ticks)
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces, in parentheses): field 3 of the line is index 0 here.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Minor page faults a process has taken so far (minflt, field 10).
fn page_faults(pid: &str) -> Option<u64> {
    stat_fields(pid)?.get(7)?.parse().ok()
}

/// CPU time (user + system) a process has used so far (utime and stime,
/// fields 14 and 15); `None` where that cannot be read.
fn cpu_time(pid: &str) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

fn main() -> Result<()> {
    let args = Args::parse();
    lookaside_tests::quiet::install();
    let mut builder = if args.client_workers < 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if args.client_workers > 0 {
        builder.worker_threads(args.client_workers as usize);
    }
    builder
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let delay = Duration::from_millis(args.delay_ms);
    let mut backend_args = args.backend_arg.clone();
    if args.timeline {
        backend_args.push("--report-arrivals".to_string());
    }
    let backends = Backend::start_all_with_args(&["a", "b", "c"], delay, &backend_args).await?;
    let endpoints = backends
        .iter()
        .zip(&args.weights)
        .map(|(b, w)| ConfigEndpoint::new(b.address(), *w));
    let control_plane = ControlPlane::start(&Config::new().cluster("greeter", endpoints)).await?;
    let lb =
        lookaside_client::Client::connect(format!("http://{}", control_plane.xds_addr())).await?;
    let balanced = lb.channel("greeter");
    // Warm up: the assignment is in and every endpoint connected.
    futures::future::try_join_all((0..30).map(|_| who(balanced.clone())))
        .await
        .map_err(anyhow::Error::msg)?;
    let reused = Endpoint::from_shared(format!("http://{}", backends[0].address()))?
        .connect()
        .await?;
    let addresses: Vec<String> = backends
        .iter()
        .map(|b| format!("http://{}", b.address()))
        .collect();
    let mut plain = Vec::new();
    for _ in 0..args.plain_connections.max(1) {
        for address in &addresses {
            plain.push(Endpoint::from_shared(address.clone())?.connect().await?);
        }
    }
    let mut raw = Vec::new();
    for backend in &backends {
        raw.push(RawH2::connect(&backend.address().to_string()).await?);
    }
    let targets = Targets {
        raw,
        balanced,
        reused,
        plain,
        addresses,
    };
    let backend_pids: Vec<String> = backends
        .iter()
        .filter_map(|b| b.id())
        .map(|pid| pid.to_string())
        .collect();

    println!(
        "classic-experiment: 3 backend processes, {} ms per call; weights for (c) {:?}; \
         calls issued by {:?}; backend args {:?}",
        args.delay_ms, args.weights, args.issue, args.backend_arg
    );
    if args.cpu {
        println!(
            "| mode | concurrent calls | total time | errors | calls per backend \
             | CPU client | page faults client | CPU backends a / b / c | CPU whole machine |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
    } else {
        println!("| mode | concurrent calls | total time | errors | calls per backend |");
        println!("|---|---|---|---|---|");
    }
    for &n in &args.calls {
        for mode in &args.modes {
            for _ in 0..args.repeat {
                let cpu_before = cpu_snapshot(&backend_pids);
                let faults_before = page_faults("self");
                let lines_before: Vec<usize> = backends.iter().map(|b| b.output().len()).collect();
                let started_at = SystemTime::now();
                let started = Instant::now();
                let results = targets.run(mode, n, args.issue).await;
                let elapsed = started.elapsed();
                let cpu_after = cpu_snapshot(&backend_pids);
                let mut split: BTreeMap<String, usize> = BTreeMap::new();
                let mut errors = 0;
                let mut first_error = None;
                let mut completed: Vec<Duration> = results
                    .iter()
                    .map(|(_, at)| at.saturating_duration_since(started))
                    .collect();
                completed.sort_unstable();
                for (result, _) in results {
                    match result {
                        Ok(backend) => *split.entry(backend).or_default() += 1,
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                let label = match mode.as_str() {
                    "a" => "(a) new connection per call",
                    "b" => "(b) one reused channel",
                    "d" => "(d) round robin over plain channels",
                    "e" => "(e) round robin over hyper HTTP/2 connections",
                    _ => "(c) lookaside-client",
                };
                let counts: Vec<String> = ["a", "b", "c"]
                    .iter()
                    .map(|name| split.get(*name).copied().unwrap_or(0).to_string())
                    .collect();
                let mut row = format!(
                    "| {label} | {n} | {:.0} ms | {errors}{} | {} |",
                    elapsed.as_secs_f64() * 1e3,
                    first_error.map(|e| format!(" ({e})")).unwrap_or_default(),
                    counts.join(" / ")
                );
                if args.cpu {
                    let faults = page_faults("self")
                        .zip(faults_before)
                        .map_or("?".to_string(), |(after, before)| {
                            (after.saturating_sub(before)).to_string()
                        });
                    let used: Vec<String> = cpu_before
                        .iter()
                        .zip(&cpu_after)
                        .map(|(before, after)| match (before, after) {
                            (Some(before), Some(after)) => {
                                format!("{} ms", after.saturating_sub(*before).as_millis())
                            }
                            _ => "?".to_string(),
                        })
                        .collect();
                    let (machine, processes) = used.split_last().unzip();
                    let processes = processes.unwrap_or_default();
                    row.push_str(&format!(
                        " {} | {faults} | {} | {} |",
                        processes.first().map_or("?", String::as_str),
                        processes.get(1..).unwrap_or_default().join(" / "),
                        machine.map_or("?", String::as_str),
                    ));
                }
                if args.timeline && !completed.is_empty() {
                    let at = |q: f64| {
                        let index = ((completed.len() - 1) as f64 * q).round() as usize;
                        completed[index].as_millis()
                    };
                    row.push_str(&format!(
                        " completed at p0 {} / p10 {} / p50 {} / p90 {} / p100 {} ms |",
                        at(0.0),
                        at(0.1),
                        at(0.5),
                        at(0.9),
                        at(1.0)
                    ));
                    let arrived: Vec<String> = backends
                        .iter()
                        .zip(&lines_before)
                        .filter_map(|(backend, &from)| {
                            let line = backend
                                .output()
                                .lines()
                                .into_iter()
                                .skip(from)
                                .rfind(|l| l.starts_with(ARRIVALS))?;
                            Some(format!(
                                "{} {}",
                                backend.name(),
                                arrivals(&line, started_at)?
                            ))
                        })
                        .collect();
                    row.push_str(&format!(" arrived {} |", arrived.join(", ")));
                }
                println!("{row}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}
