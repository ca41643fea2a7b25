//! `lookaside-client` (through `lb-load`) reports what it saw of each
//! endpoint back to the real `lookaside` over LRS, as Envoy and gRPC's xDS
//! clients do: every endpoint shows the client's calls in the admin API,
//! and an endpoint whose calls miss their deadline shows the client's
//! errors (errors its server cannot count: it answers, only too late). A
//! control plane killed and started again gets the reports again.

use std::net::SocketAddr;
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

/// (address, reporters, rps, eps) per endpoint of the cluster, once every
/// endpoint shows one reporter with calls and only `slow` shows errors (a
/// fifth of its calls or more: a loaded machine may make a fast call miss
/// its deadline now and then).
async fn reported(
    cp: &ControlPlane,
    slow: SocketAddr,
) -> Result<Check<Vec<(String, u32, f64, f64)>>> {
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
    let slow = slow.to_string();
    let as_expected = seen.len() == 3
        && seen.iter().all(|(address, reporters, rps, eps)| {
            *reporters == 1 && *rps > 0.0 && (*eps >= rps * 0.2) == (*address == slow)
        });
    Ok(if as_expected {
        Check::Done(seen)
    } else {
        Check::NotYet(format!("(address, reporters, rps, eps): {seen:?}"))
    })
}

/// Waits (20 s at most) until [`reported`] holds; `what` names the wait.
async fn until_reported(
    cp: &ControlPlane,
    slow: SocketAddr,
    what: &str,
) -> Result<Vec<(String, u32, f64, f64)>> {
    let what = format!("{what} in the admin API");
    poll::until(&what, Duration::from_secs(20), async || {
        reported(cp, slow).await
    })
    .await
}

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
    let mut cp =
        ControlPlane::start_with_args(&config.to_yaml(), &["--lrs-interval-ms", "500"]).await?;

    let mut options = LoadOptions::timed(CLUSTER, Duration::from_secs(60), 150).concurrency(64);
    options.call_timeout = CALL_TIMEOUT;
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;

    let seen = until_reported(&cp, slow.address(), "the client's LRS reports").await?;
    println!("the client's reports per endpoint (address, reporters, rps, eps): {seen:?}");

    cp.kill().await?;
    cp.restart().await?;
    let again = until_reported(&cp, slow.address(), "reports to the restarted one").await?;
    println!("after a restart of the control plane: {again:?}");
    load.stop().await?;
    Ok(())
}
