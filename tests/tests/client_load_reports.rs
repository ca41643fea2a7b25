//! `lookaside-client` (through `lb-load`) reports what it saw of each
//! endpoint back to the real `lookaside` over LRS, as Envoy and gRPC's xDS
//! clients do: every endpoint shows the client's calls in the admin API,
//! and an endpoint whose calls miss their deadline shows the client's
//! errors (errors its server cannot count: it answers, only too late).

use std::time::Duration;

use anyhow::Result;
use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::poll::{self, Check};

const CLUSTER: &str = "greeter";
/// Each call's deadline; the slow backend answers after 5x as long.
const CALL_TIMEOUT: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread")]
async fn lookaside_client_reports_each_endpoints_calls_and_errors_over_lrs() -> Result<()> {
    let fast = Backend::start_all(&["fast-1", "fast-2"]).await?;
    let slow = Backend::start_with_delay("slow", CALL_TIMEOUT * 5).await?;
    let endpoints: Vec<_> = fast
        .iter()
        .chain([&slow])
        .map(|backend| (backend.address(), 1))
        .collect();
    let config = Config::new().weighted(CLUSTER, endpoints);
    let cp =
        ControlPlane::start_with_args(&config.to_yaml(), &["--lrs-interval-ms", "500"]).await?;

    let mut options = LoadOptions::timed(CLUSTER, Duration::from_secs(30), 150).concurrency(64);
    options.call_timeout = CALL_TIMEOUT;
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;

    let seen = poll::until(
        "the client's LRS reports in the admin API",
        Duration::from_secs(20),
        async || {
            let Some(assignment) = cp.assignment(CLUSTER).await? else {
                return Ok(Check::NotYet("no assignment".into()));
            };
            let seen: Vec<(String, u32, f64, f64)> = assignment
                .endpoints
                .iter()
                .map(|endpoint| {
                    let load = endpoint.load.clone().unwrap_or_default();
                    (
                        endpoint.address.clone(),
                        load.client_reporters,
                        load.client_rps,
                        load.client_eps,
                    )
                })
                .collect();
            let slow_address = slow.address().to_string();
            let reported = seen.len() == 3
                && seen.iter().all(|(address, reporters, rps, eps)| {
                    // A loaded machine may make a fast call miss its
                    // deadline now and then: "errs" is a fifth or more.
                    let erring = *address == slow_address;
                    *reporters == 1 && *rps > 0.0 && (*eps >= rps * 0.2) == erring
                });
            Ok(if reported {
                Check::Done(seen)
            } else {
                Check::NotYet(format!("(address, reporters, rps, eps): {seen:?}"))
            })
        },
    )
    .await?;
    println!("the client's reports per endpoint (address, reporters, rps, eps): {seen:?}");
    load.stop().await?;
    Ok(())
}
