//! The entry point: one xDS client per process, one balanced channel per
//! cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xds_client::{ClientConfig, Node, ProstCodec, RetryPolicy, TonicTransportBuilder, XdsClient};

use crate::cluster::FailureAccrual;
use crate::cluster::{Assignment, ClusterBalancer, LbChannel};
use crate::endpoint::{ConnectionSettings, ConnectionSettingsError};
use crate::load::{LoadStore, Reporter};
use crate::xds::{AssignmentResource, ControlPlaneLink, OwnedRuntime, Worker, follow};

/// The user agent this client names to the control plane (xDS and LRS).
pub(crate) const USER_AGENT_NAME: &str = "lookaside-client";

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control plane address is not a URI with a scheme.
    #[error("control plane address {address:?} must look like http://host:port")]
    Address {
        /// What was given.
        address: String,
    },
    /// A backoff setting was rejected.
    #[error("invalid reconnect backoff: {0}")]
    Backoff(#[source] xds_client::Error),
    /// A connection setting cannot work.
    #[error(transparent)]
    ConnectionSettings(#[from] ConnectionSettingsError),
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    control_plane: String,
    node_id: String,
    first_assignment_timeout: Duration,
    connection: ConnectionSettings,
    reconnect_initial: Duration,
    reconnect_max: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
    fallback: HashMap<String, Assignment>,
    load_reports: bool,
    failure_accrual: Option<FailureAccrual>,
}

impl ClientBuilder {
    /// Node id the control plane shows for this process (default:
    /// `lookaside-client-<pid>`).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// How long fail-fast calls on a new channel wait for its first
    /// assignment (default 5 s); wait-for-ready calls wait until their
    /// deadline (see [`crate::LbChannel::wait_for_ready`]).
    pub fn first_assignment_timeout(mut self, timeout: Duration) -> Self {
        self.first_assignment_timeout = timeout;
        self
    }

    /// How endpoint connections are made and watched.
    pub fn connection_settings(mut self, settings: ConnectionSettings) -> Self {
        self.connection = settings;
        self
    }

    /// Take an endpoint that fails calls in a row (UNAVAILABLE, INTERNAL,
    /// reset streams...) out of use for a while, though its connection is
    /// up; `None` turns it off. Default: after 5 in a row, for 1 s doubling
    /// up to 60 s, at most half of a priority tier at once, never the last
    /// endpoint of a tier taking calls.
    pub fn failure_accrual(mut self, accrual: Option<FailureAccrual>) -> Self {
        self.failure_accrual = accrual;
        self
    }

    /// Reconnect backoff towards the control plane: exponential with jitter
    /// from `initial` up to `max` (default 200 ms .. 10 s).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max;
        self
    }

    /// Endpoints to use for `cluster` until the control plane sends its
    /// assignment (and if it never does).
    pub fn fallback(
        mut self,
        cluster: impl Into<String>,
        endpoints: Vec<(SocketAddr, u32)>,
    ) -> Self {
        self.fallback.insert(cluster.into(), endpoints);
        self
    }

    /// Whether to report what the calls to each endpoint did (issued,
    /// succeeded, failed, in progress) to the control plane over LRS, at
    /// the interval it asks for (default on). The control plane shows the
    /// counts and lowers the weight of endpoints whose calls fail here. A
    /// control plane without LRS (UNIMPLEMENTED) is not asked again.
    pub fn load_reports(mut self, on: bool) -> Self {
        self.load_reports = on;
        self
    }

    /// TLS towards the control plane (a CA to trust, and a client identity
    /// for mutual TLS); the address must then be `https://`.
    pub fn tls(mut self, tls: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts the xDS client. Returns at once; the connection to the control
    /// plane is made (and remade) in the background. Fails on an address
    /// without a scheme, a backoff xds-client refuses, or connection
    /// settings that cannot work ([`ConnectionSettings::validate`]).
    pub fn build(self) -> Result<Client, ClientError> {
        if !self.control_plane.contains("://") {
            return Err(ClientError::Address {
                address: self.control_plane,
            });
        }
        self.connection.validate()?;
        let node =
            Node::new(USER_AGENT_NAME, env!("CARGO_PKG_VERSION")).with_id(self.node_id.clone());
        let retry = RetryPolicy::default()
            .with_initial_backoff(self.reconnect_initial)
            .and_then(|policy| policy.with_max_backoff(self.reconnect_max))
            .map_err(ClientError::Backoff)?;
        let config = ClientConfig::new(node, self.control_plane.clone()).with_retry_policy(retry);
        let mut transport = TonicTransportBuilder::new();
        if let Some(tls) = &self.tls {
            transport = transport.with_tls_config(tls.clone());
        }
        let runtime = OwnedRuntime::default();
        let link = Arc::new(ControlPlaneLink::new(&self.control_plane));
        let xds = XdsClient::builder(config, transport, ProstCodec, runtime.clone())
            .with_metrics_recorder(link.clone())
            .build();
        let loads = self.load_reports.then(|| {
            let loads = LoadStore::default();
            let reporter = Reporter::new(
                self.control_plane.clone(),
                self.tls.clone(),
                self.node_id.clone(),
                loads.clone(),
                (self.reconnect_initial, self.reconnect_max),
            );
            // On the xDS client's runtime: it stops with the client.
            xds_client::Runtime::spawn(&runtime, reporter.run());
            loads
        });
        Ok(Client {
            inner: Arc::new(Inner {
                xds,
                worker: Arc::new(Worker::new(runtime)),
                settings: self,
                channels: Mutex::new(HashMap::new()),
                loads,
                link,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    xds: XdsClient,
    /// Held here and by every cluster in use: the xDS stream lives while
    /// the client or one of its channels does.
    worker: Arc<Worker>,
    settings: ClientBuilder,
    /// One channel per cluster asked for, shared by every `channel()` call
    /// while the client lives (dropped with it).
    channels: Mutex<HashMap<String, LbChannel>>,
    /// Every cluster's call counters, for load reports (if on).
    loads: Option<LoadStore>,
    /// Whether the ADS stream is up (held by the xDS client, which reports
    /// to it).
    link: Arc<ControlPlaneLink>,
}

/// A process's connection to a Lookaside control plane. Cheap to clone.
///
/// One ADS stream per client, whatever the number of clusters: every
/// `channel()` adds its cluster to that stream. Build one client per
/// process and clone it where needed; each client built opens a stream of
/// its own.
///
/// Channels keep working (and following assignments) after the client is
/// dropped. Once the client and every channel are gone, the subscriptions,
/// connections and the stream to the control plane all close.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder for a client of the control plane at `control_plane`
    /// (e.g. `http://lookaside.lookaside-system:18000`).
    pub fn builder(control_plane: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            control_plane: control_plane.into(),
            node_id: format!("lookaside-client-{}", std::process::id()),
            first_assignment_timeout: Duration::from_secs(5),
            connection: ConnectionSettings::default(),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            tls: None,
            fallback: HashMap::new(),
            load_reports: true,
            failure_accrual: Some(FailureAccrual::default()),
        }
    }

    /// A client with default settings.
    pub async fn connect(control_plane: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(control_plane).build()
    }

    /// The balanced channel of `cluster`, for any tonic-generated client:
    /// `GreeterClient::new(lb.channel("greeter"))`. The first call for a
    /// cluster subscribes to its assignment; later calls share it.
    pub fn channel(&self, cluster: &str) -> LbChannel {
        let mut channels = match self.inner.channels.lock() {
            Ok(channels) => channels,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(channel) = channels.get(cluster) {
            return channel.clone();
        }
        let settings = &self.inner.settings;
        let (balancer, channel) = ClusterBalancer::spawn_with_accrual(
            cluster,
            settings.connection.clone(),
            settings.first_assignment_timeout,
            settings.failure_accrual.clone(),
        );
        if let Some(fallback) = settings.fallback.get(cluster) {
            balancer.assign(fallback.clone());
        }
        if let Some(loads) = &self.inner.loads {
            loads.add(balancer.loads());
        }
        if cluster.is_empty() {
            // xds-client would watch "" as a wildcard (every cluster).
            tracing::error!(
                "lb.channel(\"\"): a cluster needs a name; its calls fail (UNAVAILABLE) after the first-assignment timeout, or go to its fallback endpoints"
            );
            // Kept while the channel is used, as a followed one is.
            tokio::spawn(async move { balancer.closed().await });
        } else {
            self.inner
                .link
                .first_subscription(settings.first_assignment_timeout);
            let xds = self.inner.xds.clone();
            let worker = self.inner.worker.clone();
            let name = cluster.to_string();
            tokio::spawn(async move {
                let watcher = xds.watch::<AssignmentResource>(name.clone()).await;
                drop(xds);
                follow(&name, watcher, balancer).await;
                drop(worker);
            });
        }
        channels.insert(cluster.to_string(), channel.clone());
        channel
    }
}
