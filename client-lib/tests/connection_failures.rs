//! Connection failures reach the balancer however calls use the endpoint:
//! an endpoint that cannot be reached is ejected even before any call, and
//! even when every call gives up (its deadline) before the connection
//! attempt does; a call carrying a header HTTP/2 forbids is sent without
//! it and ejects nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::LbChannel;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use support::Backend;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn balancer(name: &str, connect_timeout: Duration) -> (ClusterBalancer, LbChannel) {
    let settings = ConnectionSettings {
        connect_timeout,
        // Long enough that the test sees the ejection before a probe.
        probe_backoff_initial: Duration::from_secs(30),
        ..ConnectionSettings::default()
    };
    ClusterBalancer::spawn(name, settings, Duration::from_secs(2))
}

/// Polls until the channel's one assigned endpoint is ejected; panics
/// after 5 s.
async fn until_ejected(channel: &lookaside_client::LbChannel, mut between: impl AsyncFnMut()) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while channel.assigned_endpoints() != 1 || channel.usable_endpoints() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unreachable endpoint is still in use"
        );
        between().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_endpoint_nobody_listens_on_is_ejected_before_any_call() {
    let closed = support::closed_address();
    let (cluster, channel) = balancer("closed", Duration::from_secs(2));
    cluster.assign(vec![(closed, 1)]);
    until_ejected(&channel, async || {}).await;
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_ejected_though_every_call_gives_up_first() {
    let (address, blackhole) = support::blackhole().await;
    let (cluster, channel) = balancer("blackhole", Duration::from_millis(300));
    cluster.assign(vec![(address, 1)]);
    let mut gave_up = 0;
    until_ejected(&channel, async || {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        request.set_timeout(Duration::from_millis(20));
        match HealthClient::new(channel.clone()).check(request).await {
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => gave_up += 1,
            // Once ejected, calls fail fast instead.
            Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
            Ok(_) => panic!("nothing answers there"),
        }
    })
    .await;
    assert!(gave_up > 0, "calls waited for the connection and gave up");
    drop(blackhole);
}

#[tokio::test]
async fn a_connection_header_is_dropped_not_fatal() {
    let backend = Backend::start().await;
    let (cluster, channel) = balancer("greeter", Duration::from_secs(2));
    cluster.assign(vec![(backend.address, 1)]);
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("connection", "keep-alive".parse().unwrap());
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .expect("served without the header");
    assert!(channel.is_usable(), "nothing ejected");
    support::call(&channel).await.expect("next call");
    assert_eq!(backend.served(), 2);
}

#[tokio::test]
async fn a_peer_that_goes_silent_is_found_by_keepalive() {
    // A frozen process, or a peer behind a dead network path.
    let (address, held) = support::silent_peer().await;
    let settings = ConnectionSettings {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(100),
        probe_backoff_initial: Duration::from_secs(30),
        ..ConnectionSettings::default()
    };
    let (cluster, channel) = ClusterBalancer::spawn("frozen", settings, Duration::from_secs(2));
    cluster.assign(vec![(address, 1)]);

    // A call without a deadline would wait forever on this peer; the
    // unanswered PING ends the connection, and the call with it.
    let started = tokio::time::Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        HealthClient::new(channel.clone()).check(HealthCheckRequest::default()),
    )
    .await
    .expect("the dead peer was found within 5 s")
    .expect_err("nothing answers there");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "found in {:?}",
        started.elapsed()
    );
    until_ejected(&channel, async || {}).await;
    held.abort();
}

/// A call whose request body is still being produced is not lost when the
/// endpoint it first picked cannot be reached: the body is taken only once
/// a stream is open, so the retry carries it. The unreachable endpoint has
/// nearly all the weight, so the retry must also find the light one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_request_survives_an_unreachable_first_endpoint() {
    let (unreachable, blackhole) = support::blackhole().await;
    let backend = Backend::start().await;
    let (balancer, channel) = balancer("streamed", Duration::from_millis(300));
    balancer.assign(vec![(unreachable, 1000), (backend.address, 1)]);
    // The picker's first pick goes to the endpoint listed first (by
    // address); every other one but a thousandth to the blackhole. Spend
    // the first on the backend if it is listed first, so that the streaming
    // call below starts on the blackhole.
    let mut served = 0;
    if backend.address < unreachable {
        support::call(&channel)
            .await
            .expect("the first pick answers");
        served = 1;
    }
    let (requests, produced) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        // Not ready when the call starts: the body is piped, not read ahead.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = requests
            .send(HealthCheckRequest {
                service: String::new(),
            })
            .await;
    });
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        grpc.client_streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(produced)),
            tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check"),
            tonic_prost::ProstCodec::<HealthCheckRequest, tonic_health::pb::HealthCheckResponse>::default(),
        ),
    )
    .await
    .expect("the call ends")
    .expect("the call goes to the reachable endpoint");
    assert_eq!(
        response.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(backend.served(), served + 1);
    drop(blackhole);
}
