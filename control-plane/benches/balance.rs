//! Load-aware balancing against its peers, on the end-to-end setup: three
//! demo backends that report utilization over ORCA, one of them 2x slower,
//! an open-loop load at a fraction of total capacity, and one balancer per
//! run:
//!
//! - `static`: lookaside with the `static` policy (equal weights: weighted
//!   round robin, what watching endpoints gives);
//! - `utilization`: lookaside's feedback controller;
//! - `wrr`: lookaside computing gRPC's A58 formula;
//! - `p2c-peak-ewma`: tower's power-of-two-choices over PeakEWMA latency
//!   (the client-side load-aware peer; tonic's `balance_channel` is P2C
//!   with a constant load, so PeakEWMA is added here);
//!
//! Prints p50/p99/p999 latency, failures, shares and max/mean utilization.
//!
//! `cargo bench -p lookaside-control-plane --bench balance -- [--load 0.8]
//! [--warmup-s 15] [--measure-s 20] [--modes static,utilization,wrr,p2c-peak-ewma]`

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use clap::Parser;
use lookaside_control_plane::demo::{
    CallWindow, DemoBackend, DemoBackendConfig, LoadGenerator, max_over_mean,
};
use lookaside_control_plane::load::{CollectorConfig, OrcaStreamConfig};
use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_control_plane::weigh::WeighConfig;
use tonic::transport::{Channel, Endpoint};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};

#[derive(Debug, Parser)]
struct Args {
    /// Offered load as a fraction of total capacity.
    #[arg(long, default_value_t = 0.8)]
    load: f64,
    /// Workers per backend.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Milliseconds one call holds a worker on a normal backend.
    #[arg(long, default_value_t = 20)]
    cost_ms: u64,
    /// Seconds before measuring (weights converge).
    #[arg(long, default_value_t = 15)]
    warmup_s: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    measure_s: u64,
    /// Balancers to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "static,utilization,wrr,p2c-peak-ewma"
    )]
    modes: Vec<String>,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

struct Outcome {
    mode: String,
    /// Weights at the end and why (lookaside modes).
    weights: String,
    window: CallWindow,
    utilization: Vec<f64>,
    names: Vec<String>,
}

async fn backends(args: &Args) -> Vec<DemoBackend> {
    let cost = Duration::from_millis(args.cost_ms);
    let mut out = Vec::new();
    for (name, slowdown) in [("fast-1", 1.0), ("fast-2", 1.0), ("slow", 2.0)] {
        let mut config = DemoBackendConfig::new(name, args.workers, cost);
        config.slowdown = slowdown;
        out.push(DemoBackend::start(config).await.expect("backend starts"));
    }
    out
}

async fn measure<T>(channel: T, backends: &[DemoBackend], args: &Args, mode: &str) -> Outcome
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let capacity: f64 = backends.iter().map(DemoBackend::capacity).sum();
    let generator = LoadGenerator::start(channel, capacity * args.load, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;
    let _ = generator.take();
    let mut sums = vec![0.0; backends.len()];
    let mut samples = 0u32;
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    let end = tokio::time::Instant::now() + Duration::from_secs(args.measure_s);
    while tokio::time::Instant::now() < end {
        ticks.tick().await;
        for (sum, backend) in sums.iter_mut().zip(backends) {
            *sum += backend.utilization();
        }
        samples += 1;
    }
    let window = generator.take();
    drop(generator);
    Outcome {
        mode: mode.to_string(),
        weights: String::new(),
        window,
        utilization: sums.iter().map(|s| s / f64::from(samples.max(1))).collect(),
        names: backends.iter().map(|b| b.name().to_string()).collect(),
    }
}

async fn lookaside(policy: &str, args: &Args) -> Outcome {
    let backends = backends(args).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    let mut text = format!("clusters:\n  - name: bench\n    policy: {policy}\n    endpoints:\n");
    for backend in &backends {
        text.push_str(&format!("      - {{ address: {} }}\n", backend.address()));
    }
    std::fs::write(&path, text).expect("write config");
    let mut config = ServeConfig::local(path);
    config.weigh = WeighConfig {
        step: Duration::from_millis(500),
        push_min_interval: Duration::from_millis(500),
        ..WeighConfig::default()
    };
    config.load = CollectorConfig {
        stream: OrcaStreamConfig {
            interval: Duration::from_millis(500),
            ..OrcaStreamConfig::default()
        },
        ..CollectorConfig::default()
    };
    let running = start(config, futures::future::pending())
        .await
        .expect("control plane starts");
    let client = lookaside_client::Client::connect(format!("http://{}", running.xds_address))
        .await
        .expect("client connects");
    let channel = client.channel("bench");
    let mut outcome = measure(channel, &backends, args, policy).await;
    let weighted = running.weighted.borrow().clone();
    if let Some(cluster) = weighted.clusters.get("bench") {
        let weights: Vec<String> = cluster
            .endpoints
            .iter()
            .map(|e| {
                let load = e
                    .load_address
                    .and_then(|a| running.loads.get(&a))
                    .map(|l| {
                        format!(
                            "{} accepted, {} rejected, err {:?}",
                            l.accepted, l.rejected, l.last_error
                        )
                    })
                    .unwrap_or_default();
                format!("{} ({}; {load})", e.weight, e.reason.as_str())
            })
            .collect();
        outcome.weights = weights.join(" / ");
    }
    outcome
}

async fn p2c(args: &Args) -> Outcome {
    let backends = backends(args).await;
    let services: Vec<PeakEwma<Channel, CompleteOnResponse>> = backends
        .iter()
        .map(|backend| {
            let channel = Endpoint::from_shared(format!("http://{}", backend.address()))
                .expect("uri")
                .connect_lazy();
            // linkerd's defaults: 30 ms initial estimate, 10 s decay.
            PeakEwma::new(
                channel,
                Duration::from_millis(30),
                10e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance = Balance::new(ServiceList::new(services));
    let channel = Buffer::new(balance, 4096);
    measure(channel, &backends, args, "p2c-peak-ewma").await
}

fn print(outcomes: &mut [Outcome], args: &Args) {
    println!(
        "\nload {:.0} % of capacity; backends: {} workers x {} ms (fast-1, fast-2) and 2x slower (slow); warm-up {} s, measured {} s\n",
        args.load * 100.0,
        args.workers,
        args.cost_ms,
        args.warmup_s,
        args.measure_s
    );
    println!(
        "| balancer | calls | failed | p50 | p99 | p999 | share fast-1 / fast-2 / slow | utilization fast-1 / fast-2 / slow | max/mean utilization |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for outcome in outcomes.iter() {
        if !outcome.weights.is_empty() {
            println!("<!-- {} weights: {} -->", outcome.mode, outcome.weights);
        }
    }
    for outcome in outcomes.iter_mut() {
        let mut all = outcome.window.all();
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        let shares: Vec<String> = outcome
            .names
            .iter()
            .map(|n| format!("{:.1} %", outcome.window.share(n) * 100.0))
            .collect();
        let utilization: Vec<String> = outcome
            .utilization
            .iter()
            .map(|u| format!("{:.0} %", u * 100.0))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            outcome.mode,
            outcome.window.ok(),
            outcome.window.failed,
            ms(all.percentile(0.5)),
            ms(all.percentile(0.99)),
            ms(all.percentile(0.999)),
            shares.join(" / "),
            utilization.join(" / "),
            max_over_mean(&outcome.utilization).unwrap_or(f64::NAN),
        );
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut outcomes = Vec::new();
    for mode in &args.modes {
        eprintln!("running {mode} ...");
        let outcome = runtime.block_on(async {
            match mode.as_str() {
                "p2c-peak-ewma" => p2c(&args).await,
                policy => lookaside(policy, &args).await,
            }
        });
        outcomes.push(outcome);
    }
    print(&mut outcomes, &args);
}
