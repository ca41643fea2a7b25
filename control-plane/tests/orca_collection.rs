//! The control plane's ORCA stream to one endpoint: validated reports land in
//! the load table, garbage is counted and dropped, and a server that goes
//! away and comes back is followed again.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use lookaside_control_plane::load::{LoadTable, OrcaStreamConfig, Rejection, follow_endpoint};
use lookaside_proto::orca::data::OrcaLoadReport;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_server::{
    OpenRcaService, OpenRcaServiceServer,
};
use tonic::{Request, Response, Status};

/// Sends the script, one report every 20 ms, then the last one forever.
struct Scripted(Vec<OrcaLoadReport>);

type Reports = Pin<Box<dyn Stream<Item = Result<OrcaLoadReport, Status>> + Send>>;

#[tonic::async_trait]
impl OpenRcaService for Scripted {
    type StreamCoreMetricsStream = Reports;

    async fn stream_core_metrics(
        &self,
        _request: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<Reports>, Status> {
        let script = self.0.clone();
        let stream = async_stream(script);
        Ok(Response::new(Box::pin(stream)))
    }
}

fn async_stream(script: Vec<OrcaLoadReport>) -> impl Stream<Item = Result<OrcaLoadReport, Status>> {
    let last = script.last().cloned().unwrap_or_default();
    let items = script.into_iter().chain(std::iter::repeat(last));
    futures::stream::iter(items).then(|report| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(report)
    })
}

use futures::StreamExt;

async fn serve(
    listener: tokio::net::TcpListener,
    script: Vec<OrcaLoadReport>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(OpenRcaServiceServer::new(Scripted(script)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    })
}

fn report(cpu: f64, rps: f64) -> OrcaLoadReport {
    OrcaLoadReport {
        cpu_utilization: cpu,
        rps_fractional: rps,
        ..Default::default()
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn config() -> OrcaStreamConfig {
    OrcaStreamConfig {
        interval: Duration::from_millis(20),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(1),
        tls: None,
    }
}

#[tokio::test]
async fn reports_land_in_the_table_and_garbage_is_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let _server = serve(
        listener,
        vec![
            report(0.5, 100.0),
            report(f64::NAN, 1.0),
            report(-1.0, 1.0),
            report(1e9, 1.0),
            report(0.6, 90.0),
        ],
    )
    .await;
    let table = LoadTable::default();
    let follower = tokio::spawn(follow_endpoint(address, table.clone(), config()));
    until("three rejections and the last good report", || {
        table.get(&address).is_some_and(|load| {
            load.rejected >= 3
                && load
                    .report
                    .is_some_and(|r| (r.utilization - 0.6).abs() < 1e-9)
        })
    })
    .await;
    let load = table.get(&address).unwrap();
    assert!(load.connected);
    assert!(load.accepted >= 2);
    assert!(matches!(
        load.last_rejection,
        Some(Rejection::Absurd | Rejection::Frozen)
    ));
    follower.abort();
}

/// Each stream sends three reports (utilization 0.1 x its stream number)
/// and ends, as a restarting server's streams do.
struct Ending(std::sync::atomic::AtomicU32);

#[tonic::async_trait]
impl OpenRcaService for Ending {
    type StreamCoreMetricsStream = Reports;

    async fn stream_core_metrics(
        &self,
        _request: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<Reports>, Status> {
        let number = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let reports = vec![report(0.1 * f64::from(number), 10.0); 3];
        let stream = futures::stream::iter(reports).then(|report| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(report)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tokio::test]
async fn an_ended_stream_is_reopened_with_backoff() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OpenRcaServiceServer::new(Ending(Default::default())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let table = LoadTable::default();
    let follower = tokio::spawn(follow_endpoint(address, table.clone(), config()));
    until("reports from the third stream", || {
        table
            .get(&address)
            .and_then(|l| l.report)
            .is_some_and(|r| r.utilization >= 0.3 - 1e-9)
    })
    .await;
    follower.abort();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_marked_disconnected() {
    // Nothing listens here.
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let table = LoadTable::default();
    let follower = tokio::spawn(follow_endpoint(address, table.clone(), config()));
    until("the first failed attempt", || {
        table.get(&address).is_some_and(|l| !l.connected)
    })
    .await;
    assert!(table.get(&address).is_some_and(|l| l.report.is_none()));
    follower.abort();
}

#[tokio::test]
async fn orca_over_tls_trusts_the_configured_ca_only() {
    use lookaside_control_plane::telemetry::Metrics;
    use lookaside_control_plane::tls::{OrcaTlsFiles, reloading};

    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let read = |name: &str| std::fs::read(certs.join(name)).expect("test certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let identity = tonic::transport::Identity::from_pem(read("server.pem"), read("server.key"));
    let _server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(OpenRcaServiceServer::new(Scripted(vec![report(0.5, 10.0)])))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let metrics = std::sync::Arc::new(Metrics::new());
    let tls = async |ca: &str| {
        reloading(
            OrcaTlsFiles {
                ca: certs.join(ca),
                cert: None,
                key: None,
                server_name: None,
            },
            Duration::from_secs(60),
            metrics.clone(),
        )
        .await
        .expect("ORCA TLS files load")
    };

    // Trusting the backend's CA: reports flow (the IP SAN is checked).
    let trusted = LoadTable::default();
    let follower = tokio::spawn(follow_endpoint(
        address,
        trusted.clone(),
        OrcaStreamConfig {
            tls: Some(tls("ca.pem").await),
            ..config()
        },
    ));
    until("a report over TLS", || {
        trusted
            .get(&address)
            .is_some_and(|load| load.connected && load.report.is_some())
    })
    .await;
    follower.abort();

    // Trusting another CA, or speaking plaintext: no report, an error shown.
    for stream in [
        OrcaStreamConfig {
            tls: Some(tls("ca2.pem").await),
            ..config()
        },
        config(),
    ] {
        let table = LoadTable::default();
        let follower = tokio::spawn(follow_endpoint(address, table.clone(), stream));
        until("a failed connection", || {
            table
                .get(&address)
                .is_some_and(|load| load.last_error.is_some())
        })
        .await;
        let load = table.get(&address).unwrap();
        assert!(load.report.is_none() && !load.connected);
        follower.abort();
    }
}
