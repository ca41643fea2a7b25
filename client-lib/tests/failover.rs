//! Priority tiers: when the serving tier's last endpoint goes away under
//! load, calls move to the next tier without one failing; a lower tier's
//! endpoint that goes away while the first tier serves is ejected then,
//! not found dead at the failover, and one that comes back is connected
//! (and so watched) again though no call goes there.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use support::{Backend, call, until};

fn settings() -> ConnectionSettings {
    ConnectionSettings {
        // The test watches one ejection, not the recovery after it.
        probe_backoff_initial: Duration::from_secs(30),
        ..ConnectionSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_fails_when_the_serving_tier_goes_away_under_load() {
    for round in 0..5 {
        let mut first = Backend::start().await;
        let backup = Backend::start().await;
        let (cluster, channel) =
            ClusterBalancer::spawn("tiers", settings(), Duration::from_secs(2));
        cluster.assign_with_failover(vec![vec![(first.address, 1)], vec![(backup.address, 1)]]);
        call(&channel).await.expect("the first tier serves");
        until("the backup's connection is up", || {
            backup.open_connections() == 1
        })
        .await;

        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let (channel, stop, failed) = (channel.clone(), stop.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(status) = call(&channel).await {
                            failed.lock().unwrap().push(status);
                        }
                    }
                })
            })
            .collect();
        until("calls reach the first tier", || first.served() > 100).await;
        // GOAWAY, and the port closes: the next connection is refused.
        first.drain();
        until("calls reach the backup", || backup.served() > 200).await;
        stop.store(true, Ordering::Relaxed);
        for caller in callers {
            caller.await.unwrap();
        }
        let failed = failed.lock().unwrap();
        assert!(failed.is_empty(), "round {round}: calls failed: {failed:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_backup_that_goes_away_is_ejected_while_the_first_tier_serves() {
    // This thread's own recorder: every task of this runtime runs here.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let first = Backend::start().await;
    let mut backup = Backend::start().await;
    let (cluster, channel) = ClusterBalancer::spawn("backup", settings(), Duration::from_secs(2));
    cluster.assign_with_failover(vec![vec![(first.address, 1)], vec![(backup.address, 1)]]);
    call(&channel).await.expect("the first tier serves");
    until("the backup's connection is up", || {
        backup.open_connections() == 1
    })
    .await;
    // GOAWAY, and the port closes: no call ever goes there.
    backup.drain();
    until_ejected(&snapshotter, backup.address).await;
    call(&channel).await.expect("the first tier still serves");
    assert_eq!(backup.served(), 0);
}

#[tokio::test]
async fn a_backup_that_comes_back_is_connected_again_though_no_call_goes_there() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let first = Backend::start().await;
    // A port nobody listens on yet: the backup is ejected at once.
    let port = support::closed_address();
    let settings = ConnectionSettings {
        probe_backoff_initial: Duration::from_millis(20),
        probe_backoff_max: Duration::from_millis(100),
        ..ConnectionSettings::default()
    };
    let (cluster, channel) = ClusterBalancer::spawn("back", settings, Duration::from_secs(2));
    cluster.assign_with_failover(vec![vec![(first.address, 1)], vec![(port, 1)]]);
    call(&channel).await.expect("the first tier serves");
    until_ejected(&snapshotter, port).await;
    let backup = Backend::start_at(port).await;
    let endpoint = port.to_string();
    let mut recovered = false;
    until("the recovered backup is connected", || {
        recovered |= support::counted(&snapshotter, "lookaside_client_recoveries_total", &endpoint);
        recovered && backup.open_connections() == 1
    })
    .await;
    assert_eq!(
        backup.accepted(),
        1,
        "the probe's connection is the one kept"
    );
    call(&channel).await.expect("the first tier still serves");
    assert_eq!(backup.served(), 0);
}

/// Polls the ejection counter of `endpoint` until it counts one.
async fn until_ejected(snapshotter: &Snapshotter, endpoint: std::net::SocketAddr) {
    let endpoint = endpoint.to_string();
    let mut ejected = false;
    until("the endpoint is ejected", || {
        // A snapshot drains counters: remember what was seen.
        ejected |= support::counted(snapshotter, "lookaside_client_ejections_total", &endpoint);
        ejected
    })
    .await;
}
