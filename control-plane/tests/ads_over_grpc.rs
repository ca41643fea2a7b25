//! The ADS server over real gRPC, in process: a tonic client against the
//! server `lookaside serve` runs. Garbage from one client never disturbs
//! another. (The limits have their own file, `xds_limits.rs`.)

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_control_plane::xds::Limits;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lookaside_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use lookaside_proto::envoy::service::load_stats::v3::LoadStatsRequest;
use lookaside_proto::envoy::service::load_stats::v3::load_reporting_service_client::LoadReportingServiceClient;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

mod ads_fixture;
use ads_fixture::{
    EdsWatcher, channel, config, eventually, http_get, http_status, open_sotw_streams, serve,
};

/// Sends raw bytes as request messages.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct ResponseDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = DiscoveryResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<DiscoveryResponse>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        DiscoveryResponse::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = DiscoveryResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

#[tokio::test]
async fn edits_reach_a_connected_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = serve(dir.path(), Limits::default()).await;
    let mut watcher = EdsWatcher::open(channel(&running).await).await;
    assert_eq!(watcher.next_weight().await, 1);
    std::fs::write(dir.path().join("lookaside.yaml"), config(9)).expect("edit");
    assert_eq!(watcher.next_weight().await, 9);
}

#[tokio::test]
async fn garbage_from_one_client_does_not_disturb_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = serve(dir.path(), Limits::default()).await;
    let channel = channel(&running).await;
    let mut watcher = EdsWatcher::open(channel.clone()).await;
    assert_eq!(watcher.next_weight().await, 1);

    // 1. Bytes that are not a DiscoveryRequest: that stream ends with an error.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.expect("ready");
    let garbage = futures::stream::iter(vec![Bytes::from_static(&[0xff, 0xff, 0xff, 0x0f, 0x08])]);
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let result = raw
        .streaming(tonic::Request::new(garbage), path, RawCodec)
        .await;
    let outcome = match result {
        Err(status) => Err(status),
        Ok(response) => response
            .into_inner()
            .next()
            .await
            .unwrap_or(Ok(DiscoveryResponse::default())),
    };
    assert!(
        outcome.is_err(),
        "malformed request ends that stream: {outcome:?}"
    );

    let mut client = AggregatedDiscoveryServiceClient::new(channel.clone());

    // 2. An unknown type URL gets an empty, NACK-safe answer.
    let unknown = DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        resource_names: vec!["x".into()],
        ..Default::default()
    };
    let mut stream = client
        .stream_aggregated_resources(
            futures::stream::iter(vec![unknown]).chain(futures::stream::pending()),
        )
        .await
        .expect("opens")
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("answered")
        .expect("an item")
        .expect("not an error");
    assert!(response.resources.is_empty());
    assert!(response.type_url.ends_with("Secret"));

    // 3. A Delta request without a type URL is refused.
    let mut delta = client
        .delta_aggregated_resources(
            futures::stream::iter(vec![DeltaDiscoveryRequest::default()])
                .chain(futures::stream::pending()),
        )
        .await
        .expect("opens")
        .into_inner();
    let status = tokio::time::timeout(Duration::from_secs(5), delta.next())
        .await
        .expect("answered")
        .expect("an item")
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // The well-behaved client still follows edits.
    std::fs::write(dir.path().join("lookaside.yaml"), config(4)).expect("edit");
    assert_eq!(watcher.next_weight().await, 4);
}

#[tokio::test]
async fn a_client_that_closes_its_side_is_still_answered_and_updated() {
    // `grpcurl -d '{...}'` sends its request and half-closes at once.
    let dir = tempfile::tempdir().expect("tempdir");
    let running = serve(dir.path(), Limits::default()).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel(&running).await);
    let request = DiscoveryRequest {
        type_url: ads_fixture::EDS.into(),
        resource_names: vec!["greeter".into()],
        ..Default::default()
    };
    let mut stream = client
        .stream_aggregated_resources(futures::stream::iter(vec![request]))
        .await
        .expect("opens")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("answered")
            .expect("an item, not the end")
            .expect("not an error")
    };
    let first = next().await;
    assert_eq!(first.resources.len(), 1);
    // Updates keep coming, unacknowledged (it cannot ACK any more).
    std::fs::write(dir.path().join("lookaside.yaml"), config(7)).expect("edit");
    let second = next().await;
    assert_ne!(second.version_info, first.version_info);
    // It can no longer be heard from: its going is seen on the response
    // side, and its stream is let go.
    let open = || open_sotw_streams(&running);
    assert_eq!(open(), 1);
    drop(stream);
    drop(client);
    eventually(
        Duration::from_secs(5),
        "a half-closed client that left lets its stream go",
        || async { open() == 0 },
    )
    .await;
}

#[tokio::test]
async fn metrics_count_streams_pushes_and_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, config(1)).expect("write config");
    let running = start(
        ServeConfig {
            config_poll: Duration::from_millis(20),
            metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(5),
            ..ServeConfig::local(path)
        },
        futures::future::pending(),
    )
    .await
    .expect("control plane starts");
    let mut watcher = EdsWatcher::open(channel(&running).await).await;
    assert_eq!(watcher.next_weight().await, 1);
    std::fs::write(dir.path().join("lookaside.yaml"), config(5)).expect("edit");
    assert_eq!(watcher.next_weight().await, 5);

    let address = running.metrics_address.expect("metrics listening");
    let scrape = || async move { http_get(address, "/metrics").await.1 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = scrape().await;
        let has = |needle: &str| body.lines().any(|l| l.starts_with(needle));
        if has("lookaside_xds_streams{protocol=\"sotw\"} 1")
            && has("lookaside_xds_pushes_total{protocol=\"sotw\",type=\"EDS\"} 2")
            && has("lookaside_xds_acks_total{protocol=\"sotw\",type=\"EDS\"} 2")
            && has("lookaside_xds_push_latency_seconds_count{protocol=\"sotw\",type=\"EDS\"} 2")
            && has("lookaside_snapshots_total 2")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_ends_open_streams_so_clients_move_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, config(1)).expect("write config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = start(
        ServeConfig {
            config_poll: Duration::from_millis(20),
            metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(30),
            ..ServeConfig::local(path)
        },
        async {
            let _ = stopped.await;
        },
    )
    .await
    .expect("control plane starts");
    let channel = channel(&running).await;
    let mut watcher = EdsWatcher::open(channel.clone()).await;
    assert_eq!(watcher.next_weight().await, 1);
    // A proxyless gRPC client also keeps an LRS stream open on the same
    // connection; it must not hold the shutdown for the grace period.
    let mut lrs = LoadReportingServiceClient::new(channel)
        .stream_load_stats(
            futures::stream::iter(vec![LoadStatsRequest::default()])
                .chain(futures::stream::pending()),
        )
        .await
        .expect("LRS stream opens")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(5), lrs.next())
        .await
        .expect("LRS answered")
        .expect("an item")
        .expect("the reporting interval");

    let probe = running.metrics_address.expect("metrics listen");
    eventually(Duration::from_secs(5), "ready", || async {
        http_status(probe, "/readyz").await == 200
    })
    .await;

    stop.send(()).expect("signal");
    // Out of rotation at once: probes say not ready while streams end.
    eventually(
        Duration::from_secs(5),
        "unready while shutting down",
        || async { http_status(probe, "/readyz").await == 503 },
    )
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(5), watcher.responses.next())
        .await
        .expect("stream ended promptly")
        .expect("an item");
    let status = ended.expect_err("ended with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    let lrs_status = tokio::time::timeout(Duration::from_secs(5), lrs.next())
        .await
        .expect("LRS stream ended promptly")
        .expect("an item")
        .expect_err("ended with a status");
    assert_eq!(lrs_status.code(), tonic::Code::Unavailable);
    // Well inside the 30 s grace: nothing else holds the server.
    tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("server stopped")
        .expect("cleanly");
}
