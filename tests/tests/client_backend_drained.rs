//! A backend stops gracefully (SIGTERM: it sends GOAWAY and lets the calls in
//! flight finish) while `lookaside-client` sends steady load through it and
//! two others, and the control plane still lists it: not one call fails.

mod backend_stop;

use backend_stop::Stop;

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_backend_fails_no_call() -> anyhow::Result<()> {
    let outcome = backend_stop::run(Stop::Terminate).await?;
    let report = &outcome.report;
    println!(
        "{} drained in {} ms; {} calls failed",
        outcome.victim,
        outcome.exited_ms - outcome.stop_ms,
        report.failed
    );
    assert_eq!(
        report.failed,
        0,
        "calls failed around the graceful stop at {} ms: {:?}; first failures: {:?}",
        outcome.stop_ms,
        report.messages,
        report.failures.iter().take(10).collect::<Vec<_>>()
    );
    outcome.assert_routed_around("drained");
    Ok(())
}
