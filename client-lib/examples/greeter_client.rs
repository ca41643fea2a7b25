//! Calls the greeter through lookaside-client and prints how the calls split.
//!
//! ```text
//! cargo run --release -p lookaside-control-plane -- serve --config deploy/lookaside.example.yaml
//! cargo run -p lookaside-client --example greeter_client -- --control-plane http://127.0.0.1:18000 --cluster greeter --calls 1000
//! ```

#![allow(missing_docs, unreachable_pub)]

use std::collections::BTreeMap;

use clap::Parser;

pub mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}

use helloworld::HelloRequest;
use helloworld::greeter_client::GreeterClient;

#[derive(Debug, Parser)]
struct Args {
    /// The Lookaside control plane.
    #[arg(
        long,
        env = "LOOKASIDE_CONTROL_PLANE",
        default_value = "http://127.0.0.1:18000"
    )]
    control_plane: String,
    /// The cluster to call.
    #[arg(long, env = "LOOKASIDE_CLUSTER", default_value = "greeter")]
    cluster: String,
    /// How many calls.
    #[arg(long, env = "LOOKASIDE_CALLS", default_value_t = 1000)]
    calls: usize,
    /// Each call's deadline, milliseconds.
    #[arg(long, env = "LOOKASIDE_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Calls wait for a usable endpoint (until their deadline) instead of
    /// failing fast when none is: gRPC's wait-for-ready.
    #[arg(long, env = "LOOKASIDE_WAIT_FOR_READY")]
    wait_for_ready: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let lb = lookaside_client::Client::connect(args.control_plane).await?;
    // The one line that changes: a balanced channel instead of a plain one.
    let channel = lb.channel(&args.cluster);
    let channel = if args.wait_for_ready {
        channel.wait_for_ready()
    } else {
        channel
    };
    let mut greeter = GreeterClient::new(channel);
    let mut split: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = 0;
    for _ in 0..args.calls {
        let mut request = tonic::Request::new(HelloRequest {
            name: "lookaside".into(),
        });
        request.set_timeout(std::time::Duration::from_millis(args.timeout_ms));
        match greeter.say_hello(request).await {
            Ok(reply) => *split.entry(reply.into_inner().server).or_default() += 1,
            Err(status) => {
                failures += 1;
                eprintln!("call failed: {status}");
            }
        }
    }
    for (server, calls) in &split {
        println!(
            "{server:>12}: {calls:>6} calls ({:.1} %)",
            *calls as f64 * 100.0 / args.calls as f64
        );
    }
    println!("{:>12}: {failures:>6}", "failed");
    Ok(())
}
