//! Shared by the in-process gRPC tests: a control plane serving one cluster
//! (`greeter`) from a file, and a minimal ADS client that follows its first
//! endpoint weight and ACKs every response like a real client.

// Each test file uses a part.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use lookaside_control_plane::server::{Running, ServeConfig, start};
use lookaside_control_plane::xds::Limits;
use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lookaside_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// The assignment type URL.
pub(crate) const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The config file serving `greeter` with a first endpoint of `weight`.
pub(crate) fn config(weight: u32) -> String {
    format!(
        "clusters:\n  - name: greeter\n    endpoints:\n      - {{ address: 127.0.0.1:50051, weight: {weight} }}\n      - {{ address: 127.0.0.1:50052, weight: 2 }}\n"
    )
}

/// A control plane serving `config(1)` from `dir`, polling it every 20 ms.
pub(crate) async fn serve(dir: &Path, limits: Limits) -> Running {
    let path = dir.join("lookaside.yaml");
    std::fs::write(&path, config(1)).expect("write config");
    start(
        ServeConfig {
            config_poll: Duration::from_millis(20),
            limits,
            ..ServeConfig::local(path)
        },
        futures::future::pending(),
    )
    .await
    .expect("control plane starts")
}

/// A plaintext channel to `running`'s xDS port.
pub(crate) async fn channel(running: &Running) -> Channel {
    Channel::from_shared(format!("http://{}", running.xds_address))
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

/// One ADS stream subscribed to `greeter`'s assignment.
pub(crate) struct EdsWatcher {
    requests: mpsc::Sender<DiscoveryRequest>,
    /// The raw responses, for tests that watch the stream end.
    pub(crate) responses: tonic::Streaming<DiscoveryResponse>,
}

impl EdsWatcher {
    pub(crate) async fn open(channel: Channel) -> Self {
        let (requests, rx) = mpsc::channel(8);
        requests
            .send(DiscoveryRequest {
                type_url: EDS.into(),
                resource_names: vec!["greeter".into()],
                ..Default::default()
            })
            .await
            .expect("send");
        let responses = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        Self {
            requests,
            responses,
        }
    }

    /// Next response's first endpoint weight, ACKing it.
    pub(crate) async fn next_weight(&mut self) -> u32 {
        let response = tokio::time::timeout(Duration::from_secs(5), self.responses.next())
            .await
            .expect("a response within 5 s")
            .expect("stream open")
            .expect("not an error");
        self.requests
            .send(DiscoveryRequest {
                type_url: EDS.into(),
                resource_names: vec!["greeter".into()],
                version_info: response.version_info.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            })
            .await
            .expect("ack");
        let cla = ClusterLoadAssignment::decode(response.resources[0].value.as_slice())
            .expect("assignment");
        cla.endpoints[0].lb_endpoints[0]
            .load_balancing_weight
            .map(|w| w.value)
            .unwrap_or(0)
    }
}

/// The status code of `GET path` on `address`.
pub(crate) async fn http_status(address: std::net::SocketAddr, path: &str) -> u16 {
    http_get(address, path).await.0
}

/// The status code and body of `GET path` on `address` (the metrics
/// listener's plain HTTP).
pub(crate) async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` until it holds, failing with `what` after `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// State-of-the-world ADS streams `running` holds open.
pub(crate) fn open_sotw_streams(running: &Running) -> i64 {
    running
        .metrics
        .streams
        .get_or_create(&lookaside_control_plane::telemetry::Metrics::protocol(
            "sotw",
        ))
        .get()
}
