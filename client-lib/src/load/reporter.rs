//! The LRS stream: one per client, to the control plane its xDS stream
//! goes to, reporting every cluster's counts at the interval the control
//! plane asks for.
//!
//! Owns: the stream's protocol (the node first, reports only once the
//! server said which clusters and how often, a new stream's reports
//! covering only what followed its start), and connecting again with
//! backoff. Stops for good when the control plane does not serve LRS
//! (UNIMPLEMENTED).
//! Must never: hold calls back (it only reads counters), or send a report
//! the server did not ask for.

use std::convert::Infallible;
use std::time::Duration;

use lookaside_proto::convert::{proto_address, proto_duration, std_duration};
use lookaside_proto::envoy::config::core::v3::Node;
use lookaside_proto::envoy::config::endpoint::v3::{
    ClusterStats, UpstreamEndpointStats, UpstreamLocalityStats,
};
use lookaside_proto::envoy::service::load_stats::v3::load_reporting_service_client::LoadReportingServiceClient;
use lookaside_proto::envoy::service::load_stats::v3::{LoadStatsRequest, LoadStatsResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, info, warn};

use super::count::Totals;
use super::store::{ClusterReport, LoadStore};
use crate::endpoint::backoff;

/// The client feature that tells the server this client honours
/// `send_all_clusters`.
const SEND_ALL_CLUSTERS: &str = "envoy.lrs.supports_send_all_clusters";
/// The shortest interval a server may ask for (a zero one would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval between reports, whatever the server asks for.
const MAX_INTERVAL: Duration = crate::clock::LONGEST_PERIOD;
/// The interval when the server names none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// A stream that lasted this long was fine: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long connecting to the control plane may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer the first message.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive on the stream's connection (as the xDS client's): a
/// control plane gone without a word is found in under a minute.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an LRS stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// The control plane's address or TLS settings were refused.
    #[error("control plane {address}")]
    Settings {
        /// The control plane.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// No connection to the control plane.
    #[error("connecting to control plane {address}")]
    Connect {
        /// The control plane.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The stream failed (or the server refused it).
    #[error("LRS stream")]
    Status(#[source] tonic::Status),
    /// The server ended the stream.
    #[error("the control plane ended the LRS stream")]
    Ended,
    /// The server did not answer the first message in time.
    #[error("no answer to the first LRS message within {0:?}")]
    Silent(Duration),
}

/// What the server asked for in its latest response.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// The clusters to report; `None`: every one.
    clusters: Option<Vec<String>>,
    interval: Duration,
}

impl Plan {
    fn of(response: &LoadStatsResponse) -> Self {
        let interval = response
            .load_reporting_interval
            .as_ref()
            .and_then(std_duration)
            .filter(|interval| !interval.is_zero())
            .unwrap_or(DEFAULT_INTERVAL)
            .clamp(MIN_INTERVAL, MAX_INTERVAL);
        Self {
            clusters: (!response.send_all_clusters).then(|| response.clusters.clone()),
            interval,
        }
    }

    fn wants(&self, cluster: &str) -> bool {
        self.clusters
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == cluster))
    }
}

/// Reports a client's loads to its control plane; see the module docs.
#[derive(Debug)]
pub(crate) struct Reporter {
    control_plane: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    node: Node,
    store: LoadStore,
    /// Backoff between streams: first and longest wait.
    backoff: (Duration, Duration),
}

impl Reporter {
    /// A reporter of `store` to `control_plane` (as the xDS client dials
    /// it), as node `node_id`.
    pub(crate) fn new(
        control_plane: String,
        tls: Option<tonic::transport::ClientTlsConfig>,
        node_id: String,
        store: LoadStore,
        backoff: (Duration, Duration),
    ) -> Self {
        Self {
            control_plane,
            tls,
            node: Node {
                id: node_id,
                user_agent_name: crate::client::USER_AGENT_NAME.into(),
                user_agent_version_type: Some(
                    lookaside_proto::envoy::config::core::v3::node::UserAgentVersionType::UserAgentVersion(
                        env!("CARGO_PKG_VERSION").into(),
                    ),
                ),
                client_features: vec![SEND_ALL_CLUSTERS.into()],
                ..Default::default()
            },
            store,
            backoff,
        }
    }

    /// Reports until the control plane says it takes no reports; streams
    /// that fail are made again after a backoff.
    /// Settings the channel refuses (an address or TLS configuration that
    /// will never do) stop it at once, with a warning.
    pub(crate) async fn run(self) {
        let endpoint = match self.endpoint() {
            Ok(endpoint) => endpoint,
            Err(error) => {
                let error = crate::telemetry::error_chain(&error);
                warn!(control_plane = %self.control_plane, node = %self.node.id, %error, "not reporting load (LRS): the control plane's settings are refused");
                return;
            }
        };
        let mut round = 0;
        loop {
            let started = Instant::now();
            let Err(error) = self.stream(&endpoint).await;
            if let StreamError::Status(status) = &error
                && status.code() == Code::Unimplemented
            {
                info!(control_plane = %self.control_plane, node = %self.node.id, "the control plane takes no load reports (LRS); not reporting");
                return;
            }
            if started.elapsed() >= STABLE_AFTER {
                round = 0;
            }
            let wait = backoff(self.backoff.0, self.backoff.1, round);
            round = round.saturating_add(1);
            let error = crate::telemetry::error_chain(&error);
            // Warned once per outage (the second failure in a row), not at
            // every try while the control plane is away.
            if round == 2 {
                warn!(control_plane = %self.control_plane, node = %self.node.id, %error, ?wait, "load reports (LRS) failing; trying again (quietly until a stream lasts)");
            } else {
                debug!(control_plane = %self.control_plane, node = %self.node.id, %error, ?wait, "LRS stream ended; trying again");
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// How every stream's connection is made (built once).
    fn endpoint(&self) -> Result<tonic::transport::Endpoint, StreamError> {
        let settings = |source| StreamError::Settings {
            address: self.control_plane.clone(),
            source,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(self.control_plane.clone())
            .map_err(settings)?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(settings),
            None => Ok(endpoint),
        }
    }

    /// One stream, until it fails.
    async fn stream(
        &self,
        endpoint: &tonic::transport::Endpoint,
    ) -> Result<Infallible, StreamError> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| StreamError::Connect {
                address: self.control_plane.clone(),
                source,
            })?;
        // Two: the first message, then one report at a time.
        let (reports, outbound) = mpsc::channel(2);
        let _ = reports.try_send(LoadStatsRequest {
            node: Some(self.node.clone()),
            cluster_stats: Vec::new(),
        });
        // Until the first answer (the response head included: a server
        // whose handler never returns still answers PINGs): when to give
        // up on it.
        let mut next = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let mut responses = tokio::time::timeout_at(
            next,
            LoadReportingServiceClient::new(channel)
                .stream_load_stats(tokio_stream::wrappers::ReceiverStream::new(outbound)),
        )
        .await
        .map_err(|_| StreamError::Silent(FIRST_ANSWER_TIMEOUT))?
        .map_err(StreamError::Status)?
        .into_inner();
        let mut plan: Option<Plan> = None;
        loop {
            tokio::select! {
                response = responses.message() => {
                    let response = response.map_err(StreamError::Status)?.ok_or(StreamError::Ended)?;
                    let now = Instant::now();
                    if plan.is_none() {
                        // A new stream reports what follows its start.
                        for cluster in self.store.clusters() {
                            cluster.restart(now);
                        }
                    }
                    let asked = Plan::of(&response);
                    debug!(control_plane = %self.control_plane, node = %self.node.id, clusters = ?asked.clusters, interval = ?asked.interval, "load reports asked for");
                    // Each response starts the report timer over, as Envoy does.
                    next = now + asked.interval;
                    plan = Some(asked);
                }
                () = tokio::time::sleep_until(next) => {
                    let Some(asked) = &plan else {
                        return Err(StreamError::Silent(FIRST_ANSWER_TIMEOUT));
                    };
                    let now = Instant::now();
                    next = now + asked.interval;
                    // The server has not read the last reports: the counts
                    // wait for the next turn (nothing is taken unsent).
                    let Ok(room) = reports.try_reserve() else {
                        if reports.is_closed() {
                            return Err(StreamError::Ended);
                        }
                        debug!(control_plane = %self.control_plane, node = %self.node.id, "LRS reports not read yet; skipping a turn");
                        continue;
                    };
                    let cluster_stats = self
                        .store
                        .clusters()
                        .iter()
                        .filter(|cluster| asked.wants(cluster.name()))
                        .map(|cluster| cluster.take(now))
                        .filter(|report| !report.endpoints.is_empty())
                        .map(cluster_stats)
                        .collect();
                    room.send(LoadStatsRequest { node: None, cluster_stats });
                }
            }
        }
    }
}

/// A cluster's report as LRS carries it: one locality holding every
/// endpoint (the client does not track localities; the control plane finds
/// endpoints by address).
fn cluster_stats(report: ClusterReport) -> ClusterStats {
    let mut locality = UpstreamLocalityStats::default();
    let mut total = Totals::default();
    let mut in_progress: u64 = 0;
    for endpoint in &report.endpoints {
        total = total.plus(&endpoint.delta);
        in_progress = in_progress.saturating_add(endpoint.in_progress);
        locality
            .upstream_endpoint_stats
            .push(UpstreamEndpointStats {
                address: Some(proto_address(endpoint.address)),
                total_issued_requests: endpoint.delta.issued,
                total_successful_requests: endpoint.delta.succeeded,
                total_error_requests: endpoint.delta.failed,
                total_requests_in_progress: endpoint.in_progress,
                ..Default::default()
            });
    }
    locality.total_issued_requests = total.issued;
    locality.total_successful_requests = total.succeeded;
    locality.total_error_requests = total.failed;
    locality.total_requests_in_progress = in_progress;
    ClusterStats {
        cluster_name: report.cluster,
        upstream_locality_stats: vec![locality],
        load_report_interval: Some(proto_duration(report.interval)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::load::count::Totals;
    use crate::load::store::EndpointReport;

    #[test]
    fn the_plan_follows_the_servers_response() {
        let all = Plan::of(&LoadStatsResponse {
            send_all_clusters: true,
            clusters: vec!["ignored".into()],
            load_reporting_interval: Some(lookaside_proto::google::protobuf::Duration {
                seconds: 2,
                nanos: 500_000_000,
            }),
            ..Default::default()
        });
        assert_eq!(all.interval, Duration::from_millis(2500));
        assert!(all.wants("anything"));
        let named = Plan::of(&LoadStatsResponse {
            clusters: vec!["greeter".into()],
            ..Default::default()
        });
        assert_eq!(named.interval, DEFAULT_INTERVAL, "none named");
        assert!(named.wants("greeter"));
        assert!(!named.wants("other"));
        let zero = Plan::of(&LoadStatsResponse {
            load_reporting_interval: Some(lookaside_proto::google::protobuf::Duration {
                seconds: 0,
                nanos: 1,
            }),
            ..Default::default()
        });
        assert_eq!(zero.interval, MIN_INTERVAL, "never spins");
        let huge = Plan::of(&LoadStatsResponse {
            load_reporting_interval: Some(lookaside_proto::google::protobuf::Duration {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..Default::default()
        });
        assert_eq!(huge.interval, MAX_INTERVAL, "never past the clock");
    }

    #[test]
    fn a_report_names_each_endpoint_by_address_and_sums_them_up() {
        let report = ClusterReport {
            cluster: "greeter".into(),
            interval: Duration::from_millis(1500),
            endpoints: vec![
                EndpointReport {
                    address: SocketAddr::from(([10, 0, 0, 1], 50051)),
                    delta: Totals {
                        issued: 10,
                        succeeded: 7,
                        failed: 2,
                    },
                    in_progress: 1,
                },
                EndpointReport {
                    address: SocketAddr::from(([10, 0, 0, 2], 50051)),
                    delta: Totals {
                        issued: 5,
                        succeeded: 5,
                        failed: 0,
                    },
                    in_progress: 0,
                },
            ],
        };
        let stats = cluster_stats(report);
        assert_eq!(stats.cluster_name, "greeter");
        let interval = stats.load_report_interval.unwrap();
        assert_eq!((interval.seconds, interval.nanos), (1, 500_000_000));
        let locality = &stats.upstream_locality_stats[0];
        assert_eq!(locality.total_issued_requests, 15);
        assert_eq!(locality.total_successful_requests, 12);
        assert_eq!(locality.total_error_requests, 2);
        assert_eq!(locality.total_requests_in_progress, 1);
        let first = &locality.upstream_endpoint_stats[0];
        assert_eq!(
            first
                .address
                .as_ref()
                .and_then(lookaside_proto::convert::socket_addr),
            Some(SocketAddr::from(([10, 0, 0, 1], 50051)))
        );
        assert_eq!(first.total_error_requests, 2);
    }
}
