//! Wait-for-ready calls (gRPC's per-call option, or a channel's): a call
//! whose cluster's only endpoint is down waits, within its deadline, until
//! the endpoint is back and the balancer has probed it in, where a
//! fail-fast call fails at once with UNAVAILABLE. (A call whose own attempt
//! fails to connect and waits for the next endpoint set: the unit tests of
//! `cluster/channel.rs`.)

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use lookaside_client::{LbChannel, WaitForReady};
use support::Backend;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A cluster whose one endpoint is an address nothing listens on yet.
async fn cluster_with_a_down_endpoint(
    name: &str,
) -> (ClusterBalancer, LbChannel, std::net::SocketAddr) {
    let address = support::closed_address();
    let settings = ConnectionSettings {
        // Probed back soon after it comes up.
        probe_backoff_initial: Duration::from_millis(50),
        probe_backoff_max: Duration::from_millis(100),
        ..ConnectionSettings::default()
    };
    let (balancer, channel) = ClusterBalancer::spawn(name, settings, Duration::from_secs(2));
    balancer.assign(vec![(address, 1)]);
    (balancer, channel, address)
}

async fn check(
    channel: &LbChannel,
    per_call: bool,
) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(10));
    if per_call {
        request.extensions_mut().insert(WaitForReady);
    }
    HealthClient::new(channel.clone()).check(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_fast_call_to_a_down_endpoint_fails_at_once() {
    let (_balancer, channel, _address) = cluster_with_a_down_endpoint("fail-fast").await;
    let failed = tokio::time::timeout(Duration::from_secs(5), check(&channel, false))
        .await
        .expect("fails fast")
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_ready_call_waits_until_the_endpoint_is_back() {
    for per_call in [true, false] {
        let (_balancer, channel, address) = cluster_with_a_down_endpoint("waits").await;
        let channel = if per_call {
            channel
        } else {
            channel.wait_for_ready()
        };
        let call = tokio::spawn({
            let channel = channel.clone();
            async move { check(&channel, per_call).await }
        });
        // The endpoint is ejected (the balancer's first connection, or the
        // call's, found it down), and the call waits: a fail-fast one has
        // failed by then.
        support::until("the down endpoint ejected", || {
            channel.assigned_endpoints() == 1 && !channel.is_usable()
        })
        .await;
        assert!(!call.is_finished(), "the call gave up");

        let backend = Backend::start_at(address).await;
        let answered = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("answered once the endpoint is back")
            .unwrap();
        assert!(answered.is_ok(), "per call: {per_call}: {answered:?}");
        assert_eq!(backend.served(), 1);
    }
}
