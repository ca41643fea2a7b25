//! A greeter backend to balance over. It links the ORCA reporter, so the
//! control plane's default `utilization` policy steers by its measured load
//! (process CPU, relative to its cgroup quota or the machine's cores).
//!
//! ```text
//! cargo run -p lookaside-client --example greeter_server -- --listen 127.0.0.1:50051 --name a
//! cargo run -p lookaside-client --example greeter_server -- --listen 127.0.0.1:50052 --name b
//! cargo run -p lookaside-client --example greeter_server -- --listen 127.0.0.1:50053 --name c
//! ```

#![allow(missing_docs, unreachable_pub)]

use std::net::SocketAddr;

use clap::Parser;
use tonic::{Request, Response, Status};

pub mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}

use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0: any free port; the one bound is
    /// printed).
    #[arg(
        long,
        env = "LOOKASIDE_GREETER_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    listen: SocketAddr,
    /// Name in every reply.
    #[arg(long, env = "LOOKASIDE_GREETER_NAME", default_value = "greeter")]
    name: String,
}

struct Service {
    name: String,
}

#[tonic::async_trait]
impl Greeter for Service {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("Hello {}", request.into_inner().name),
            server: self.name.clone(),
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "greeter {} listening on {}",
        args.name,
        listener.local_addr()?
    );
    let orca = lookaside_client::orca::OrcaReporter::builder().build();
    // Small responses leave at once (tonic's `serve` sets TCP_NODELAY; a
    // listener of our own needs it said).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(orca.layer())
        .add_service(orca.service())
        .add_service(GreeterServer::new(Service { name: args.name }))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
