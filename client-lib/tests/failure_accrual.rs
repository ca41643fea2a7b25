//! Failure accrual: an endpoint whose connection is up but which fails
//! every call (UNAVAILABLE, INTERNAL...) is taken out after a few in a row,
//! tried again after its penalty (one failure then takes it out again, for
//! longer), and takes its share once it answers; never more endpoints out
//! than the cap, and an application's error statuses count for nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::FailureAccrual;
use lookaside_client::LbChannel;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use support::{Backend, StatusPeer, call};
use tokio::time::Instant;

/// Failures in a row that take an endpoint out here.
const RUN: u64 = 3;

fn balancer(name: &str, penalty: Duration) -> (ClusterBalancer, LbChannel) {
    let accrual = FailureAccrual {
        consecutive_failures: u32::try_from(RUN).unwrap(),
        penalty_initial: penalty,
        penalty_max: penalty * 4,
        max_ejection_percent: 50,
    };
    let settings = ConnectionSettings::default();
    ClusterBalancer::spawn_with_accrual(name, settings, Duration::from_secs(2), Some(accrual))
}

/// Makes `n` calls one after the other; how many failed.
async fn failures(channel: &LbChannel, n: usize) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        if call(channel).await.is_err() {
            failed += 1;
        }
    }
    failed
}

#[tokio::test]
async fn an_endpoint_failing_every_call_is_taken_out_after_a_run() {
    // This thread's own recorder: every task of this runtime runs here.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let healthy = [Backend::start().await, Backend::start().await];
    let failing = StatusPeer::start("14").await;
    // Longer than the test: it stays out.
    let (cluster, channel) = balancer("failing", Duration::from_secs(60));
    cluster.assign(vec![
        (healthy[0].address, 1),
        (healthy[1].address, 1),
        (failing.address, 1),
    ]);
    let early = failures(&channel, 100).await;
    assert!(
        (RUN..=RUN + 2).contains(&early),
        "{early} failed calls: the run, and at most a couple before the balancer heard"
    );
    assert_eq!(
        failing.calls(),
        early,
        "every failure was the failing one's"
    );
    assert_eq!(failures(&channel, 200).await, 0, "it is out");
    assert_eq!(failing.calls(), early);
    // One snapshot for the whole run: a snapshot drains the counters.
    let seen = snapshotter.snapshot().into_vec();
    let penalties = "lookaside_client_penalties_total";
    let failing_label = failing.address.to_string();
    assert!(support::counted_in(&seen, penalties, &failing_label));
    for backend in &healthy {
        let label = backend.address.to_string();
        assert!(!support::counted_in(&seen, penalties, &label));
    }
    let withheld = "lookaside_client_penalties_withheld_total";
    assert!(
        !support::counted_in(&seen, withheld, "failing"),
        "taken out, not withheld"
    );
    let served: Vec<u64> = healthy.iter().map(Backend::served).collect();
    assert_eq!(served.iter().sum::<u64>(), 300 - early);
    assert!(
        served.iter().all(|n| *n >= 120),
        "the others share its calls: {served:?}"
    );
}

/// Calls one after the other, a few milliseconds apart, until
/// `condition` holds after one (at most 5 s); when it first held.
async fn calls_until(channel: &LbChannel, condition: impl Fn() -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = call(channel).await;
        if condition() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "not within 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Calls until `peer` gets one; when it did.
async fn next_call_to(channel: &LbChannel, peer: &StatusPeer) -> Instant {
    let seen = peer.calls();
    calls_until(channel, || peer.calls() > seen).await
}

#[tokio::test]
async fn after_its_penalty_one_failure_takes_it_out_for_longer_until_it_answers() {
    let healthy = Backend::start().await;
    let failing = StatusPeer::start("13").await;
    let penalty = Duration::from_millis(300);
    let (cluster, channel) = balancer("back", penalty);
    cluster.assign(vec![(healthy.address, 1), (failing.address, 1)]);

    let out = calls_until(&channel, || failing.calls() >= RUN).await;
    let run = failing.calls();
    let back = next_call_to(&channel, &failing).await;
    assert!(
        back - out >= penalty.mul_f64(0.75),
        "tried again after {:?}, its penalty {penalty:?}",
        back - out
    );
    // On probation: one failure takes it out again, for twice as long.
    let second_out = Instant::now();
    assert_eq!(failures(&channel, 20).await, 0, "out again at once");
    assert_eq!(
        failing.calls(),
        run + 1,
        "one call after its return takes it out"
    );
    let back_again = next_call_to(&channel, &failing).await;
    assert!(
        back_again - second_out >= penalty.mul_f64(1.5),
        "back after {:?}: the penalty doubled",
        back_again - second_out
    );

    // It answers again: after its next penalty it stays and takes its share.
    failing.set_status("0");
    next_call_to(&channel, &failing).await;
    let before = failing.calls();
    assert_eq!(failures(&channel, 100).await, 0);
    assert_eq!(failing.calls() - before, 50, "its share of 1:1");
}

#[tokio::test]
async fn at_most_the_cap_is_out_however_many_fail() {
    // This thread's own recorder: every task of this runtime runs here.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let failing = [
        StatusPeer::start("14").await,
        StatusPeer::start("14").await,
        StatusPeer::start("14").await,
    ];
    let (cluster, channel) = balancer("all-failing", Duration::from_secs(60));
    cluster.assign(failing.iter().map(|peer| (peer.address, 1)).collect());
    assert_eq!(failures(&channel, 60).await, 60);
    let before: Vec<u64> = failing.iter().map(StatusPeer::calls).collect();
    assert_eq!(failures(&channel, 90).await, 90, "they all fail");
    let still_called = failing
        .iter()
        .zip(before)
        .filter(|(peer, before)| peer.calls() > *before)
        .count();
    assert_eq!(still_called, 2, "half of 3 rounds down to one out");
    let withheld = "lookaside_client_penalties_withheld_total";
    assert!(support::counted(&snapshotter, withheld, "all-failing"));
}

#[tokio::test]
async fn an_applications_error_statuses_take_no_endpoint_out() {
    let healthy = Backend::start().await;
    // NOT_FOUND for every call: the server is working.
    let answering = StatusPeer::start("5").await;
    let (cluster, channel) = balancer("answering", Duration::from_secs(60));
    cluster.assign(vec![(healthy.address, 1), (answering.address, 1)]);
    assert_eq!(failures(&channel, 100).await, 50);
    assert_eq!(answering.calls(), 50, "it keeps its share");
}
