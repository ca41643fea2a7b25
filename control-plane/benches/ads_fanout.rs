//! Fan-out benchmark: N simulated SotW ADS clients subscribed to one cluster
//! of 100 endpoints; a weight changes; how long until every client has it?
//!
//! Runs the real `lookaside` binary as a separate process (so its CPU time
//! and RSS can be read from /proc) and N client streams in this process.
//!
//! ```text
//! cargo bench -p lookaside-control-plane --bench ads_fanout -- --clients 1000 --rounds 5
//! cargo bench -p lookaside-control-plane --bench ads_fanout -- --clients 10000 --rounds 5
//! ```
//!
//! Prints push latency p50/p99/max over every (client, round), control-plane
//! CPU seconds spent during the rounds, and RSS per idle stream.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::{Barrier, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

#[derive(Debug, Parser)]
struct Args {
    /// Simulated clients (one SotW stream each).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Streams sharing one HTTP/2 connection (1 = a connection per client).
    #[arg(long, default_value_t = 1)]
    streams_per_connection: usize,
    /// Weight changes to measure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Endpoints in the cluster.
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

fn config(endpoints: usize, round: usize) -> String {
    let mut text = String::from("clusters:\n  - name: bench\n    endpoints:\n");
    for i in 0..endpoints {
        let weight = if i == 0 { 1 + round } else { 1 + (i % 10) };
        text.push_str(&format!(
            "      - {{ address: 10.0.{}.{}:8080, weight: {weight} }}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    text
}

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

struct ControlPlane {
    child: Child,
    address: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_control_plane(path: &std::path::Path) -> ControlPlane {
    // LOOKASIDE_BENCH_WRAP runs the binary under a tool, e.g.
    // "valgrind --tool=massif --massif-out-file=/tmp/massif.out".
    let wrap = std::env::var("LOOKASIDE_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut command = Command::new(tool);
            command.args(words).arg(env!("CARGO_BIN_EXE_lookaside"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_lookaside")),
    };
    let mut child = command
        .args(["serve", "--config"])
        .arg(path)
        .args([
            "--xds-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--log-format",
            "json",
            "--log",
            "warn,lookaside_control_plane::server=info",
            "--config-poll-ms",
            "10",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lookaside");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().expect("lookaside exited").expect("read");
        if line.contains("xDS listening") {
            let value: serde_json::Value = serde_json::from_str(&line).expect("json log");
            break value["address"].as_str().expect("address").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    ControlPlane { child, address }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, config(args.endpoints, 0)).expect("config");
    let control_plane = start_control_plane(&path);
    let pid = control_plane.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = proc_field(pid, "status", "VmRSS:").unwrap_or(0);

    let connections = args.clients.div_ceil(args.streams_per_connection.max(1));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel: Channel = Endpoint::from_shared(format!("http://{}", control_plane.address))
            .expect("uri")
            .connect_lazy();
        channels.push(channel);
    }

    // Every client reports (round, instant it saw that round's version).
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, usize, Instant)>();
    let ready = Arc::new(Barrier::new(args.clients + 1));
    let started = Instant::now();
    for client in 0..args.clients {
        let channel = channels[client / args.streams_per_connection.max(1)].clone();
        let seen_tx = seen_tx.clone();
        let ready = ready.clone();
        let endpoints = args.endpoints;
        tokio::spawn(async move {
            let (requests, rx) = mpsc::channel(4);
            let subscribe = DiscoveryRequest {
                type_url: EDS.into(),
                resource_names: vec!["bench".into()],
                ..Default::default()
            };
            requests.send(subscribe.clone()).await.expect("send");
            let mut responses = AggregatedDiscoveryServiceClient::new(channel)
                .max_decoding_message_size(16 << 20)
                .stream_aggregated_resources(ReceiverStream::new(rx))
                .await
                .expect("stream")
                .into_inner();
            let mut round = 0;
            while let Some(Ok(response)) = responses.next().await {
                let at = Instant::now();
                let ack = DiscoveryRequest {
                    version_info: response.version_info.clone(),
                    response_nonce: response.nonce.clone(),
                    ..subscribe.clone()
                };
                if requests.send(ack).await.is_err() {
                    break;
                }
                // The first endpoint's weight tells the round.
                let _ = endpoints;
                if round == 0 {
                    ready.wait().await;
                } else {
                    let _ = seen_tx.send((client, round, at));
                }
                round += 1;
            }
        });
    }
    ready.wait().await;
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = proc_field(pid, "status", "VmRSS:").unwrap_or(0);
    let cpu_before = cpu_seconds(pid);

    let mut latencies = Vec::with_capacity(args.clients * args.rounds);
    let mut round_max = Vec::new();
    for round in 1..=args.rounds {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let changed_at = Instant::now();
        let temporary = dir.path().join("bench.yaml.tmp");
        std::fs::write(&temporary, config(args.endpoints, round)).expect("edit");
        std::fs::rename(&temporary, &path).expect("atomic replace");
        let mut got = 0;
        let mut worst = Duration::ZERO;
        while got < args.clients {
            let Ok(Some((_, seen_round, at))) =
                tokio::time::timeout(Duration::from_secs(60), seen_rx.recv()).await
            else {
                panic!(
                    "round {round}: only {got}/{} clients updated in 60 s",
                    args.clients
                );
            };
            assert_eq!(seen_round, round, "a client skipped a round");
            let latency = at.saturating_duration_since(changed_at);
            worst = worst.max(latency);
            latencies.push(latency);
            got += 1;
        }
        round_max.push(worst);
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_after = proc_field(pid, "status", "VmRSS:").unwrap_or(0);

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "ads_fanout: {} SotW clients, {} connections, {} endpoints, {} rounds",
        args.clients, connections, args.endpoints, args.rounds
    );
    println!(
        "  all clients subscribed in  {:>9.1} ms",
        connect_time.as_secs_f64() * 1e3
    );
    println!(
        "  push latency p50           {:>9.1} ms",
        pct(0.50).as_secs_f64() * 1e3
    );
    println!(
        "  push latency p99           {:>9.1} ms",
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "  push latency max           {:>9.1} ms",
        pct(1.0).as_secs_f64() * 1e3
    );
    println!(
        "  slowest client per round   {} ms",
        round_max
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "  control-plane CPU          {:>9.2} s for {} rounds ({:.3} s per change)",
        cpu,
        args.rounds,
        cpu / args.rounds as f64
    );
    println!(
        "  control-plane RSS          {:>9} KiB before clients, {} KiB idle with clients, {} KiB after rounds",
        rss_before, rss_idle, rss_after
    );
    println!(
        "  RSS per idle stream        {:>9.1} KiB (connection included when streams-per-connection = 1)",
        rss_idle.saturating_sub(rss_before) as f64 / args.clients as f64
    );
}
