//! A control plane that cannot be reached is logged and measured, once per
//! outage, while calls go on with the last assignment: never reached at all,
//! lost, and back.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::Client;
use metrics_util::debugging::{DebugValue, Snapshotter};
use support::{Backend, Logs, call, until_within};

const CONNECTED: &str = "lookaside_client_control_plane_connected";
const FAILURES: &str = "lookaside_client_control_plane_failures_total";

/// The client metrics of one control plane, as seen so far. A debugging
/// snapshot drains counters and gauges alike, and the connected gauge moves
/// by increments (it counts the process's clients connected): both are
/// summed over the looks.
#[derive(Default)]
struct Observed {
    connected: f64,
    failures: u64,
}

impl Observed {
    fn look(&mut self, snapshotter: &Snapshotter, control_plane: &str) -> &Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if !key.labels().any(|l| l.value() == control_plane) {
                continue;
            }
            match value {
                DebugValue::Gauge(delta) if key.name() == CONNECTED => {
                    self.connected += delta.into_inner();
                }
                DebugValue::Counter(n) if key.name() == FAILURES => self.failures += n,
                _ => {}
            }
        }
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_control_plane_is_logged_and_measured_once() {
    let snapshotter = support::process_recorder();
    let logs = Logs::default();
    tracing::subscriber::set_global_default(logs.subscriber(tracing::Level::INFO))
        .expect("the only subscriber of this test binary");

    // Reached, lost, and back at the same address.
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookaside.yaml");
    let config = format!(
        "clusters:\n  - name: greeter\n    endpoints:\n      - {{ address: {}, weight: 1 }}\n",
        backend.address
    );
    std::fs::write(&path, config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let running = support::control_plane(&path, support::any_port(), stopped).await;
    let at = running.xds_address;
    let address = format!("http://{at}");
    let lb = Client::builder(address.clone())
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .load_reports(false)
        .build()
        .expect("client");
    let channel = lb.channel("greeter");
    call(&channel).await.expect("call");

    // Never answered: said once the first wait is over (at least 5 s). Made
    // after `lb`, so `lb`'s own wait is over by then too.
    let nowhere = format!("http://{}", support::closed_address());
    let lost = Client::builder(nowhere.clone())
        .first_assignment_timeout(Duration::from_millis(200))
        .load_reports(false)
        .build()
        .expect("client");
    let _waiting = lost.channel("greeter");
    let never_answered = "no answer from the control plane after";

    let mut seen = Observed::default();
    until_within("connected, measured", Duration::from_secs(5), || {
        seen.look(&snapshotter, &address).connected == 1.0
    })
    .await;
    assert_eq!(
        logs.count(&["connected to the control plane", &address]),
        1,
        "{}",
        logs.text()
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("control plane stopped")
        .expect("cleanly");
    // xds-client counts the failure, then drops the gauge (which logs).
    let unreachable = "control plane unreachable";
    until_within("unreachable, logged", Duration::from_secs(10), || {
        logs.count(&[unreachable, &address]) == 1
    })
    .await;
    let seen_now = seen.look(&snapshotter, &address);
    assert_eq!((seen_now.failures, seen_now.connected), (1, 0.0));
    call(&channel)
        .await
        .expect("calls go on with the last assignment");
    // Reconnect attempts go on (every 50-200 ms) without a line each: a
    // listener at the address takes three and closes them unanswered.
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    for _ in 0..3 {
        let (socket, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the client tries again")
            .unwrap();
        drop(socket);
    }
    drop(listener);
    assert_eq!(logs.count(&[unreachable, &address]), 1, "{}", logs.text());

    let (_stop, stopped) = tokio::sync::oneshot::channel();
    let _running = support::control_plane(&path, at, stopped).await;
    until_within("back, measured", Duration::from_secs(10), || {
        seen.look(&snapshotter, &address).connected == 1.0
    })
    .await;
    assert_eq!(seen.failures, 1, "one outage, one failure");
    until_within("back, logged", Duration::from_secs(5), || {
        logs.count(&["control plane answers again", &address]) == 1
    })
    .await;

    until_within("never answered, logged", Duration::from_secs(10), || {
        logs.count(&[never_answered, &nowhere]) == 1
    })
    .await;
    assert_eq!(
        logs.count(&[never_answered, &address]),
        0,
        "the control plane that answered is not said never to"
    );
    drop(lost);
}
