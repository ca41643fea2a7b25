//! A broken deploy: one of three backends keeps its connections up but
//! answers every call with UNAVAILABLE. `lookaside-client` (through
//! `lb-load`, following the real `lookaside`) takes it out after a few
//! failures in a row (failure accrual) instead of failing a third of the
//! calls until someone lowers its weight, and tries it again after its
//! penalty (one failure then takes it out for longer).

use std::time::Duration;

use anyhow::Result;
use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;

const CLUSTER: &str = "greeter";
/// Calls per second, for 2 s: paced, so that the calls made while the
/// client's balancer takes the broken one out are few whatever the load of
/// the machine (2 ms apart, against microseconds).
const RATE: u32 = 500;

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_failing_every_call_is_taken_out_after_a_few() -> Result<()> {
    let healthy = Backend::start_all(&["healthy-1", "healthy-2"]).await?;
    let broken = Backend::start_with_args(
        "broken",
        Duration::ZERO,
        &["--fail-with".into(), "14".into()],
    )
    .await?;
    let endpoints: Vec<_> = healthy
        .iter()
        .chain([&broken])
        .map(|backend| (backend.address(), 1))
        .collect();
    let cp = ControlPlane::start(&Config::new().weighted(CLUSTER, endpoints)).await?;

    // The client's default run of failures that takes an endpoint out.
    let run = u64::from(lookaside_client::FailureAccrual::default().consecutive_failures);
    let options = LoadOptions::timed(CLUSTER, Duration::from_secs(2), RATE).concurrency(4);
    let report = ClientLoad::run(cp.xds_addr(), &options).await?;
    println!(
        "{} of {} calls failed; answered per backend: {:?}",
        report.failed, report.started, report.backends
    );
    // The run, and one on its return after the first penalty (1 s, give or
    // take a fifth), each with a call or two in flight at most. Without
    // failure accrual: a third of the calls, about 330.
    let allowed = run + 4;
    assert!(
        report.failed <= allowed,
        "{} calls failed (at most {allowed})",
        report.failed
    );
    assert!(report.failed >= run, "the broken one took its first calls");
    assert!(
        report
            .failures
            .iter()
            .all(|failure| failure.code == "Unavailable"
                && failure.message.contains("broken fails on purpose")),
        "only the broken backend's answers failed: {:?}",
        report.failures
    );
    assert!(report.started >= 500, "{} calls made", report.started);
    // The healthy two took the broken one's share between them.
    let shares: Vec<u64> = ["healthy-1", "healthy-2"]
        .iter()
        .map(|name| report.backends.get(*name).copied().unwrap_or(0))
        .collect();
    assert!(
        shares.iter().all(|n| *n >= report.ok * 2 / 5),
        "answered: {:?} of {}",
        report.backends,
        report.ok
    );
    Ok(())
}
