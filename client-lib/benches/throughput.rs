//! Small unary calls to one backend: through `lb.channel()` versus a plain
//! tonic `Channel`, same concurrency. Target: lookaside >= 95 % of plain.
//!
//! ```text
//! cargo bench -p lookaside-client --bench throughput -- --concurrency 64 --seconds 5
//! ```

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use support::Backend;
use support::helloworld::HelloRequest;
use support::helloworld::greeter_client::GreeterClient;
use tonic::transport::Endpoint;

#[derive(Debug, Parser)]
struct Args {
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Alternating measurements per channel kind.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

async fn measure<S>(channel: S, concurrency: usize, seconds: u64) -> f64
where
    S: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = GreeterClient::new(channel.clone());
            let stop = stop.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client
                        .say_hello(HelloRequest { name: "t".into() })
                        .await
                        .expect("call");
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    let backend = Backend::start("only", Duration::ZERO);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let address = backend.address;
        let plain = Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let lb = lookaside_client::Client::builder("http://127.0.0.1:9")
            .fallback("only", vec![(address, 1)])
            .build()
            .unwrap();
        let balanced = lb.channel("only");
        let (mut plain_rates, mut lb_rates) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            plain_rates.push(measure(plain.clone(), args.concurrency, args.seconds).await);
            lb_rates.push(measure(balanced.clone(), args.concurrency, args.seconds).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (p, l) = (mean(&plain_rates), mean(&lb_rates));
        println!(
            "throughput: 1 backend, {} concurrent callers, {} x {} s each",
            args.concurrency, args.rounds, args.seconds
        );
        println!("  plain tonic Channel   {p:>10.0} calls/s  {plain_rates:.0?}");
        println!("  lookaside lb.channel  {l:>10.0} calls/s  {lb_rates:.0?}");
        println!("  ratio                 {:>10.1} %", l / p * 100.0);
    });
}
