//! `test-backend`: a gRPC backend for the end-to-end tests. Serves
//! `lookaside.test.v1.Echo` and answers `Who` with the name it was given.
//!
//! Prints `listening on ADDR` once bound (so `--listen 127.0.0.1:0` works)
//! and exits when its stdin reaches end of file, so it never outlives the test
//! that started it, whatever happened to that test.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use lookaside_tests::backend::LISTENING;
use lookaside_tests::echo::v1::echo_server::{Echo, EchoServer};
use lookaside_tests::echo::v1::{WhoReply, WhoRequest};
use tokio::io::AsyncReadExt;
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
}

/// The Echo service of one named backend.
#[derive(Debug)]
struct Named {
    name: String,
}

#[tonic::async_trait]
impl Echo for Named {
    async fn who(&self, _request: Request<WhoRequest>) -> Result<Response<WhoReply>, Status> {
        Ok(Response::new(WhoReply {
            backend: self.name.clone(),
        }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    println!("{LISTENING}{address}");
    let serve = tonic::transport::Server::builder()
        .add_service(EchoServer::new(Named { name: args.name }))
        .serve_with_incoming(TcpListenerStream::new(listener));
    // Exit at once when stdin closes, without waiting for clients to leave.
    tokio::select! {
        served = serve => served.context("serving"),
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
