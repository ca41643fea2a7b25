//! `orca-backend`: a backend with a modelled capacity that reports its
//! utilization over ORCA: `lookaside demo`'s backend
//! (`lookaside_control_plane::demo::DemoBackend`) in a process of its own,
//! for the end-to-end tests of weights that follow load.
//!
//! Serves `helloworld.Greeter` (each reply names the backend) and
//! `xds.service.orca.v3.OpenRcaService` on one port. `--workers` calls are
//! served at once, each holding its worker for `--cost-ms` times
//! `--slowdown`; more calls wait in line. Prints `listening on ADDR` once
//! bound. Exits at once when stdin closes, so it never outlives the test
//! that started it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lookaside_control_plane::demo::{DemoBackend, DemoBackendConfig};
use lookaside_tests::backend::LISTENING;
use tokio::io::AsyncReadExt;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "orca-backend", about)]
struct Args {
    /// The name every reply carries.
    #[arg(long)]
    name: String,
    /// Where to listen; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Calls served at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How long a call holds its worker, in milliseconds.
    #[arg(long, default_value_t = 40)]
    cost_ms: u64,
    /// Every call takes this many times its cost (2: half the capacity).
    #[arg(long, default_value_t = 1.0)]
    slowdown: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    serve(Args::parse()).await
}

async fn serve(args: Args) -> Result<()> {
    let backend = DemoBackend::start(DemoBackendConfig {
        name: args.name.clone(),
        listen: args.listen,
        workers: args.workers,
        cost: Duration::from_millis(args.cost_ms),
        slowdown: args.slowdown,
    })
    .await
    .with_context(|| format!("starting backend {}", args.name))?;
    println!("{LISTENING}{}", backend.address());
    // Serve until stdin closes.
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
    drop(backend);
    Ok(())
}
