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

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lookaside_tests::backend::{DRAINING, GRACE_EXPIRED, LISTENING, STOPPED};
use lookaside_tests::echo::v1::echo_server::{Echo, EchoServer};
use lookaside_tests::echo::v1::{WhoReply, WhoRequest};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::TcpListenerStream;
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
    /// After SIGTERM, how long calls in flight may take before the process
    /// exits anyway, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,
}

/// The Echo service of one named backend.
#[derive(Debug)]
struct Named {
    name: String,
    delay: Duration,
}

#[tonic::async_trait]
impl Echo for Named {
    async fn who(&self, _request: Request<WhoRequest>) -> Result<Response<WhoReply>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(Response::new(WhoReply {
            backend: self.name.clone(),
        }))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    let serve = tonic::transport::Server::builder()
        .add_service(EchoServer::new(Named {
            name: args.name,
            delay: Duration::from_millis(args.delay_ms),
        }))
        // Drops the listener and sends GOAWAY once `shutdown` resolves, then
        // returns when every connection has closed.
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
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
