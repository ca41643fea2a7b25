//! The experiment behind the project: n concurrent calls to 3 backends that
//! sleep 500 ms, through (a) a new connection per call, (b) one reused tonic
//! channel (what a ClusterIP Service gives a reused channel: one pod), and
//! (c) lookaside-client following a real (in-process) control plane with
//! weights 1/2/7... or even weights (`--weights 1,1,1`).
//!
//! ```text
//! cargo bench -p lookaside-client --bench classic -- --calls 1000,2000,3000,10000
//! ```

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use support::Backend;
use support::helloworld::HelloRequest;
use support::helloworld::greeter_client::GreeterClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
struct Args {
    /// Concurrent calls per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000,10000")]
    calls: Vec<usize>,
    /// Backend sleep per call, in milliseconds.
    #[arg(long, default_value_t = 500)]
    sleep_ms: u64,
    /// Weights of the 3 backends for (c).
    #[arg(long, value_delimiter = ',', default_value = "1,2,7")]
    weights: Vec<u32>,
    /// Which modes to run: a, b, c, d (round robin over plain channels).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
    modes: Vec<String>,
    #[arg(long, hide = true)]
    bench: bool,
}

struct Outcome {
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
}

async fn fire<F, Fut>(n: usize, call: F) -> Outcome
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        if let Err(error) = task.await.unwrap_or_else(|e| Err(e.to_string())) {
            errors += 1;
            first_error.get_or_insert(error);
        }
    }
    Outcome {
        elapsed: started.elapsed(),
        errors,
        first_error,
    }
}

/// One call through `channel`.
async fn say_hello<S>(channel: S) -> Result<(), String>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    GreeterClient::new(channel)
        .say_hello(hello())
        .await
        .map(|_| ())
        .map_err(|s| s.to_string())
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "classic".into(),
    }
}

fn main() {
    let args = Args::parse();
    let sleep = Duration::from_millis(args.sleep_ms);
    // Backends first: each has a runtime of its own.
    let backends: Vec<Backend> = ["a", "b", "c"]
        .iter()
        .map(|n| Backend::start(n, sleep))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(args, &backends));
}

async fn run(args: Args, backends: &[Backend]) {
    // (c) needs a control plane.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookaside.yaml");
    let mut config = String::from("clusters:\n  - name: greeter\n    endpoints:\n");
    for (backend, weight) in backends.iter().zip(&args.weights) {
        config.push_str(&format!(
            "      - {{ address: {}, weight: {weight} }}\n",
            backend.address
        ));
    }
    std::fs::write(&path, config).unwrap();
    let running = lookaside_control_plane::server::start(
        lookaside_control_plane::server::ServeConfig {
            config: path,
            config_poll: Duration::from_millis(200),
            xds_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            limits: Default::default(),
            shutdown_grace: Duration::from_secs(1),
        },
        futures::future::pending(),
    )
    .await
    .unwrap();
    let lb = lookaside_client::Client::connect(format!("http://{}", running.xds_address))
        .await
        .unwrap();
    let balanced = lb.channel("greeter");
    // Warm up: assignment received, one connection per endpoint.
    for _ in 0..30 {
        GreeterClient::new(balanced.clone())
            .say_hello(hello())
            .await
            .unwrap();
    }
    let reused: Channel = Endpoint::from_shared(format!("http://{}", backends[0].address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let addresses: Vec<String> = backends
        .iter()
        .map(|b| format!("http://{}", b.address))
        .collect();
    // (d): what watching endpoints + round robin gives (kuberesolver-like):
    // one plain tonic channel per backend, calls rotated over them.
    let mut plain = Vec::new();
    for address in &addresses {
        plain.push(
            Endpoint::from_shared(address.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }

    println!(
        "classic: 3 backends sleeping {} ms; weights for (c) {:?}",
        args.sleep_ms, args.weights
    );
    println!("| mode | concurrent calls | total time | errors | calls per backend |");
    println!("|---|---|---|---|---|");
    for &n in &args.calls {
        for mode in &args.modes {
            let before: Vec<u64> = backends.iter().map(Backend::served).collect();
            let outcome = match mode.as_str() {
                "a" => {
                    let addresses = addresses.clone();
                    fire(n, move |i| {
                        let address = addresses[i % addresses.len()].clone();
                        async move {
                            let channel = Endpoint::from_shared(address)
                                .map_err(|e| e.to_string())?
                                .connect()
                                .await
                                .map_err(|e| format!("connect: {e}"))?;
                            say_hello(channel).await
                        }
                    })
                    .await
                }
                "b" => {
                    let reused = reused.clone();
                    fire(n, move |_| say_hello(reused.clone())).await
                }
                "d" => {
                    let plain = plain.clone();
                    fire(n, move |i| say_hello(plain[i % plain.len()].clone())).await
                }
                _ => {
                    let balanced = balanced.clone();
                    fire(n, move |_| say_hello(balanced.clone())).await
                }
            };
            let counts: Vec<u64> = backends
                .iter()
                .zip(before)
                .map(|(b, s)| b.served() - s)
                .collect();
            let label = match mode.as_str() {
                "a" => "(a) new connection per call",
                "b" => "(b) one reused channel",
                "d" => "(d) round robin over plain channels",
                _ => "(c) lookaside-client",
            };
            println!(
                "| {label} | {n} | {:.0} ms | {}{} | {} |",
                outcome.elapsed.as_secs_f64() * 1e3,
                outcome.errors,
                outcome
                    .first_error
                    .map(|e| format!(" ({})", e.chars().take(300).collect::<String>()))
                    .unwrap_or_default(),
                counts
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
            // Let sockets from (a) close before the next run.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
