//! A call runs in a `lookaside_call` span and a connection's task in a
//! `lookaside_connection` span, both with the cluster and the endpoint, for
//! any subscriber that listens at DEBUG (they are not built otherwise).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use support::{Backend, call};
use tracing_subscriber::fmt::format::FmtSpan;

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn calls_and_connections_are_traced_with_cluster_and_endpoint() {
    let written = Written::default();
    let writer = written.clone();
    // Every span's creation is written, with its fields.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::NEW)
        .finish();
    // This test's thread only (a current-thread runtime: the call's task
    // and the connection's task run here).
    let _default = tracing::subscriber::set_default(subscriber);

    let backend = Backend::start().await;
    let (balancer, channel) = ClusterBalancer::spawn(
        "greeter",
        ConnectionSettings::default(),
        Duration::from_secs(1),
    );
    balancer.assign(vec![(backend.address, 1)]);
    call(&channel).await.expect("call");

    let text = String::from_utf8_lossy(&written.0.lock().unwrap()).into_owned();
    let fields = format!("cluster=greeter endpoint={}", backend.address);
    for span in ["lookaside_call", "lookaside_connection"] {
        assert!(
            text.lines()
                .any(|line| line.contains(&format!("{span}{{{fields}}}"))),
            "no {span} span with {fields}:\n{text}"
        );
    }
}
