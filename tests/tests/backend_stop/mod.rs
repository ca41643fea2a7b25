//! The scenario both backend-stop tests run: `lookaside-client` (through
//! `lb-load`) under steady load (8 calls in flight at most, 1000 calls/s,
//! each call taking 5 ms on the backend, so calls are in flight when it
//! stops) over three backends of weight 1, and one of them stops mid-run:
//! killed (SIGKILL) or drained (SIGTERM: GOAWAY, calls in flight finish).
//! The control plane keeps listing it, as before Kubernetes updates the
//! EndpointSlice: the client alone must route around it.

// Each test binary uses one way to stop and not every field.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions, LoadReport};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::split::Split;

const CLUSTER: &str = "greeter";
/// How long each call takes on the backend.
const CALL_DELAY: Duration = Duration::from_millis(5);
const LOAD_DURATION: Duration = Duration::from_secs(4);
const RATE: u32 = 1000;
const CONCURRENCY: usize = 8;
/// How far apart the test's and `lb-load`'s clocks may be when comparing a
/// time the test took with one `lb-load` reported (millisecond rounding on
/// both sides, wall clock against monotonic clock).
pub(crate) const CLOCK_SLACK_MS: u64 = 20;

/// How the backend stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGKILL.
    Kill,
    /// SIGTERM, waiting for it to exit.
    Terminate,
}

/// What happened.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The name of the backend that stopped.
    pub(crate) victim: String,
    /// The whole run.
    pub(crate) report: LoadReport,
    /// When the signal was sent, on the load's time line.
    pub(crate) stop_ms: u64,
    /// When the backend had exited, on the load's time line.
    pub(crate) exited_ms: u64,
    /// Successful calls per backend from the first progress line after the
    /// backend exited to the end.
    pub(crate) after: Split,
}

/// Runs the scenario, stopping the second backend as `stop` says.
pub(crate) async fn run(stop: Stop) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut backends = Backend::start_all_with_delay(&["b1", "b2", "b3"], CALL_DELAY).await?;
    let cp = ControlPlane::start(
        &Config::new().weighted(CLUSTER, backends.iter().map(|b| (b.address(), 1))),
    )
    .await?;
    let options = LoadOptions::timed(CLUSTER, LOAD_DURATION, RATE).concurrency(CONCURRENCY);
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;
    load.wait_for(
        "steady load on all three backends",
        Duration::from_secs(5),
        |progress| progress.ok >= 500 && progress.backends.len() == 3,
    )
    .await?;

    let victim = &mut backends[1];
    let stop_ms = load.now_ms();
    match stop {
        Stop::Kill => victim.kill().await?,
        Stop::Terminate => {
            victim.terminate().await?;
        }
    }
    let exited_ms = load.now_ms();
    println!(
        "{} {:?} at {stop_ms} ms; exited at {exited_ms} ms ({:?} since the test started)",
        victim.name(),
        stop,
        started.elapsed()
    );
    let report = load.finish().await?;
    let first_after_exit = load
        .progress()
        .into_iter()
        .find(|line| line.elapsed_ms >= exited_ms);
    let after = match &first_after_exit {
        Some(line) => {
            let mut split = Split::new();
            for (backend, count) in &report.backends {
                let before = line.backends.get(backend).copied().unwrap_or(0);
                split.add(backend, count.saturating_sub(before));
            }
            split
        }
        None => Split::new(),
    };
    println!(
        "load: {} ok, {} failed in {} ms; split {}; after the exit: {after}; failures by \
         message: {:?}",
        report.ok,
        report.failed,
        report.elapsed_ms,
        report.split(),
        report.messages
    );
    Ok(Outcome {
        victim: victim.name().to_owned(),
        report,
        stop_ms,
        exited_ms,
        after,
    })
}

impl Outcome {
    /// After the stop the load goes on over the other backends, and the
    /// stopped one answers no call (`what`: "killed" or "drained").
    pub(crate) fn assert_routed_around(&self, what: &str) {
        let answered = self.after.counts().get(&self.victim).copied().unwrap_or(0);
        assert_eq!(
            answered, 0,
            "the {what} backend answered afterwards: {}",
            self.after
        );
        assert!(
            self.after.total() >= 500,
            "too few calls after the backend was {what}: {}",
            self.after
        );
    }
}
