//! Streaming calls through a cluster's channel: a bidirectional stream (the
//! control plane's own ADS service as the backend) carries requests written
//! after the call started, and dropping the call cancels it at the server;
//! a server stream cut by a lost connection ends with UNAVAILABLE.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_proto::admin::v1::ListClientsRequest;
use lookaside_proto::admin::v1::admin_client::AdminClient;

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn request(version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "streaming-test".to_string(),
            ..Node::default()
        }),
        type_url: CLUSTER_TYPE.to_string(),
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..DiscoveryRequest::default()
    }
}

/// ADS streams the control plane holds open for node `streaming-test`.
async fn open_streams(admin: &mut AdminClient<tonic::transport::Channel>) -> usize {
    admin
        .list_clients(ListClientsRequest::default())
        .await
        .expect("list clients")
        .into_inner()
        .clients
        .iter()
        .filter(|client| client.node_id == "streaming-test")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_stream_flows_and_dropping_it_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(
        &path,
        "clusters:\n  - name: greeter\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 1 }\n",
    )
    .unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = start(ServeConfig::local(path), async {
        let _ = stopped.await;
    })
    .await
    .expect("control plane starts");
    let mut admin = AdminClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.xds_address))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );

    // The control plane is this cluster's one endpoint.
    let (_cluster, channel) = support::cluster("control-plane", &[running.xds_address]);
    let mut ads = AggregatedDiscoveryServiceClient::new(channel.clone());
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    requests.send(request("", "")).await.unwrap();
    let mut responses = ads
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("a response in time")
        .expect("a response")
        .expect("not the end");
    assert_eq!(first.type_url, CLUSTER_TYPE);
    assert_eq!(first.resources.len(), 1, "the greeter cluster");

    // A request written after the call started reaches the server: the ACK
    // is recorded, and the stream stays open.
    requests
        .send(request(&first.version_info, &first.nonce))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let clients = admin
            .list_clients(ListClientsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .clients;
        let acked = clients.iter().any(|client| {
            client.node_id == "streaming-test"
                && client
                    .types
                    .iter()
                    .any(|t| t.type_url == CLUSTER_TYPE && t.acked_version == first.version_info)
        });
        if acked {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ACK never reached the server: {clients:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open_streams(&mut admin).await, 1);

    // Dropping the response stream while the request side is still open
    // cancels the call: the server sees the stream end.
    drop(responses);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open_streams(&mut admin).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still holds the dropped stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(requests);
}

/// A server stream cut by a lost connection (the peer's socket closed
/// mid-response, as when its process dies) ends with UNAVAILABLE, the code
/// gRPC gives transport failures, not UNKNOWN. The peer is a raw h2 server
/// that sends one message, then closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_response_is_unavailable() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sent, sent_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
        let head = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(head, false).unwrap();
        stream.send_data(support::serving_frame(), false).unwrap();
        // Drive the connection until the client has the message, then
        // close the socket without ending the stream.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                _ = connection.accept() => {}
                _ = sent_rx => {}
            }
        })
        .await;
        drop(stream);
        drop(connection);
    });

    let (cluster, channel) =
        ClusterBalancer::spawn("cut", ConnectionSettings::default(), Duration::from_secs(2));
    cluster.assign(vec![(address, 1)]);
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch opens")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("first message")
        .expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    sent.send(()).unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the stream ends within 5 s")
        .expect_err("the connection is gone");
    assert_eq!(lost.code(), tonic::Code::Unavailable, "{lost:?}");
}
