//! What a dropped client leaves behind: its channels keep following
//! assignments, and once they are gone too, the stream to the control plane
//! and the connections to the endpoints close.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use lookaside_client::Client;
use support::ads::{EDS, Seen, assignment, scripted};
use support::{Backend, call, until};

/// A backend, and a scripted control plane that assigns it to `greeter`
/// on the first subscription only.
async fn one_backend_plane() -> (
    Backend,
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
) {
    let backend = Backend::start().await;
    let response = DiscoveryResponse {
        version_info: "1".into(),
        resources: vec![assignment(&[(backend.address, 1)])],
        type_url: EDS.into(),
        nonce: "n1".into(),
        ..Default::default()
    };
    let (address, seen) = scripted(vec![response]).await;
    (backend, address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_asked_for_again_is_the_same_cluster() {
    let (backend, address, _seen) = one_backend_plane().await;
    let lb = Client::builder(format!("http://{address}"))
        .first_assignment_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    call(&lb.channel("greeter")).await.expect("first channel");
    // The scripted server answers one subscription only: a second one
    // would never get an assignment, and the call would fail.
    for _ in 0..3 {
        call(&lb.channel("greeter"))
            .await
            .expect("the same subscription, connection and assignment");
    }
    assert_eq!(backend.served(), 4);
    assert_eq!(backend.open_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_outlives_its_client_and_the_last_drop_closes_everything() {
    let (backend, address, mut seen) = one_backend_plane().await;

    // The one-liner: the client itself is dropped at once.
    let channel = Client::builder(format!("http://{address}"))
        .build()
        .expect("client")
        .channel("greeter");
    call(&channel)
        .await
        .expect("the channel follows its assignment");
    assert_eq!(backend.served(), 1);
    assert_eq!(backend.open_connections(), 1);

    let clone = channel.clone();
    drop(channel);
    call(&clone).await.expect("a clone keeps the cluster alive");
    drop(clone);

    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Seen::Ended = seen.recv().await.expect("server running") {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the ADS stream outlived every channel");
    until("the endpoint's connection outlived every channel", || {
        backend.open_connections() == 0
    })
    .await;
}
