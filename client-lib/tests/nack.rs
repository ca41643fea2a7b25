//! A malformed assignment (weight 0) is NACKed with the reason, and the
//! previous assignment keeps serving. The control plane here is a scripted
//! fake, since the real one never sends weight 0.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use lookaside_client::Client;
use support::ads::{EDS, Seen, assignment, scripted};
use support::{Backend, call};

#[tokio::test]
async fn weight_zero_is_nacked_and_the_last_good_assignment_keeps_serving() {
    let snapshotter = support::process_recorder();
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let good = DiscoveryResponse {
        version_info: "1".into(),
        resources: vec![assignment(&[
            (backends[0].address, 1),
            (backends[1].address, 1),
        ])],
        type_url: EDS.into(),
        nonce: "n1".into(),
        ..Default::default()
    };
    // Another set of endpoints: had it been applied, the calls would show
    // it (the third backend would serve, the second would not).
    let bad = DiscoveryResponse {
        version_info: "2".into(),
        resources: vec![assignment(&[
            (backends[0].address, 0),
            (backends[2].address, 1),
        ])],
        type_url: EDS.into(),
        nonce: "n2".into(),
        ..Default::default()
    };
    let (address, mut seen) = scripted(vec![good, bad]).await;

    let lb = Client::builder(format!("http://{address}"))
        .build()
        .expect("client");
    let channel = lb.channel("greeter");
    for _ in 0..10 {
        call(&channel).await.expect("call");
    }
    assert_eq!(served(&backends), [5, 5, 0]);

    // Requests: subscribe, ACK of n1 (which the script answers with the bad
    // response), then the NACK of n2.
    let nack = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Seen::Request(request) = seen.recv().await.expect("requests")
                && request.error_detail.is_some()
            {
                return request;
            }
        }
    })
    .await
    .expect("a NACK arrives");
    assert_eq!(nack.response_nonce, "n2");
    assert_eq!(
        nack.version_info, "1",
        "the NACK names the last good version"
    );
    let message = nack.error_detail.map(|s| s.message).unwrap_or_default();
    assert!(message.contains("load_balancing_weight 0"), "{message}");
    // Counted as rejected, and not as applied.
    let mut totals = support::Totals::default();
    let count = |totals: &support::Totals, name| totals.get(name, &[("cluster", "greeter")]);
    support::until("the rejection counted", || {
        totals.refresh(&snapshotter);
        count(&totals, "lookaside_client_assignments_rejected_total").is_some_and(|n| n > 0.0)
    })
    .await;
    let rejected = count(&totals, "lookaside_client_assignments_rejected_total");
    let applied = count(&totals, "lookaside_client_assignments_total");
    assert_eq!((rejected, applied), (Some(1.0), Some(1.0)));

    // The previous assignment still serves, both its endpoints evenly.
    for _ in 0..10 {
        call(&channel).await.expect("call");
    }
    assert_eq!(served(&backends), [10, 10, 0]);
}

fn served(backends: &[Backend; 3]) -> [u64; 3] {
    backends.each_ref().map(Backend::served)
}
