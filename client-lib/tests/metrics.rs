//! The client's metrics, read through a debugging recorder.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::{Backend, call};

/// Metric values by name and labels. A debugging snapshot drains counters
/// and gauges alike, so the test keeps its own running totals, and a gauge
/// its last value other than 0 (a drained gauge reads 0; the gauges this
/// test reads are never set to 0).
#[derive(Default)]
struct Totals(Vec<Entry>);

/// Name, labels, value.
type Entry = (String, Vec<(String, String)>, f64);

impl Totals {
    fn refresh(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let name = key.name().to_string();
            let existing = self
                .0
                .iter_mut()
                .find(|(n, l, _)| *n == name && *l == labels);
            let (add, is_counter) = match value {
                DebugValue::Counter(n) => (n as f64, true),
                DebugValue::Gauge(g) => (g.into_inner(), false),
                DebugValue::Histogram(h) => (h.len() as f64, true),
            };
            match existing {
                Some(entry) if is_counter => entry.2 += add,
                Some(_) if add == 0.0 => {}
                Some(entry) => entry.2 = add,
                None => self.0.push((name, labels, add)),
            }
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.iter().find_map(|(n, l, v)| {
            let matches = n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want));
            matches.then_some(*v)
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn picks_ejections_and_assignments_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

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
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            totals.refresh(&snapshotter);
            let ejected = totals.get("lookaside_client_ejections_total", &[("endpoint", &a)]);
            let usable = totals.get(
                "lookaside_client_usable_endpoints",
                &[("cluster", "greeter")],
            );
            if (ejected, usable) == (Some(1.0), Some(1.0)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("ejection counted, one endpoint usable");
}
