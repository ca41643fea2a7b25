//! lookaside-client against a real (in-process) Lookaside control plane:
//! weights are followed, edits are followed, and a control plane that goes
//! away does not stop calls.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::Client;
use support::{Backend, call};

fn config(backends: &[Backend], weights: &[u32]) -> String {
    let mut text = String::from("clusters:\n  - name: greeter\n    endpoints:\n");
    for (backend, weight) in backends.iter().zip(weights) {
        text.push_str(&format!(
            "      - {{ address: {}, weight: {weight} }}\n",
            backend.address
        ));
    }
    text
}

fn served(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(Backend::served).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_weights_and_edits_and_outlives_the_control_plane() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, config(&backends, &[1, 2, 7])).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let running = support::control_plane(&path, support::any_port(), stopped).await;

    let lb = Client::builder(format!("http://{}", running.xds_address))
        .node_id("client-lib-test")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .expect("client");
    let channel = lb.channel("greeter");
    for _ in 0..1000 {
        call(&channel).await.expect("call");
    }
    assert_eq!(served(&backends), vec![100, 200, 700]);

    // An edit is followed within 2 s.
    std::fs::write(&path, config(&backends, &[7, 2, 1])).unwrap();
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let before = served(&backends);
            for _ in 0..10 {
                call(&channel).await.expect("call");
            }
            let after = served(&backends);
            let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            if delta == vec![7, 2, 1] {
                break;
            }
        }
    })
    .await
    .expect("edit followed within 2 s");

    // The control plane goes away: calls keep flowing on the last assignment.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("control plane stopped")
        .expect("cleanly");
    let before = served(&backends);
    for _ in 0..500 {
        call(&channel)
            .await
            .expect("calls survive the control plane");
    }
    let delta: Vec<u64> = served(&backends)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(delta, vec![350, 100, 50]);
}

#[tokio::test]
async fn a_fallback_list_serves_before_any_assignment() {
    let backend = Backend::start().await;
    // Nothing listens at this control-plane address.
    let lb = Client::builder("http://127.0.0.1:9")
        .fallback("greeter", vec![(backend.address, 1)])
        .build()
        .expect("client");
    call(&lb.channel("greeter")).await.expect("fallback serves");
    assert_eq!(backend.served(), 1);
}

#[tokio::test]
async fn a_control_plane_address_without_scheme_is_refused() {
    let error = Client::builder("127.0.0.1:18000")
        .build()
        .expect_err("refused");
    assert!(error.to_string().contains("http://host:port"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_without_a_cluster_name_follows_no_cluster() {
    let backends = [Backend::start().await];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, config(&backends, &[1])).unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel();
    let running = support::control_plane(&path, support::any_port(), stopped).await;
    let lb = Client::builder(format!("http://{}", running.xds_address))
        .first_assignment_timeout(Duration::from_secs(2))
        .load_reports(false)
        .build()
        .expect("client");
    // "" would be a wildcard watch in xDS: every cluster's assignment (the
    // first subscription of the stream, so the control plane answers it
    // with every cluster it has).
    let failed = call(&lb.channel(""))
        .await
        .expect_err("no cluster, no endpoint");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert_eq!(backends[0].served(), 0, "greeter's endpoint took the call");
    call(&lb.channel("greeter"))
        .await
        .expect("a named cluster is followed");
    assert_eq!(backends[0].served(), 1);
}

#[tokio::test]
async fn connection_settings_that_cannot_work_are_refused_and_long_waits_are_fine() {
    use lookaside_client::endpoint::ConnectionSettings;
    type Zeroed = fn(&mut ConnectionSettings);
    let cases: [(&str, Zeroed); 5] = [
        ("connect_timeout", |s| s.connect_timeout = Duration::ZERO),
        ("keepalive_interval", |s| {
            s.keepalive_interval = Duration::ZERO
        }),
        ("keepalive_timeout", |s| {
            s.keepalive_timeout = Duration::ZERO
        }),
        ("probe_backoff_initial", |s| {
            s.probe_backoff_initial = Duration::ZERO;
        }),
        ("reconnect_backoff_initial", |s| {
            s.reconnect_backoff_initial = Duration::ZERO;
        }),
    ];
    for (field, zeroed) in cases {
        let mut settings = ConnectionSettings::default();
        zeroed(&mut settings);
        let error = Client::builder("http://127.0.0.1:9")
            .connection_settings(settings)
            .build()
            .expect_err("refused");
        assert!(error.to_string().contains(field), "{field}: {error}");
    }

    // "No limit" written as the longest duration: a call waits for the
    // first assignment (here, none comes) instead of panicking.
    let lb = Client::builder("http://127.0.0.1:9")
        .first_assignment_timeout(Duration::MAX)
        .load_reports(false)
        .build()
        .expect("client");
    let waited =
        tokio::time::timeout(Duration::from_millis(200), call(&lb.channel("greeter"))).await;
    assert!(waited.is_err(), "the call waits: {waited:?}");
}
