//! A backend is killed (SIGKILL) while `lookaside-client` sends steady load
//! through it and two others, and the control plane still lists it. Calls
//! in flight on it may fail; once the client has seen it die (the first
//! failed call ends), no call started later fails.

mod backend_stop;

use backend_stop::{CLOCK_SLACK_MS, Stop};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_backend_fails_no_call_started_after_detection() -> anyhow::Result<()> {
    let outcome = backend_stop::run(Stop::Kill).await?;
    let report = &outcome.report;
    let kill_ms = outcome.stop_ms;

    let before_kill: Vec<_> = report
        .failures
        .iter()
        .filter(|failure| failure.ended_ms + CLOCK_SLACK_MS < kill_ms)
        .collect();
    assert!(
        before_kill.is_empty(),
        "calls failed before the kill: {before_kill:?}"
    );
    // The client has detected the death when the first call on the dead
    // connection fails; with no call in flight on it at the kill, no call
    // needs to fail at all.
    let detection_ms = report.failures.iter().map(|failure| failure.ended_ms).min();
    match detection_ms {
        Some(detected) => println!(
            "detection: {} ms after the kill (kill at {kill_ms} ms, first failed call ended at \
             {detected} ms, ±{CLOCK_SLACK_MS} ms); {} calls failed before it: {:?}",
            i128::from(detected) - i128::from(kill_ms),
            report.failed,
            report.messages
        ),
        None => println!("no call failed: nothing was lost to the kill"),
    }
    let detection_ms = detection_ms.unwrap_or(kill_ms);
    let late: Vec<_> = report
        .failures
        .iter()
        .filter(|failure| failure.started_ms > detection_ms)
        .collect();
    assert!(
        late.is_empty(),
        "{} calls started after the client detected the kill ({detection_ms} ms) failed: {late:?}",
        late.len()
    );
    assert_eq!(
        u64::try_from(report.failures.len())?,
        report.failed,
        "every failure is listed"
    );

    // The load went on over the two others.
    outcome.assert_routed_around("killed");
    Ok(())
}
