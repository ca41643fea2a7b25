//! Shared pieces of the client benchmarks: greeter backends on their own
//! runtime, and a control plane in process.

#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::{Request, Response, Status};

pub mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}

use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};

struct Service {
    name: String,
    sleep: Duration,
    served: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Greeter for Service {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(HelloReply {
            message: request.into_inner().name,
            server: self.name.clone(),
        }))
    }
}

/// A greeter backend running on a runtime of its own (one worker thread),
/// like a separate server process.
pub struct Backend {
    pub address: SocketAddr,
    pub served: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Backend {
    pub fn start(name: &str, sleep: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let served = Arc::new(AtomicU64::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let service = Service {
            name: name.to_string(),
            sleep,
            served: served.clone(),
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .concurrency_limit_per_connection(100_000)
                .add_service(GreeterServer::new(service))
                .serve_with_incoming(
                    // TCP_NODELAY, as tonic's own `serve` sets it.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        Self {
            address,
            served,
            _runtime: runtime,
        }
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}
