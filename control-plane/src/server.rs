//! Wires the stages together and serves them: one gRPC port for ADS, the
//! admin API, health and reflection; one HTTP port for metrics.
//!
//! Owns: start-up order and the listeners.
//! Must never: hold protocol or policy logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::server::TcpIncoming;

use crate::admin::{AdminService, CsdsService};
use crate::load::{self, CollectorConfig, LoadTable, LrsService};
use crate::registry::RegistryWriter;
use crate::snapshot::{self, Snapshot};
use crate::sources::SourceStatus;
use crate::sources::file::{ConfigError, FileSource};
use crate::sources::kube::{KubeOptions, KubeSource};
use crate::telemetry::{Metrics, serve_metrics};
use crate::tls::{Reloading, ServerTls, TlsError, TlsFiles, TlsIncoming, reloading};
use crate::weigh::{self, WeighConfig, Weighted};
use crate::xds::{AdsServer, Clients, Limits};

/// The ADS service name, as the readiness probe asks for it.
pub const ADS_SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The config file.
    pub config: PathBuf,
    /// How often it is checked for edits.
    pub config_poll: Duration,
    /// gRPC listener address.
    pub xds_listen: SocketAddr,
    /// Metrics listener address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// ADS limits.
    pub limits: Limits,
    /// After shutdown is asked for, how long open streams may take to end
    /// before the server stops anyway.
    pub shutdown_grace: Duration,
    /// How weights are computed and pushed.
    pub weigh: WeighConfig,
    /// How load reports are collected.
    pub load: CollectorConfig,
    /// A separate listener for the admin API, CSDS, reflection and health;
    /// `None` serves them on the xDS listener.
    pub admin_listen: Option<SocketAddr>,
    /// TLS for the gRPC listeners (xDS, LRS, admin, health, reflection);
    /// `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files (listeners' and ORCA's) are re-read.
    pub tls_reload: Duration,
}

impl ServeConfig {
    /// Defaults for serving `config` on an ephemeral local port, without
    /// metrics: what tests and the demo start from.
    pub fn local(config: PathBuf) -> Self {
        Self {
            config,
            config_poll: Duration::from_millis(200),
            xds_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(5),
            weigh: WeighConfig::default(),
            load: CollectorConfig::default(),
            admin_listen: None,
            tls: None,
            tls_reload: Duration::from_secs(5),
        }
    }
}

/// Which discovery sources run. `start` runs the file alone.
#[derive(Clone)]
pub struct Discovery {
    /// Serve the YAML file `ServeConfig::config` (ignored when `false`).
    pub file: bool,
    /// Watch the EndpointSlices of opted-in Kubernetes Services.
    pub kube: Option<KubeOptions>,
    /// The Kubernetes client to watch with; `None`: the pod's service
    /// account, else the kubeconfig.
    pub kube_client: Option<kube::Client>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            file: true,
            kube: None,
            kube_client: None,
        }
    }
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("file", &self.file)
            .field("kube", &self.kube)
            .field("kube_client", &self.kube_client.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The initial config is unusable.
    #[error("initial config rejected")]
    Config(#[from] ConfigError),
    /// No Kubernetes client could be configured (neither in-cluster
    /// service account nor kubeconfig).
    #[error("no Kubernetes client configuration")]
    Kube(#[from] kube::Error),
    /// The reflection descriptors are inconsistent (a build defect).
    #[error("server reflection descriptors")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS files do not make a usable configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not bind.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running control plane.
#[derive(Debug)]
pub struct Running {
    /// Where ADS, LRS and health listen (and admin, unless separate).
    pub xds_address: SocketAddr,
    /// Where the admin API, CSDS and reflection listen.
    pub admin_address: SocketAddr,
    /// Where metrics listen.
    pub metrics_address: Option<SocketAddr>,
    /// The latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Connected clients.
    pub clients: Clients,
    /// Source health.
    pub sources: SourceStatus,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The published weights.
    pub weighted: watch::Receiver<Arc<Weighted>>,
    /// Every watched endpoint's latest load.
    pub loads: LoadTable,
    server: tokio::task::JoinHandle<Result<(), RunError>>,
}

/// Why the control plane stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    /// A listener's task panicked or was cancelled: not a clean stop.
    #[error("a listener stopped abnormally: {0}")]
    Listener(String),
}

impl Running {
    /// Waits until the gRPC server stops: `Ok` only for a clean shutdown.
    pub async fn wait(self) -> Result<(), RunError> {
        match self.server.await {
            Ok(result) => result,
            Err(join) => Err(RunError::Listener(join.to_string())),
        }
    }
}

/// Starts every stage and both listeners with the file source alone.
/// Returns once they listen; the server stops when `shutdown` completes.
pub async fn start(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    start_with(config, Discovery::default(), shutdown).await
}

/// Like `start`, with the discovery sources `discovery` selects.
pub async fn start_with(
    config: ServeConfig,
    discovery: Discovery,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let sources = SourceStatus::default();

    // sources -> registry
    let mut registry = RegistryWriter::new();
    let (updates_tx, updates_rx) = mpsc::channel(16);
    if discovery.file {
        let mut file = FileSource::new(
            config.config.clone(),
            config.config_poll,
            sources.clone(),
            metrics.clone(),
        );
        let initial = file.load()?;
        registry.replace(file.id(), initial);
        tokio::spawn(file.run(updates_tx.clone()));
    }
    if let Some(options) = discovery.kube {
        // In-cluster service account, else the kubeconfig. The first list
        // arrives asynchronously; its errors show in the source status.
        let client = match discovery.kube_client {
            Some(client) => client,
            None => kube::Client::try_default().await?,
        };
        let kube = KubeSource::new(client, options, sources.clone(), metrics.clone());
        // ADS answers wait for its first complete list.
        registry.expect(kube.id());
        tracing::info!(source = %kube.id(), "watching Kubernetes EndpointSlices");
        tokio::spawn(kube.run(updates_tx.clone()));
    }
    drop(updates_tx);
    let registry_rx = registry.subscribe();
    tokio::spawn(registry.run(updates_rx));

    // registry -> load -> weigh -> snapshot
    let loads = LoadTable::with_metrics(metrics.clone());
    let mut load_config = config.load.clone();
    if let Some(files) = &load_config.tls {
        load_config.stream.tls =
            Some(reloading(files.clone(), config.tls_reload, metrics.clone()).await?);
        tracing::info!("ORCA streams use TLS");
    }
    let collector = tokio::spawn(load::run(
        registry_rx.clone(),
        loads.clone(),
        load_config,
        metrics.clone(),
    ));
    let registry_for_lrs = registry_rx.clone();
    let weighted = weigh::run(
        registry_rx,
        loads.clone(),
        config.weigh.clone(),
        metrics.clone(),
    );
    let snapshots = snapshot::run(weighted.clone());
    spawn_snapshot_counter(snapshots.clone(), metrics.clone());

    // snapshot -> xds, admin
    tokio::spawn(crate::xds::warn_when_clusters_outgrow(
        snapshots.clone(),
        config.limits.clone(),
    ));
    let clients = Clients::default();
    let identifier = format!("lookaside/{}", env!("CARGO_PKG_VERSION"));
    let (stop_tx, stopping) = watch::channel(false);
    let ads = AdsServer::new(
        snapshots.clone(),
        stopping.clone(),
        clients.clone(),
        metrics.clone(),
        config.limits.clone(),
        identifier,
    );
    let admin = AdminService::new(
        snapshots.clone(),
        clients.clone(),
        sources.clone(),
        loads.clone(),
    );
    let csds = CsdsService::new(snapshots.clone(), clients.clone());
    let lrs = LrsService::new(
        loads.clients().clone(),
        registry_for_lrs,
        config.load.lrs_interval,
        stopping.clone(),
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // ADS is ready (the readiness probe's service) once every source has
    // listed once; until then its streams are held.
    health_reporter
        .set_service_status(ADS_SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    let (ready_tx, ready) = watch::channel(false);
    tokio::spawn(announce_ready(
        snapshots.clone(),
        sources.clone(),
        ready_tx,
        health_reporter.clone(),
        stopping.clone(),
    ));
    health_reporter
        .set_service_status(
            "lookaside.admin.v1.Admin",
            tonic_health::ServingStatus::Serving,
        )
        .await;

    let listener = bind(config.xds_listen).await?;
    let xds_address = local_address(&listener, config.xds_listen)?;
    let admin_listener = match config.admin_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let admin_address = match (&admin_listener, config.admin_listen) {
        (Some(listener), Some(address)) => local_address(listener, address)?,
        _ => xds_address,
    };

    let metrics_address = match config.metrics_listen {
        Some(address) => {
            let metrics_listener = bind(address).await?;
            let bound = metrics_listener.local_addr().ok();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(error) = serve_metrics(metrics_listener, metrics, ready).await {
                    tracing::error!(%error, "metrics server failed");
                }
            });
            bound
        }
        None => None,
    };

    let tls = match &config.tls {
        Some(files) => {
            let current = reloading(files.clone(), config.tls_reload, metrics.clone()).await?;
            tracing::info!(
                mutual = files.client_ca.is_some(),
                "gRPC listeners serve TLS"
            );
            Some(current)
        }
        None => None,
    };
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
    };
    // Data plane: ADS and LRS (and health, which probes ask for).
    let xds_routes = tonic::service::Routes::new(ads)
        .add_service(lrs.into_server())
        .add_service(health.clone());
    // Operators: admin, CSDS, reflection; on their own port if asked.
    // Reflection lists what its own port serves.
    let operator_services = [
        "lookaside.admin.v1.Admin",
        "envoy.service.status.v3.ClientStatusDiscoveryService",
        "grpc.health.v1.Health",
    ];
    let separate = admin_listener.is_some();
    let mut listed: Vec<&str> = operator_services.to_vec();
    if !separate {
        listed.extend([
            ADS_SERVICE,
            "envoy.service.load_stats.v3.LoadReportingService",
        ]);
    }
    let (reflection_v1, reflection_v1alpha) = reflection(&listed)?;
    let with_admin = |routes: tonic::service::Routes| {
        routes
            .add_service(admin.into_server())
            .add_service(csds.into_server())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
    };
    let (xds_router, admin_server) = match admin_listener {
        Some(listener) => {
            let admin_router =
                builder().add_routes(with_admin(tonic::service::Routes::new(health)));
            let admin_server = serve_on(
                admin_router,
                listener,
                tls.clone(),
                metrics.clone(),
                stopping.clone(),
            );
            (builder().add_routes(xds_routes), Some(admin_server))
        }
        None => (builder().add_routes(with_admin(xds_routes)), None),
    };
    let xds_server = serve_on(xds_router, listener, tls, metrics.clone(), stopping.clone());

    // On shutdown: stop accepting, end every ADS stream with UNAVAILABLE so
    // clients move to another replica, and give the rest `shutdown_grace`.
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: ending ADS streams");
        stop_tx.send_replace(true);
    });
    let grace = config.shutdown_grace;
    let mut stopped = stopping;
    let server = tokio::spawn(async move {
        // The ORCA streams stop with the server.
        let _collector = AbortOnDrop(collector);
        let mut admin = admin_server.map(AbortOnDrop);
        let mut xds_server = AbortOnDrop(xds_server);
        let grace_over = async {
            let _ = stopped.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(grace_over);
        loop {
            tokio::select! {
                result = &mut xds_server.0 => return joined(result),
                result = async {
                    match admin.as_mut() {
                        Some(admin) => (&mut admin.0).await,
                        None => std::future::pending().await,
                    }
                }, if admin.is_some() => {
                    admin = None;
                    if let Err(error) = joined(result) {
                        tracing::error!("admin listener failed; stopping");
                        return Err(error);
                    }
                }
                () = &mut grace_over => {
                    tracing::warn!(?grace, "streams still open after the shutdown grace period; stopping anyway");
                    return Ok(());
                }
            }
        }
    });
    tracing::info!(address = %xds_address, "xDS listening");
    if admin_address != xds_address {
        tracing::info!(address = %admin_address, "admin listening");
    }

    Ok(Running {
        xds_address,
        admin_address,
        metrics_address,
        snapshots,
        clients,
        sources,
        metrics,
        weighted,
        loads,
        server,
    })
}

/// How long a source may take to list before the wait is logged (and then
/// again at each such interval).
const LIST_WARNING_AFTER: Duration = Duration::from_secs(30);

/// Turns readiness on once every source has listed. Until then ADS streams
/// are held; a source that never lists (no API access, a wrong namespace)
/// is named in a warning every `LIST_WARNING_AFTER` rather than failing
/// the process, so the last replica standing is never crash-looped.
async fn announce_ready(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    sources: SourceStatus,
    ready: watch::Sender<bool>,
    health: tonic_health::server::HealthReporter,
    mut stopping: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    loop {
        let listed = tokio::select! {
            listed = tokio::time::timeout(
                LIST_WARNING_AFTER,
                snapshots.wait_for(|s| s.weighted.complete),
            ) => listed.map(|ready| ready.map(|_| ())),
            // Shutting down before ever being ready: stays NOT_SERVING.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        match listed {
            Ok(Ok(_)) => break,
            Ok(Err(_)) => return,
            Err(_) => {
                let waiting: Vec<String> = sources
                    .all()
                    .into_iter()
                    .filter(|(_, state)| state.last_good_at.is_none())
                    .map(|(id, state)| match state.error {
                        Some(error) => format!("{id} ({})", error.message),
                        None => id,
                    })
                    .collect();
                tracing::warn!(
                    waited_s = started.elapsed().as_secs(),
                    waiting = %waiting.join(", "),
                    "a discovery source has not listed yet: ADS streams are held and readiness is NOT_SERVING"
                );
            }
        }
    }
    tracing::info!("every discovery source has listed: ADS ready");
    ready.send_replace(true);
    health
        .set_service_status(ADS_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    // Shutting down: no longer ready, so probes take the replica out of
    // rotation while its streams end.
    if stopping.wait_for(|stop| *stop).await.is_ok() {
        ready.send_replace(false);
        health
            .set_service_status(ADS_SERVICE, tonic_health::ServingStatus::NotServing)
            .await;
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

fn local_address(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        address: asked,
        source,
    })
}

/// Serves `router` on `listener`, over TLS when `tls` is set, until
/// `stopping` turns true.
fn serve_on(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<Reloading<ServerTls>>,
    metrics: Arc<Metrics>,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), RunError>> {
    let mut stop = stopping.clone();
    let signal = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(TlsIncoming::new(listener, tls, metrics), signal)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(accepting(listener), signal)
                    .await
            }
        };
        match served {
            // Its connections ending (the TLS accept loop panicked) ends
            // the server cleanly in tonic's eyes: not a stop.
            Ok(()) if !*stopping.borrow() => Err(RunError::Listener(
                "a listener stopped without a shutdown".to_string(),
            )),
            other => other.map_err(RunError::from),
        }
    })
}

/// How long accepting pauses after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The connections `listener` accepts, with TCP_NODELAY (as the TLS
/// acceptor sets it, and tonic's own `serve` does: its builder's
/// `tcp_nodelay` is ignored for an incoming stream, and with Nagle a small
/// write waits until the one before it is acknowledged).
///
/// A failed accept (out of file descriptors: the connection stays queued
/// and the next accept fails at once) is logged and followed by a pause
/// of `ACCEPT_PAUSE`: tonic retries at once, which would spin a core, as
/// the TLS acceptor already avoids.
pub fn accepting(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    paced(TcpIncoming::from(listener).with_nodelay(Some(true)))
}

/// `incoming`, pausing `ACCEPT_PAUSE` after each failure it yields.
fn paced<S, T>(incoming: S) -> impl futures::Stream<Item = std::io::Result<T>> + Send + 'static
where
    S: futures::Stream<Item = std::io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    use futures::StreamExt;
    use std::io::ErrorKind;
    incoming.then(|accepted| async move {
        if let Err(error) = &accepted {
            // One connection's trouble (tonic skips those at once) costs
            // nothing; a resource shortage pauses.
            let one_connection = matches!(
                error.kind(),
                ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionReset
                    | ErrorKind::BrokenPipe
                    | ErrorKind::Interrupted
                    | ErrorKind::WouldBlock
                    | ErrorKind::TimedOut
            );
            if !one_connection {
                tracing::warn!(%error, "accepting a connection failed; pausing before the next");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
        accepted
    })
}

/// Server reflection (v1 and v1alpha) listing `services` and itself.
fn reflection(
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    StartError,
> {
    let configure = || {
        services.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(lookaside_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, service| builder.with_service_name(*service),
        )
    };
    let v1 = configure()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let v1alpha = configure()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// A listener task's result; its panic, if it panicked, carries on here
/// (a dead listener must not look like a clean stop).
fn joined<E>(result: Result<Result<(), E>, tokio::task::JoinError>) -> Result<(), E> {
    match result {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Ok(()),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_snapshot_counter(mut snapshots: watch::Receiver<Arc<Snapshot>>, metrics: Arc<Metrics>) {
    metrics.snapshots.inc();
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            metrics.snapshots.inc();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failed_accept_pauses_the_loop_instead_of_spinning() {
        use futures::StreamExt;
        let failures = futures::stream::iter(
            (0..3)
                .map(|_| Err::<(), _>(std::io::Error::other("Too many open files (os error 24)"))),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(paced(failures).count().await, 3);
        assert!(started.elapsed() >= ACCEPT_PAUSE * 3);
        // Accepted connections are not held up.
        let started = tokio::time::Instant::now();
        let accepted = futures::stream::iter([Ok::<_, std::io::Error>(())]);
        assert_eq!(paced(accepted).count().await, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Nor are one connection's errors.
        let reset = futures::stream::iter([Err::<(), _>(std::io::Error::from(
            std::io::ErrorKind::ConnectionAborted,
        ))]);
        assert_eq!(paced(reset).count().await, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
