//! Weights that follow load, end to end.
//!
//! With real processes: `lookaside serve` and three `orca-backend`s of equal
//! workers, one of them 2x slower, under open-loop load at 70 % of their
//! total capacity through `lookaside-client`. With the `utilization`
//! policy the slow backend's share falls to about half of each fast one's
//! and utilizations even out (max/mean <= 1.15); with `static` weights the
//! slow backend saturates while the others idle (max/mean >= 1.3).
//!
//! In process, against scripted ORCA servers: garbage reports (NaN, -1,
//! 1e9) and a frozen reporter never poison weights, and an endpoint whose
//! ORCA stream dies falls back to the mean weight once its last report
//! expires.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::Stream;
use lookaside_control_plane::load::Rejection;
use lookaside_control_plane::registry::{MAX_WEIGHT, MIN_WEIGHT};
use lookaside_control_plane::server::{self, Running, ServeConfig};
use lookaside_control_plane::weigh::{WeightReason, WeightedCluster};
use lookaside_proto::orca::data::OrcaLoadReport;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_server::{
    OpenRcaService, OpenRcaServiceServer,
};
use lookaside_tests::balance::{Balance, BalancedLoad};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::orca_backend::{OrcaBackend, OrcaBackendSpec};
use lookaside_tests::poll::{self, Check};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

const CLUSTER: &str = "greeter";
/// Calls each backend serves at once.
const WORKERS: usize = 4;
/// How long a call holds a worker: 100 calls/s per backend, 50 for the
/// slow one.
const COST: Duration = Duration::from_millis(40);
/// Calls sent, as a fraction of the backends' total capacity.
const LOAD: f64 = 0.7;
/// Every endpoint's weight in the file (all equal: the file knows nothing
/// of capacities).
const START_WEIGHT: u32 = 1;
/// Flags that make `lookaside serve` step and collect faster than its
/// defaults, so a test converges in seconds.
const FAST_SERVE: &[&str] = &[
    "--weigh-step-ms",
    "500",
    "--push-min-interval-ms",
    "500",
    "--orca-interval-ms",
    "250",
];
/// How long utilization may take to even out.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(25);
/// Samples in a row (half a second apart) that must show convergence.
const STABLE_SAMPLES: usize = 4;
/// Load before a static run is measured.
const WARM_UP: Duration = Duration::from_secs(3);

/// The slow one's share of calls over each fast one's, once converged:
/// half (its capacity ratio), within this range.
const SHARE_RATIO: std::ops::RangeInclusive<f64> = 0.3..=0.65;
/// Utilization max/mean once converged, at most.
const CONVERGED_MAX_OVER_MEAN: f64 = 1.15;
/// Utilization max/mean with static weights, at least (about 1.38 here:
/// the slow one saturated, the fast ones at 58 %).
const STATIC_MAX_OVER_MEAN: f64 = 1.3;

/// Three backends, the last 2x slower; a control plane serving them under
/// `policy`; load at [`LOAD`] of their capacity.
async fn slow_backend_setup(
    policy: &str,
) -> Result<(Vec<OrcaBackend>, ControlPlane, BalancedLoad)> {
    let spec = |name: &str, slowdown: f64| OrcaBackendSpec {
        name: name.to_owned(),
        workers: WORKERS,
        cost: COST,
        slowdown,
    };
    let backends = OrcaBackend::start_all(vec![
        spec("fast1", 1.0),
        spec("fast2", 1.0),
        spec("slow", 2.0),
    ])
    .await?;
    let config = Config::new()
        .weighted(
            CLUSTER,
            backends.iter().map(|b| (b.address(), START_WEIGHT)),
        )
        .policy(CLUSTER, policy);
    let control_plane = ControlPlane::start_with_args(&config.to_yaml(), FAST_SERVE).await?;
    let capacity: f64 = backends.iter().map(|b| b.spec().capacity()).sum();
    let load = BalancedLoad::start(
        control_plane.xds_addr(),
        CLUSTER,
        backends
            .iter()
            .map(|b| (b.name().to_owned(), b.address()))
            .collect(),
        capacity * LOAD,
    )
    .await?;
    Ok((backends, control_plane, load))
}

#[tokio::test(flavor = "multi_thread")]
async fn orca_utilization_weights_steer_calls_off_a_slow_backend() -> Result<()> {
    let started = Instant::now();
    let (_backends, control_plane, mut load) = slow_backend_setup("utilization").await?;
    let mut in_a_row = 0;
    let balance = poll::until(
        "utilization to even out and stay even",
        CONVERGE_TIMEOUT,
        async || {
            let balance = load.sample().await;
            let ratio = balance.share_ratio("slow", &["fast1", "fast2"]);
            let evenness = balance.max_over_mean();
            let converged = balance.is_full()
                && ratio.is_some_and(|r| SHARE_RATIO.contains(&r))
                && evenness.is_some_and(|e| e <= CONVERGED_MAX_OVER_MEAN);
            in_a_row = if converged { in_a_row + 1 } else { 0 };
            Ok(if in_a_row >= STABLE_SAMPLES {
                Check::Done(balance)
            } else {
                Check::NotYet(format!("{in_a_row} in a row; {balance}"))
            })
        },
    )
    .await?;
    let assignment = control_plane
        .assignment(CLUSTER)
        .await?
        .context("the control plane serves the cluster")?;
    let weights: Vec<String> = assignment
        .endpoints
        .iter()
        .map(|e| format!("{} {} ({})", e.address, e.weight, e.weight_reason))
        .collect();
    println!(
        "converged after {:.1} s of load: {balance}; weights {weights:?}",
        load.elapsed().as_secs_f64()
    );
    check_balance(&balance)?;
    ensure!(
        balance.calls.failed == 0,
        "calls failed: {:?}",
        balance.calls.last_failure
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What convergence means, said again with the numbers.
fn check_balance(balance: &Balance) -> Result<()> {
    let ratio = balance
        .share_ratio("slow", &["fast1", "fast2"])
        .context("no calls counted")?;
    ensure!(
        SHARE_RATIO.contains(&ratio),
        "the slow backend's share is {ratio:.2} of each fast one's, outside {SHARE_RATIO:?}: \
         {balance}"
    );
    let evenness = balance.max_over_mean().context("missing reports")?;
    ensure!(
        evenness <= CONVERGED_MAX_OVER_MEAN,
        "utilization max/mean {evenness:.2} > {CONVERGED_MAX_OVER_MEAN}: {balance}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn orca_static_weights_leave_a_slow_backend_saturated() -> Result<()> {
    let started = Instant::now();
    let (_backends, control_plane, mut load) = slow_backend_setup("static").await?;
    poll::until("the warm-up", WARM_UP * 3, async || {
        let balance = load.sample().await;
        Ok(if load.elapsed() >= WARM_UP {
            Check::Done(())
        } else {
            Check::NotYet(balance.to_string())
        })
    })
    .await?;
    load.reset();
    let balance = poll::until("a full span of samples", WARM_UP * 3, async || {
        let balance = load.sample().await;
        Ok(if balance.is_full() && balance.max_over_mean().is_some() {
            Check::Done(balance)
        } else {
            Check::NotYet(balance.to_string())
        })
    })
    .await?;
    println!("static weights: {balance}");
    let evenness = balance.max_over_mean().context("missing reports")?;
    ensure!(
        evenness >= STATIC_MAX_OVER_MEAN,
        "utilization max/mean {evenness:.2} < {STATIC_MAX_OVER_MEAN} with static weights: \
         {balance}"
    );
    let assignment = control_plane
        .assignment(CLUSTER)
        .await?
        .context("the control plane serves the cluster")?;
    ensure!(
        assignment
            .endpoints
            .iter()
            .all(|e| e.weight == START_WEIGHT && e.weight_reason == "configured"),
        "static weights moved: {assignment:?}"
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// How often a scripted ORCA server sends a report.
const SCRIPT_EVERY: Duration = Duration::from_millis(20);
/// Report expiry of the in-process control plane.
const EXPIRY: Duration = Duration::from_secs(1);
/// Control step of the in-process control plane.
const STEP: Duration = Duration::from_millis(100);
/// A stale endpoint's weight counts as the mean within this fraction
/// (pushes glide and skip moves under the 5 % threshold).
const MEAN_TOLERANCE: f64 = 0.08;

/// What a scripted ORCA server reports.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// This utilization at 100 calls/s, with a little jitter so that it
    /// never looks frozen.
    Steady(f64),
    /// NaN, -1 and 1e9 in turn.
    Garbage,
    /// The same busy report again and again.
    Frozen(f64),
}

impl Script {
    fn report(self, number: u64) -> OrcaLoadReport {
        let (utilization, rps) = match self {
            Script::Steady(utilization) => (
                utilization + 0.001 * (number % 5) as f64,
                100.0 + (number % 5) as f64,
            ),
            Script::Garbage => ([f64::NAN, -1.0, 1e9][(number % 3) as usize], 100.0),
            Script::Frozen(utilization) => (utilization, 100.0),
        };
        OrcaLoadReport {
            cpu_utilization: utilization,
            rps_fractional: rps,
            ..OrcaLoadReport::default()
        }
    }
}

type Reports = Pin<Box<dyn Stream<Item = Result<OrcaLoadReport, Status>> + Send>>;

/// An ORCA server that sends its script every [`SCRIPT_EVERY`] until it
/// is killed: then its streams end with UNAVAILABLE and new ones are
/// refused.
struct ScriptedOrca {
    script: Script,
    dead: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl OpenRcaService for ScriptedOrca {
    type StreamCoreMetricsStream = Reports;

    async fn stream_core_metrics(
        &self,
        _request: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<Reports>, Status> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(Status::unavailable("the ORCA reporter is dead"));
        }
        let script = self.script;
        let dead = self.dead.clone();
        let reports = futures::stream::unfold((0u64, false), move |(number, ended)| {
            let dead = dead.clone();
            async move {
                if ended {
                    return None;
                }
                tokio::time::sleep(SCRIPT_EVERY).await;
                if dead.load(Ordering::Relaxed) {
                    let error = Status::unavailable("the ORCA reporter died");
                    return Some((Err(error), (number, true)));
                }
                Some((Ok(script.report(number)), (number + 1, false)))
            }
        });
        Ok(Response::new(Box::pin(reports)))
    }
}

/// A running scripted ORCA server.
struct ScriptedServer {
    address: SocketAddr,
    dead: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(script: Script) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let dead = Arc::new(AtomicBool::new(false));
        let service = OpenRcaServiceServer::new(ScriptedOrca {
            script,
            dead: dead.clone(),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok(Self {
            address,
            dead,
            task,
        })
    }

    /// Its ORCA streams end and new ones are refused from now on.
    fn kill(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An in-process control plane over `servers` (the `utilization` policy,
/// stepping every [`STEP`], reports expiring after [`EXPIRY`]).
struct InProcess {
    running: Running,
    stop: Option<oneshot::Sender<()>>,
    _folder: tempfile::TempDir,
}

impl InProcess {
    async fn start(servers: &[&ScriptedServer]) -> Result<Self> {
        let folder = tempfile::tempdir()?;
        let path = folder.path().join("lookaside.yaml");
        let config =
            Config::new().weighted(CLUSTER, servers.iter().map(|s| (s.address, START_WEIGHT)));
        std::fs::write(&path, config.to_yaml())?;
        let mut serve = ServeConfig::local(path);
        serve.weigh.step = STEP;
        serve.weigh.push_min_interval = STEP;
        serve.weigh.controller.expiry = EXPIRY;
        serve.weigh.controller.slow_start_steps = 0;
        serve.load.stream.interval = SCRIPT_EVERY;
        let (stop, stopped) = oneshot::channel::<()>();
        let running = server::start(serve, async move {
            let _ = stopped.await;
        })
        .await?;
        Ok(Self {
            running,
            stop: Some(stop),
            _folder: folder,
        })
    }

    /// The published weights of the cluster.
    fn cluster(&self) -> Result<WeightedCluster> {
        self.running
            .weighted
            .borrow()
            .clusters
            .get(CLUSTER)
            .map(|cluster| WeightedCluster::clone(cluster))
            .context("no weights published for the cluster")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Weight and reason of `address` in `cluster`.
fn weight_of(cluster: &WeightedCluster, address: SocketAddr) -> Result<(u32, WeightReason)> {
    cluster
        .endpoints
        .iter()
        .find(|e| e.address == address)
        .map(|e| (e.weight, e.reason))
        .with_context(|| format!("{address} is not in {cluster:?}"))
}

/// The mean weight of the endpoints of `cluster` that have fresh load (the
/// weight a stale endpoint falls back to).
fn fed_mean(cluster: &WeightedCluster) -> Result<f64> {
    let fed: Vec<f64> = cluster
        .endpoints
        .iter()
        .filter(|e| {
            matches!(
                e.reason,
                WeightReason::Feedback | WeightReason::Bounded | WeightReason::SlowStart
            )
        })
        .map(|e| f64::from(e.weight))
        .collect();
    ensure!(
        !fed.is_empty(),
        "no endpoint has fresh load: {}",
        describe(cluster)
    );
    Ok(fed.iter().sum::<f64>() / fed.len() as f64)
}

/// Every weight in range and the spread within the policy's bound (10,
/// with rounding).
fn check_sane(cluster: &WeightedCluster) -> Result<()> {
    let weights: Vec<u32> = cluster.endpoints.iter().map(|e| e.weight).collect();
    let (Some(&min), Some(&max)) = (weights.iter().min(), weights.iter().max()) else {
        anyhow::bail!("no endpoints: {cluster:?}");
    };
    ensure!(
        min >= MIN_WEIGHT && max <= MAX_WEIGHT && f64::from(max) <= 11.0 * f64::from(min),
        "insane weights {weights:?}"
    );
    Ok(())
}

/// A one-line view of the weights, for messages.
fn describe(cluster: &WeightedCluster) -> String {
    let endpoints: Vec<String> = cluster
        .endpoints
        .iter()
        .map(|e| format!("{} {} ({})", e.address, e.weight, e.reason.as_str()))
        .collect();
    endpoints.join(", ")
}

#[tokio::test(flavor = "multi_thread")]
async fn orca_bad_reports_never_poison_weights() -> Result<()> {
    let good1 = ScriptedServer::start(Script::Steady(0.5)).await?;
    let good2 = ScriptedServer::start(Script::Steady(0.5)).await?;
    let garbage = ScriptedServer::start(Script::Garbage).await?;
    let frozen = ScriptedServer::start(Script::Frozen(0.9)).await?;
    let control_plane = InProcess::start(&[&good1, &good2, &garbage, &frozen]).await?;
    let settled = poll::until(
        "bad reporters to settle at the mean weight",
        Duration::from_secs(10),
        async || {
            let cluster = control_plane.cluster()?;
            if let Err(error) = check_sane(&cluster) {
                return Ok(Check::Never(format!("{error:#}: {}", describe(&cluster))));
            }
            let Ok(mean) = fed_mean(&cluster) else {
                return Ok(Check::NotYet(describe(&cluster)));
            };
            let (garbage_weight, garbage_reason) = weight_of(&cluster, garbage.address)?;
            // Never a good report: never far from the mean (weights glide
            // towards it, 10 % a push).
            if (f64::from(garbage_weight) / mean - 1.0).abs() > 0.25 {
                return Ok(Check::Never(format!(
                    "garbage moved its weight: {}",
                    describe(&cluster)
                )));
            }
            let (frozen_weight, frozen_reason) = weight_of(&cluster, frozen.address)?;
            let at_mean = |weight: u32| (f64::from(weight) / mean - 1.0).abs() <= MEAN_TOLERANCE;
            let loads = &control_plane.running.loads;
            let rejected_garbage = loads.get(&garbage.address).is_some_and(|load| {
                load.rejected >= 3
                    && load.accepted == 0
                    && matches!(
                        load.last_rejection,
                        Some(Rejection::NotFinite | Rejection::Negative | Rejection::Absurd)
                    )
            });
            let rejected_frozen = loads
                .get(&frozen.address)
                .is_some_and(|load| load.last_rejection == Some(Rejection::Frozen));
            Ok(
                if garbage_reason == WeightReason::Stale
                    && frozen_reason == WeightReason::Stale
                    && at_mean(garbage_weight)
                    && at_mean(frozen_weight)
                    && rejected_garbage
                    && rejected_frozen
                {
                    Check::Done(describe(&cluster))
                } else {
                    Check::NotYet(format!(
                        "{}; garbage {:?}; frozen {:?}",
                        describe(&cluster),
                        loads.get(&garbage.address),
                        loads.get(&frozen.address)
                    ))
                },
            )
        },
    )
    .await?;
    println!("after garbage and a frozen reporter: {settled}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn orca_dead_stream_falls_back_to_the_mean_weight_after_expiry() -> Result<()> {
    let hot = ScriptedServer::start(Script::Steady(0.9)).await?;
    let cool1 = ScriptedServer::start(Script::Steady(0.3)).await?;
    let cool2 = ScriptedServer::start(Script::Steady(0.3)).await?;
    let control_plane = InProcess::start(&[&hot, &cool1, &cool2]).await?;
    let before = poll::until(
        "the hot endpoint's weight to fall",
        Duration::from_secs(10),
        async || {
            let cluster = control_plane.cluster()?;
            let (weight, reason) = weight_of(&cluster, hot.address)?;
            let cool = [cool1.address, cool2.address];
            let mean = (f64::from(weight_of(&cluster, cool[0])?.0)
                + f64::from(weight_of(&cluster, cool[1])?.0))
                / 2.0;
            Ok(
                if f64::from(weight) < 0.8 * mean
                    && matches!(reason, WeightReason::Feedback | WeightReason::Bounded)
                {
                    Check::Done(describe(&cluster))
                } else {
                    Check::NotYet(describe(&cluster))
                },
            )
        },
    )
    .await?;
    hot.kill();
    let killed = Instant::now();
    let stale_after = poll::until(
        "the hot endpoint to go stale",
        EXPIRY + Duration::from_secs(5),
        async || {
            let cluster = control_plane.cluster()?;
            check_sane(&cluster)?;
            Ok(match weight_of(&cluster, hot.address)? {
                (_, WeightReason::Stale) => Check::Done(killed.elapsed()),
                _ => Check::NotYet(describe(&cluster)),
            })
        },
    )
    .await?;
    let after = poll::until(
        "the stale endpoint to reach the mean weight",
        Duration::from_secs(10),
        async || {
            let cluster = control_plane.cluster()?;
            check_sane(&cluster)?;
            let (weight, reason) = weight_of(&cluster, hot.address)?;
            let mean = fed_mean(&cluster)?;
            Ok(
                if reason == WeightReason::Stale
                    && (f64::from(weight) / mean - 1.0).abs() <= MEAN_TOLERANCE
                {
                    Check::Done(describe(&cluster))
                } else {
                    Check::NotYet(describe(&cluster))
                },
            )
        },
    )
    .await?;
    println!(
        "before: {before}\nstale {} ms after the stream died (expiry {} ms)\nafter: {after}",
        stale_after.as_millis(),
        EXPIRY.as_millis()
    );
    // The last report arrived at most one script interval before the kill.
    ensure!(
        stale_after + SCRIPT_EVERY >= EXPIRY,
        "went stale {stale_after:?} after the stream died, before the {EXPIRY:?} expiry"
    );
    let loads = control_plane
        .running
        .loads
        .get(&hot.address)
        .context("the hot endpoint is watched")?;
    ensure!(!loads.connected, "its stream still counts as up: {loads:?}");
    Ok(())
}
