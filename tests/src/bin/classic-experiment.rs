//! The experiment behind the project, with every part in its own process:
//! n concurrent calls to 3 test backends (separate processes) that sleep
//! 500 ms, through (a) a new connection per call, (b) one reused tonic
//! channel, (c) lookaside-client following a real `lookaside serve`
//! (separate process), (d) round robin over three plain tonic channels
//! (what "watch endpoints + round robin" gives). Prints a Markdown table.
//!
//! ```text
//! cargo build --release --workspace --all-targets
//! target/release/classic-experiment --calls 1000,2000,3000,10000
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use lookaside_tests::backend::Backend;
use lookaside_tests::config::{Config, Endpoint as ConfigEndpoint};
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use tonic::transport::Endpoint;

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
    /// Modes: a, b, c, d.
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d")]
    modes: Vec<String>,
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
        .map_err(|s| s.message().chars().take(120).collect())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let delay = Duration::from_millis(args.delay_ms);
    let backends = Backend::start_all_with_delay(&["a", "b", "c"], delay).await?;
    let endpoints = backends
        .iter()
        .zip(&args.weights)
        .map(|(b, w)| ConfigEndpoint::new(b.address(), *w));
    let control_plane = ControlPlane::start(&Config::new().cluster("greeter", endpoints)).await?;
    let lb =
        lookaside_client::Client::connect(format!("http://{}", control_plane.xds_addr())).await?;
    let balanced = lb.channel("greeter");
    for _ in 0..30 {
        who(balanced.clone()).await.map_err(anyhow::Error::msg)?;
    }
    let reused = Endpoint::from_shared(format!("http://{}", backends[0].address()))?
        .connect()
        .await?;
    let addresses: Vec<String> = backends
        .iter()
        .map(|b| format!("http://{}", b.address()))
        .collect();
    let mut plain = Vec::new();
    for address in &addresses {
        plain.push(Endpoint::from_shared(address.clone())?.connect().await?);
    }

    println!(
        "classic-experiment: 3 backend processes, {} ms per call; weights for (c) {:?}",
        args.delay_ms, args.weights
    );
    println!("| mode | concurrent calls | total time | errors | calls per backend |");
    println!("|---|---|---|---|---|");
    for &n in &args.calls {
        for mode in &args.modes {
            let started = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let mode = mode.clone();
                    let balanced = balanced.clone();
                    let reused = reused.clone();
                    let round_robin = plain[i % plain.len()].clone();
                    let address = addresses[i % addresses.len()].clone();
                    tokio::spawn(async move {
                        match mode.as_str() {
                            "a" => {
                                let channel = Endpoint::from_shared(address)
                                    .map_err(|e| e.to_string())?
                                    .connect()
                                    .await
                                    .map_err(|e| format!("connect: {e}"))?;
                                who(channel).await
                            }
                            "b" => who(reused).await,
                            "d" => who(round_robin).await,
                            _ => who(balanced).await,
                        }
                    })
                })
                .collect();
            let mut split: BTreeMap<String, usize> = BTreeMap::new();
            let mut errors = 0;
            let mut first_error = None;
            for task in tasks {
                match task.await {
                    Ok(Ok(backend)) => *split.entry(backend).or_default() += 1,
                    Ok(Err(error)) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                    Err(join) => {
                        errors += 1;
                        first_error.get_or_insert(join.to_string());
                    }
                }
            }
            let elapsed = started.elapsed();
            let label = match mode.as_str() {
                "a" => "(a) new connection per call",
                "b" => "(b) one reused channel",
                "d" => "(d) round robin over plain channels",
                _ => "(c) lookaside-client",
            };
            let counts: Vec<String> = ["a", "b", "c"]
                .iter()
                .map(|name| split.get(*name).copied().unwrap_or(0).to_string())
                .collect();
            println!(
                "| {label} | {n} | {:.0} ms | {errors}{} | {} |",
                elapsed.as_secs_f64() * 1e3,
                first_error.map(|e| format!(" ({e})")).unwrap_or_default(),
                counts.join(" / ")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
