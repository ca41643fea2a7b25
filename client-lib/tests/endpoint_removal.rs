//! An endpoint the control plane removes stops getting new calls at once,
//! while the calls already in flight on it finish; then its connection
//! closes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Backend, call, until};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn a_removed_endpoint_finishes_its_calls_then_closes_its_connection() {
    let leaving = Backend::start().await;
    let staying = Backend::start().await;
    let (cluster, channel) = support::cluster("greeter", &[leaving.address]);

    // A call in flight on the endpoint that will leave: a health watch
    // stays open until the client ends it.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch opens")
        .into_inner();
    watch
        .message()
        .await
        .expect("first update")
        .expect("an update");
    assert_eq!(leaving.open_connections(), 1);

    cluster.assign(vec![(staying.address, 1)]);
    until("new calls go to the endpoint that stays", || {
        channel.assigned_endpoints() == 1 && staying.open_connections() == 1
    })
    .await;
    let before = leaving.served();
    for _ in 0..20 {
        call(&channel).await.expect("call");
    }
    assert_eq!(
        leaving.served(),
        before,
        "no new call on the removed endpoint"
    );

    // The call in flight is untouched: still open, no error.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.message())
            .await
            .is_err(),
        "the watch on the removed endpoint is still open"
    );
    assert_eq!(leaving.open_connections(), 1, "drained, not cut");

    // Once it ends, nothing holds the connection.
    drop(watch);
    until("the removed endpoint's connection closes", || {
        leaving.open_connections() == 0
    })
    .await;
    assert_eq!(staying.open_connections(), 1);
}
