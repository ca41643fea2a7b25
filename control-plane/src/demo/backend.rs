//! A demo backend: a greeter server with a modelled capacity that reports
//! its utilization over ORCA, like a real backend that links
//! `lookaside_client::orca::OrcaReporter`.
//!
//! Owns: its listener, its workers (the capacity model), and publishing
//! their utilization to the reporter.
//! Must never: know about the control plane or the load; it answers calls
//! and reports load, as any backend does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lookaside_client::orca::{CpuSource, OrcaReporter};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::greeter::helloworld::greeter_server::{Greeter, GreeterServer};
use super::greeter::helloworld::{HelloReply, HelloRequest};
use super::{DemoError, Workers};

/// How often a backend hands its utilization to its ORCA reporter.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The shortest ORCA report interval a demo backend grants (real servers
/// default to 1 s or more; the demo moves faster).
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// What a demo backend is.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoBackendConfig {
    /// The name every reply carries.
    pub name: String,
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Calls served at once; more wait in line.
    pub workers: usize,
    /// How long one call holds its worker.
    pub cost: Duration,
    /// Initial slowdown factor (1: normal speed).
    pub slowdown: f64,
}

impl DemoBackendConfig {
    /// Backend `name` on a free local port with `workers` workers, each
    /// call taking `cost`: a capacity of `workers / cost` calls per second.
    pub fn new(name: &str, workers: usize, cost: Duration) -> Self {
        Self {
            name: name.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers,
            cost,
            slowdown: 1.0,
        }
    }
}

/// A running demo backend. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct DemoBackend {
    name: String,
    address: SocketAddr,
    workers: Arc<Workers>,
    server: JoinHandle<()>,
    publisher: JoinHandle<()>,
}

impl DemoBackend {
    /// Binds and starts serving `helloworld.Greeter` and
    /// `xds.service.orca.v3.OpenRcaService`; returns once it listens.
    pub async fn start(config: DemoBackendConfig) -> Result<Self, DemoError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| DemoError::Bind {
                    address: config.listen,
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| DemoError::Bind {
            address: config.listen,
            source,
        })?;
        let workers = Arc::new(Workers::new(config.workers, config.cost));
        workers.set_slowdown(config.slowdown);
        let orca = OrcaReporter::builder()
            .min_interval(MIN_REPORT_INTERVAL)
            .cpu_source(ModelledCpu(workers.clone()))
            .build();
        let publisher = {
            let workers = workers.clone();
            let recorder = orca.recorder().clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(PUBLISH_EVERY);
                loop {
                    ticks.tick().await;
                    recorder.set_application_utilization(workers.utilization());
                }
            })
        };
        let greeter = GreeterServer::new(Named {
            name: config.name.clone(),
            workers: workers.clone(),
        });
        let name = config.name.clone();
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .layer(orca.layer())
                .add_service(orca.service())
                .add_service(greeter)
                .serve_with_incoming(crate::server::accepting(listener))
                .await;
            if let Err(error) = served {
                tracing::warn!(backend = %name, %error, "demo backend stopped");
            }
        });
        Ok(Self {
            name: config.name,
            address,
            workers,
            server,
            publisher,
        })
    }

    /// The name its replies carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens (greeter and ORCA on the same port).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Calls per second it can serve now.
    pub fn capacity(&self) -> f64 {
        self.workers.capacity()
    }

    /// Its workers.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// Utilization over the last second, as it reports it.
    pub fn utilization(&self) -> f64 {
        self.workers.utilization()
    }

    /// Makes every call take `factor` times as long from now on, as when a
    /// noisy neighbour moves onto its node.
    pub fn set_slowdown(&self, factor: f64) {
        self.workers.set_slowdown(factor);
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.server.abort();
        self.publisher.abort();
    }
}

/// The greeter of one named backend.
#[derive(Debug)]
struct Named {
    name: String,
    workers: Arc<Workers>,
}

#[tonic::async_trait]
impl Greeter for Named {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.workers.serve().await;
        Ok(Response::new(HelloReply {
            message: format!("Hello {}", request.into_inner().name),
            server: self.name.clone(),
        }))
    }
}

/// The workers' busy time as the "CPU" the ORCA reporter reads, so that
/// `cpu_utilization` agrees with `application_utilization` instead of
/// measuring the whole demo process.
#[derive(Debug)]
struct ModelledCpu(Arc<Workers>);

impl CpuSource for ModelledCpu {
    fn cpu_seconds(&self) -> Option<f64> {
        Some(self.0.busy_seconds())
    }

    fn cpus(&self) -> f64 {
        self.0.count() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::LoadGenerator;
    use crate::load::{LoadTable, OrcaStreamConfig, follow_endpoint};

    #[tokio::test]
    async fn answers_with_its_name_and_reports_its_utilization_over_orca() {
        let backend = DemoBackend::start(DemoBackendConfig::new("a", 2, Duration::from_millis(20)))
            .await
            .expect("starts");
        assert_eq!(backend.capacity(), 100.0);
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", backend.address()))
                .expect("a valid URI")
                .connect()
                .await
                .expect("connects");
        // 50 calls/s of 20 ms on 2 workers: half busy.
        let load = LoadGenerator::start(channel, 50.0, Duration::from_secs(1));
        let table = LoadTable::default();
        let follower = tokio::spawn(follow_endpoint(
            backend.address(),
            table.clone(),
            OrcaStreamConfig {
                interval: Duration::from_millis(100),
                ..OrcaStreamConfig::default()
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seen = None;
        while tokio::time::Instant::now() < deadline {
            seen = table.report(&backend.address());
            // Past the first second, the whole window is under load.
            if seen
                .is_some_and(|report| (report.utilization - 0.5).abs() < 0.1 && report.rps > 40.0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        follower.abort();
        let report = seen.expect("a report");
        assert!(
            (report.utilization - 0.5).abs() < 0.1 && report.rps > 40.0,
            "{report:?}"
        );
        let calls = load.take();
        assert!(
            calls.count("a") > 0 && calls.ok() == calls.count("a"),
            "{calls:?}"
        );
        assert_eq!(calls.failed, 0, "{calls:?}");
    }
}
