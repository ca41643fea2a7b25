//! LRS (`envoy.service.load_stats.v3.LoadReportingService`): clients (Envoy
//! with `load_stats_config`, gRPC with a Cluster's `lrs_server`) report what
//! they saw of each endpoint. A secondary signal: it shows client-observed
//! rates and errors in the admin API, and errors seen only by clients
//! (connection failures, deadlines) cost an endpoint weight.
//!
//! The server asks for every cluster (`send_all_clusters`, and the names for
//! clients without that feature), at endpoint granularity. An endpoint is
//! found by its upstream endpoint address or, for clients that report per
//! locality only, by the locality's `sub_zone`, which Lookaside sets to the
//! endpoint's address.
//!
//! Owns: the LRS streams and what they report. Must never: trust a report
//! beyond its own interval, or keep a stream's samples after it ends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;
use lookaside_proto::convert::{proto_duration, socket_addr, std_duration};
use lookaside_proto::envoy::config::core::v3::Locality;
use lookaside_proto::envoy::config::endpoint::v3::ClusterStats;
use lookaside_proto::envoy::service::load_stats::v3::load_reporting_service_server::{
    LoadReportingService, LoadReportingServiceServer,
};
use lookaside_proto::envoy::service::load_stats::v3::{LoadStatsRequest, LoadStatsResponse};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use super::{ClientLoads, ClientSample};
use crate::closing::{close_with, shutting_down};
use crate::registry::Registry;

/// The longest interval a client may ask us to trust.
const MAX_INTERVAL: Duration = Duration::from_secs(300);

type Responses = Pin<Box<dyn Stream<Item = Result<LoadStatsResponse, Status>> + Send>>;

/// Serves LRS into a `ClientLoads`.
#[derive(Debug, Clone)]
pub struct LrsService {
    loads: ClientLoads,
    registry: watch::Receiver<Arc<Registry>>,
    interval: Duration,
    next_stream: Arc<AtomicU64>,
    stopping: watch::Receiver<bool>,
}

impl LrsService {
    /// A service asking clients to report every `interval`. Its streams end
    /// with UNAVAILABLE once `stopping` turns true, so a graceful shutdown
    /// does not wait for them.
    pub fn new(
        loads: ClientLoads,
        registry: watch::Receiver<Arc<Registry>>,
        interval: Duration,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            loads,
            registry,
            interval,
            next_stream: Arc::default(),
            stopping,
        }
    }

    /// The server to add to a tonic router.
    pub fn into_server(self) -> LoadReportingServiceServer<Self> {
        LoadReportingServiceServer::new(self)
    }

    fn response(&self, known: &Known) -> LoadStatsResponse {
        LoadStatsResponse {
            clusters: known.clusters.clone(),
            send_all_clusters: true,
            load_reporting_interval: Some(proto_duration(self.interval)),
            report_endpoint_granularity: true,
        }
    }
}

#[tonic::async_trait]
impl LoadReportingService for LrsService {
    type StreamLoadStatsStream = Responses;

    async fn stream_load_stats(
        &self,
        request: Request<Streaming<LoadStatsRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let mut inbound = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let service = self.clone();
        let (tx, rx) = mpsc::channel::<Result<LoadStatsResponse, Status>>(1);
        tokio::spawn(async move {
            let mut registry = service.registry.clone();
            let mut stopping = service.stopping.clone();
            let mut known = Known::of(&registry.borrow_and_update());
            let mut answered = false;
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(report)) => {
                            let samples = samples(&report.cluster_stats, Instant::now());
                            service.loads.replace_stream(stream, samples.into_iter().filter(|(address, _)| known.endpoints.contains(address)));
                            if !answered {
                                answered = true;
                                if tx.send(Ok(service.response(&known))).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(None) | Err(_) => break,
                    },
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                        close_with(&tx, Err(shutting_down("report"))).await;
                        break;
                    }
                    changed = registry.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let next = Known::of(&registry.borrow_and_update());
                        // A response restarts the client's report timer:
                        // send one only when the set of clusters changed.
                        let resend = answered && next.clusters != known.clusters;
                        known = next;
                        if resend && tx.send(Ok(service.response(&known))).await.is_err() {
                            break;
                        }
                    }
                }
            }
            service.loads.forget_stream(stream);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// What the registry holds, as far as LRS cares.
struct Known {
    /// Cluster names, sorted.
    clusters: Vec<String>,
    /// Every endpoint address: reports about anything else are dropped.
    endpoints: HashSet<SocketAddr>,
}

impl Known {
    fn of(registry: &Registry) -> Self {
        Self {
            clusters: registry.clusters.keys().cloned().collect(),
            endpoints: registry
                .clusters
                .values()
                .flat_map(|c| c.endpoints.iter().map(|e| e.address))
                .collect(),
        }
    }
}

/// One report's per-endpoint samples.
fn samples(clusters: &[ClusterStats], at: Instant) -> Vec<(SocketAddr, ClientSample)> {
    let mut out = Vec::new();
    for cluster in clusters {
        let Some(interval) = cluster
            .load_report_interval
            .as_ref()
            .and_then(std_duration)
            .filter(|i| !i.is_zero() && *i <= MAX_INTERVAL)
        else {
            continue;
        };
        for locality in &cluster.upstream_locality_stats {
            let mut by_endpoint = false;
            for endpoint in &locality.upstream_endpoint_stats {
                if let Some(address) = endpoint.address.as_ref().and_then(socket_addr) {
                    by_endpoint = true;
                    out.push((
                        address,
                        ClientSample {
                            finished: endpoint
                                .total_successful_requests
                                .saturating_add(endpoint.total_error_requests),
                            errors: endpoint.total_error_requests,
                            in_progress: endpoint.total_requests_in_progress,
                            interval,
                            at,
                        },
                    ));
                }
            }
            if by_endpoint {
                continue;
            }
            if let Some(address) = locality.locality.as_ref().and_then(sub_zone_address) {
                out.push((
                    address,
                    ClientSample {
                        finished: locality
                            .total_successful_requests
                            .saturating_add(locality.total_error_requests),
                        errors: locality.total_error_requests,
                        in_progress: locality.total_requests_in_progress,
                        interval,
                        at,
                    },
                ));
            }
        }
    }
    out
}

fn sub_zone_address(locality: &Locality) -> Option<SocketAddr> {
    locality.sub_zone.parse().ok()
}

#[cfg(test)]
mod tests {
    use lookaside_proto::envoy::config::endpoint::v3::{
        UpstreamEndpointStats, UpstreamLocalityStats,
    };
    use lookaside_proto::google::protobuf::Duration as PbDuration;

    use super::*;

    fn interval() -> Option<PbDuration> {
        Some(PbDuration {
            seconds: 2,
            nanos: 0,
        })
    }

    #[test]
    fn endpoints_are_found_by_address_or_by_sub_zone() {
        let loads = ClientLoads::default();
        let endpoint = UpstreamEndpointStats {
            address: Some(lookaside_proto::convert::proto_address(SocketAddr::from((
                [10, 0, 0, 1],
                80,
            )))),
            total_successful_requests: 90,
            total_error_requests: 10,
            ..Default::default()
        };
        let stats = vec![ClusterStats {
            cluster_name: "greeter".into(),
            load_report_interval: interval(),
            upstream_locality_stats: vec![
                UpstreamLocalityStats {
                    upstream_endpoint_stats: vec![endpoint],
                    ..Default::default()
                },
                UpstreamLocalityStats {
                    locality: Some(Locality {
                        sub_zone: "10.0.0.2:80".into(),
                        ..Default::default()
                    }),
                    total_successful_requests: 40,
                    ..Default::default()
                },
                // Not one of ours: ignored.
                UpstreamLocalityStats {
                    locality: Some(Locality {
                        sub_zone: "rack-7".into(),
                        ..Default::default()
                    }),
                    total_successful_requests: 40,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
        let now = Instant::now();
        loads.replace_stream(7, samples(&stats, now));
        let first = loads.get(&SocketAddr::from(([10, 0, 0, 1], 80)), now);
        assert_eq!(first.map(|l| (l.rps, l.eps)), Some((50.0, 5.0)));
        let second = loads.get(&SocketAddr::from(([10, 0, 0, 2], 80)), now);
        assert_eq!(second.map(|l| l.rps), Some(20.0));
        assert_eq!(loads.len(), 2);
    }

    #[test]
    fn a_report_without_a_sane_interval_is_ignored() {
        let loads = ClientLoads::default();
        let stats = vec![ClusterStats {
            load_report_interval: None,
            upstream_locality_stats: vec![UpstreamLocalityStats {
                locality: Some(Locality {
                    sub_zone: "10.0.0.2:80".into(),
                    ..Default::default()
                }),
                total_successful_requests: 40,
                ..Default::default()
            }],
            ..Default::default()
        }];
        loads.replace_stream(1, samples(&stats, Instant::now()));
        assert!(loads.is_empty());
    }
}
