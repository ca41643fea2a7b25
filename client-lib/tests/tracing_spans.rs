//! A call runs in a `lookaside_call` span and a connection's task in a
//! `lookaside_connection` span, both with the cluster and the endpoint, for
//! any subscriber that listens at DEBUG (they are not built otherwise).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use support::{Backend, Logs, call};

#[tokio::test]
async fn calls_and_connections_are_traced_with_cluster_and_endpoint() {
    let written = Logs::default();
    // Every span's creation is written, with its fields; this test's
    // thread only (a current-thread runtime: the call's task and the
    // connection's task run here).
    let _default = tracing::subscriber::set_default(written.subscriber(tracing::Level::DEBUG));

    let backend = Backend::start().await;
    let (_balancer, channel) = support::cluster("greeter", &[backend.address]);
    call(&channel).await.expect("call");

    let text = written.text();
    let fields = format!("cluster=greeter endpoint={}", backend.address);
    for span in ["lookaside_call", "lookaside_connection"] {
        assert!(
            text.lines()
                .any(|line| line.contains(&format!("{span}{{{fields}}}"))),
            "no {span} span with {fields}:\n{text}"
        );
    }
}
