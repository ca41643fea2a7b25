//! The client's metrics, read through a debugging recorder.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use support::{Backend, Totals, call};

#[tokio::test(flavor = "current_thread")]
async fn picks_ejections_and_assignments_are_counted() {
    let snapshotter = support::process_recorder();

    let mut backends = [Backend::start().await, Backend::start().await];
    let (cluster, channel) = ClusterBalancer::spawn(
        "greeter",
        ConnectionSettings::default(),
        Duration::from_secs(1),
    );
    cluster.assign(backends.iter().map(|b| (b.address, 1)).collect());
    for _ in 0..10 {
        call(&channel).await.expect("call");
    }
    let a = backends[0].address.to_string();
    let b = backends[1].address.to_string();
    let mut totals = Totals::default();
    totals.refresh(&snapshotter);
    // A per-endpoint metric of both endpoints.
    let both = |totals: &Totals, name: &str| {
        let of =
            |endpoint: &str| totals.get(name, &[("cluster", "greeter"), ("endpoint", endpoint)]);
        (of(&a), of(&b))
    };
    assert_eq!(
        both(&totals, "lookaside_client_picks_total"),
        (Some(5.0), Some(5.0))
    );
    assert_eq!(
        totals.get(
            "lookaside_client_assignments_total",
            &[("cluster", "greeter")]
        ),
        Some(1.0)
    );
    assert_eq!(
        both(&totals, "lookaside_client_connections_total"),
        (Some(1.0), Some(1.0)),
        "one long-lived connection per endpoint"
    );
    assert_eq!(
        totals.get(
            "lookaside_client_usable_endpoints",
            &[("cluster", "greeter")]
        ),
        Some(2.0)
    );

    backends[0].kill();
    for _ in 0..20 {
        let _ = call(&channel).await;
    }
    support::until("ejection counted, one endpoint usable", || {
        totals.refresh(&snapshotter);
        let ejected = totals.get("lookaside_client_ejections_total", &[("endpoint", &a)]);
        let usable = totals.get(
            "lookaside_client_usable_endpoints",
            &[("cluster", "greeter")],
        );
        (ejected, usable) == (Some(1.0), Some(1.0))
    })
    .await;
}
