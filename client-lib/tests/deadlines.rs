//! A call's deadline (`grpc-timeout`, from tonic's `Request::set_timeout`)
//! holds through a cluster's channel: a response that never starts and a
//! stream that never ends both stop at the deadline with
//! DEADLINE_EXCEEDED, and neither ejects the endpoint.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::Backend;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TIMEOUT: Duration = Duration::from_millis(300);

/// Fails the test, rather than hanging it, if the deadline is not kept.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("the call ended within 5 s")
}

fn with_timeout<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(TIMEOUT);
    request
}

#[tokio::test]
async fn a_server_that_never_answers_costs_the_deadline_not_the_endpoint() {
    let (address, held) = support::silent_peer().await;
    let (_cluster, channel) = support::cluster("silent", &[address]);

    let started = tokio::time::Instant::now();
    let status = bounded(
        HealthClient::new(channel.clone()).check(with_timeout(HealthCheckRequest::default())),
    )
    .await
    .expect_err("no answer");
    let waited = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("silent"), "{status:?}");
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    assert!(channel.is_usable(), "a slow call is not a dead endpoint");
    held.abort();
}

#[tokio::test]
async fn a_stream_that_never_ends_stops_at_the_deadline() {
    let backend = Backend::start().await;
    let (_cluster, channel) = support::cluster("watched", &[backend.address]);

    let started = tokio::time::Instant::now();
    let mut updates = HealthClient::new(channel.clone())
        .watch(with_timeout(HealthCheckRequest::default()))
        .await
        .expect("watch opens")
        .into_inner();
    let first = updates.message().await.expect("first update");
    assert!(first.is_some(), "the current status comes first");
    let status = bounded(updates.message())
        .await
        .expect_err("ends at the deadline");
    let waited = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    assert!(channel.is_usable());
    // The endpoint still serves.
    support::call(&channel).await.expect("next call");
}
