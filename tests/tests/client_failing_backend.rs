//! A broken deploy: one of three backends keeps its connections up but
//! answers every call with UNAVAILABLE. `lookaside-client` (through
//! `lb-load`, following the real `lookaside`) takes it out after a few
//! failures in a row (failure accrual) instead of failing a third of the
//! calls until someone lowers its weight.

use std::time::Duration;

use anyhow::Result;
use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;

const CLUSTER: &str = "greeter";
const CALLS: u64 = 1500;
/// Calls in flight at once.
const CONCURRENCY: usize = 4;
/// The client's default run of failures that takes an endpoint out.
const RUN: u64 = 5;

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

    let options = LoadOptions::calls(CLUSTER, CALLS).concurrency(CONCURRENCY);
    let report = ClientLoad::run(cp.xds_addr(), &options).await?;
    println!(
        "{} of {CALLS} calls failed; answered per backend: {:?}",
        report.failed, report.backends
    );
    // The run, the calls already in flight when it was taken out, and
    // (if the load outlasts the first penalty of 1 s) one more on its
    // return with those in flight then. Without failure accrual: a third
    // of the calls, 500.
    let allowed = RUN + 2 * CONCURRENCY as u64 + 1;
    assert!(
        report.failed <= allowed,
        "{} calls failed (at most {allowed})",
        report.failed
    );
    assert!(report.failed >= RUN, "the broken one took its first calls");
    assert!(
        report
            .failures
            .iter()
            .all(|failure| failure.code == "Unavailable"
                && failure.message.contains("broken fails on purpose")),
        "only the broken backend's answers failed: {:?}",
        report.failures
    );
    assert_eq!(report.ok, CALLS - report.failed);
    assert_eq!(report.backends.get("broken"), None);
    Ok(())
}
