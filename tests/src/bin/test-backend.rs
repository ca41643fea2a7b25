//! `test-backend`: a gRPC backend for the end-to-end tests. Serves
//! `lookaside.test.v1.Echo` and answers `Who` with the name it was given
//! (after `--delay-ms`, so that calls can be in flight when it stops).
//!
//! Prints `listening on ADDR` once bound (so `--listen 127.0.0.1:0` works).
//! How it stops, as a pod does:
//! - SIGTERM: graceful. Stops accepting connections, sends HTTP/2 GOAWAY on
//!   every open one, lets the calls in flight finish, then exits 0 (printing
//!   `draining` and `stopped`); after `--shutdown-grace-ms` it exits anyway.
//! - SIGKILL: abrupt death; connections are reset by the kernel.
//! - End of file on stdin: exits at once, so it never outlives the test that
//!   started it, whatever happened to that test.
//!
//! For benchmarks (`classic-experiment --backend-arg=...`): `--workers`,
//! HTTP/2 window and stream limits, and `--report-arrivals`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use lookaside_tests::backend::{ARRIVALS, DRAINING, GRACE_EXPIRED, LISTENING, STOPPED};
use lookaside_tests::echo::v1::echo_server::{Echo, EchoServer};
use lookaside_tests::echo::v1::{WhoReply, WhoRequest};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tonic::{Request, Response, Status};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "test-backend", about)]
struct Args {
    /// The name `Who` answers with.
    #[arg(long)]
    name: String,
    /// Where to listen; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How long each `Who` call takes before it answers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Answers every `Who` call with this gRPC status code (e.g. 14,
    /// UNAVAILABLE: a broken deploy whose connections are fine).
    #[arg(long)]
    fail_with: Option<i32>,
    /// After SIGTERM, how long calls in flight may take before the process
    /// exits anyway, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Runtime worker threads; 0 runs everything on one thread
    /// (current-thread runtime).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// HTTP/2 connection-level receive window, bytes. Not hyper's 1 MiB:
    /// h2 (0.4.16 and later) also sizes its guard against floods of small
    /// DATA frames from it (half the window, 251 bytes of "overhead" per
    /// unread frame under 256 bytes), and a plain tonic client sends each
    /// unary request as a 5-byte DATA frame without END_STREAM. At 1 MiB,
    /// about 2,000 requests arriving before the backend reads them make h2
    /// send GOAWAY(ENHANCE_YOUR_CALM) and close the connection, failing
    /// every call on it. 16 MiB allows about 33,000.
    #[arg(long, default_value_t = 16 << 20)]
    http2_connection_window: u32,
    /// HTTP/2 stream-level receive window, bytes (hyper's default when
    /// unset: 1 MiB).
    #[arg(long)]
    http2_stream_window: Option<u32>,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (unlimited when unset).
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
    /// After each burst of calls (no call for 250 ms), prints
    /// `arrivals N first F p50 M last L`: how many calls arrived and when
    /// (microseconds since the Unix epoch), for benchmarks.
    #[arg(long)]
    report_arrivals: bool,
}

/// When calls arrived (microseconds since the Unix epoch), if reported.
type Arrivals = Option<Arc<Mutex<Vec<u128>>>>;

/// The Echo service of one named backend.
#[derive(Debug)]
struct Named {
    name: String,
    delay: Duration,
    fail_with: Option<tonic::Code>,
    arrivals: Arrivals,
}

#[tonic::async_trait]
impl Echo for Named {
    async fn who(&self, _request: Request<WhoRequest>) -> Result<Response<WhoReply>, Status> {
        if let Some(arrivals) = &self.arrivals {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros();
            arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(now);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(code) = self.fail_with {
            return Err(Status::new(code, format!("{} fails on purpose", self.name)));
        }
        Ok(Response::new(WhoReply {
            backend: self.name.clone(),
        }))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    lookaside_tests::quiet::install();
    let mut builder = if args.workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.workers);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(serve(args));
    // Not a plain drop: that would wait for the blocking read of stdin.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve(args: Args) -> Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    println!("{LISTENING}{address}");

    let (terminated_tx, terminated_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        terminate.recv().await;
        println!("{DRAINING}");
        let _ = terminated_tx.send(());
    };
    let arrivals: Arrivals = args
        .report_arrivals
        .then(|| Arc::new(Mutex::new(Vec::new())));
    if let Some(arrivals) = arrivals.clone() {
        tokio::spawn(report_arrivals(arrivals));
    }
    let serve = tonic::transport::Server::builder()
        .initial_connection_window_size(Some(args.http2_connection_window))
        .initial_stream_window_size(args.http2_stream_window)
        .max_concurrent_streams(args.max_concurrent_streams)
        .add_service(EchoServer::new(Named {
            name: args.name,
            delay: Duration::from_millis(args.delay_ms),
            fail_with: args.fail_with.map(tonic::Code::from),
            arrivals,
        }))
        // Drops the listener and sends GOAWAY once `shutdown` resolves, then
        // returns when every connection has closed. With TCP_NODELAY, as the
        // control plane accepts (see `accepting`).
        .serve_with_incoming_shutdown(
            lookaside_control_plane::server::accepting(listener),
            shutdown,
        );
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let grace_expired = async move {
        if terminated_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serve => {
            served.context("serving")?;
            println!("{STOPPED}");
            Ok(())
        }
        () = grace_expired => {
            println!("{GRACE_EXPIRED}");
            Ok(())
        }
        // Exit at once when stdin closes, without waiting for clients to leave.
        () = stdin_closed() => Ok(()),
    }
}

/// Prints `arrivals N first F p50 M last L` after each burst of calls.
async fn report_arrivals(arrivals: Arc<Mutex<Vec<u128>>>) {
    let quiet = Duration::from_millis(250).as_micros();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let mut burst = {
            let mut arrivals = arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match arrivals.last() {
                Some(&last) if now.saturating_sub(last) >= quiet => std::mem::take(&mut *arrivals),
                _ => continue,
            }
        };
        burst.sort_unstable();
        if let (Some(first), Some(last)) = (burst.first(), burst.last()) {
            let median = burst[burst.len() / 2];
            println!(
                "{ARRIVALS}{} first {first} p50 {median} last {last}",
                burst.len()
            );
        }
    }
}

/// Resolves when stdin reaches end of file (or fails).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}
