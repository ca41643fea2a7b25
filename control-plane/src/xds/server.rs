//! The gRPC service: accepts ADS streams and drives each one.
//!
//! Hand-routed rather than generated so responses can be written from
//! pre-encoded resources (see `response`). One task per stream selects over
//! the client's requests, new snapshots, and room in a one-slot outbound
//! queue; a response is built only when it can be sent, from the latest
//! snapshot, so a slow client never accumulates a backlog.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Status, Streaming};
use tracing::{Instrument, debug, info, info_span};

use super::acks::Reply;
use super::body::{self, OutboundBody};
use super::clients::Clients;
use super::codec::request_decoder;
use super::delta::Delta;
use super::error::XdsError;
use super::limits::Limits;
use super::sotw::Sotw;
use super::stream::{Protocol, Received, Stream};
use crate::closing::{close_with, shutting_down};
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;
use lookaside_proto::envoy::config::core::v3::ControlPlane;

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

#[derive(Debug)]
struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Becomes true when the server shuts down: every stream ends.
    stopping: watch::Receiver<bool>,
    clients: Clients,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    next_id: AtomicU64,
    active: AtomicUsize,
    control_plane: Bytes,
}

/// The ADS service, cheap to clone.
#[derive(Debug, Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
}

impl AdsServer {
    /// A server streaming `snapshots`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        stopping: watch::Receiver<bool>,
        clients: Clients,
        metrics: Arc<Metrics>,
        limits: Limits,
        identifier: String,
    ) -> Self {
        let control_plane = Bytes::from(ControlPlane { identifier }.encode_to_vec());
        Self {
            shared: Arc::new(Shared {
                snapshots,
                stopping,
                clients,
                metrics,
                limits: Arc::new(limits),
                next_id: AtomicU64::new(1),
                active: AtomicUsize::new(0),
                control_plane,
            }),
        }
    }
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = SERVICE;
}

impl tower::Service<http::Request<Body>> for AdsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        match request.uri().path() {
            SOTW_PATH => Box::pin(serve::<Sotw>(shared, request)),
            DELTA_PATH => Box::pin(serve::<Delta>(shared, request)),
            _ => {
                Box::pin(
                    async move { Ok(Status::unimplemented("unknown method").into_http::<Body>()) },
                )
            }
        }
    }
}

async fn serve<P: Protocol>(
    shared: Arc<Shared>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    Ok(open::<P>(shared, request).unwrap_or_else(|status| status.into_http::<Body>()))
}

/// What the stream task queues for [`OutboundBody`].
type Item<P> = body::Item<<P as Protocol>::Response>;

/// Admits a stream, spawns its task and answers with the response headers;
/// the body follows as the task produces responses.
fn open<P: Protocol>(
    shared: Arc<Shared>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let (parts, request_body) = request.into_parts();
    if let Some(encoding) = parts.headers.get("grpc-encoding")
        && encoding.as_bytes() != b"identity"
    {
        return Err(Status::unimplemented(format!(
            "request compression {encoding:?} is not supported; send identity"
        )));
    }
    let limit = shared.limits.max_streams;
    if shared.active.fetch_add(1, Ordering::AcqRel) >= limit {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.streams_refused.inc();
        shared
            .metrics
            .limit_hits
            .get_or_create(&Metrics::limit("streams"))
            .inc();
        return Err(XdsError::TooManyStreams { limit }.into());
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let address = peer_address(&parts.extensions);
    let inbound = Streaming::new_request(
        request_decoder::<P::Request>(),
        request_body,
        None,
        Some(shared.limits.max_request_bytes),
    );
    let (tx, rx) = mpsc::channel(1);
    let span = info_span!("ads", stream = id, protocol = P::NAME, peer = %address, node = tracing::field::Empty, cluster = tracing::field::Empty);
    tokio::spawn(drive::<P>(shared, id, address, inbound, tx).instrument(span));
    let mut response = http::Response::new(Body::new(OutboundBody::new(rx)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// The client's address, over plaintext or TLS.
fn peer_address(extensions: &http::Extensions) -> String {
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(TlsConnectInfo::get_ref)
    });
    tcp.and_then(TcpConnectInfo::remote_addr)
        .map(|address| address.to_string())
        .unwrap_or_default()
}

/// Releases a stream's slot and admin entry however the task ends.
struct Admission {
    shared: Arc<Shared>,
    id: u64,
    protocol: &'static str,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        self.shared.clients.remove(self.id);
        self.shared
            .metrics
            .streams
            .get_or_create(&Metrics::protocol(self.protocol))
            .dec();
    }
}

async fn drive<P: Protocol>(
    shared: Arc<Shared>,
    id: u64,
    address: String,
    inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Item<P>>,
) {
    shared
        .metrics
        .streams
        .get_or_create(&Metrics::protocol(P::NAME))
        .inc();
    let _admission = Admission {
        shared: shared.clone(),
        id,
        protocol: P::NAME,
    };
    let mut snapshots = shared.snapshots.clone();
    snapshots.mark_unchanged();
    let mut inbound = Box::new(inbound);
    let mut stopping = shared.stopping.clone();
    // Boxed: the task's future stays small (thousands of idle streams each
    // keep one alive), and the state lives in one allocation.
    let mut stream = Box::new(Stream::new(
        id,
        address,
        shared.limits.clone(),
        shared.control_plane.clone(),
    ));
    debug!("stream opened");
    // Until every discovery source has listed once, a state-of-the-world
    // answer would tell the client that unlisted clusters are gone: hold
    // the stream (its requests wait in HTTP/2 flow control) until then.
    if !snapshots.borrow().weighted.complete {
        debug!("waiting for the first complete list of every source");
        // Decided here, acted on below: the branches' `watch` guards must
        // not be held across an await.
        let stop = tokio::select! {
            ready = snapshots.wait_for(|s| s.weighted.complete) => {
                if ready.is_err() {
                    return;
                }
                false
            }
            _ = stopping.wait_for(|stop| *stop) => true,
            // A client that leaves while held gives its slot back now, not
            // when the sources list (which may be never).
            () = tx.closed() => return,
        };
        if stop {
            close_with(&tx, Err(Box::new(shutting_down("reconnect")))).await;
            return;
        }
        snapshots.mark_unchanged();
    }
    // A client may half-close after its requests (`grpcurl -d`): it is
    // still answered, and sent updates, until it goes.
    let mut inbound_open = true;
    let end = loop {
        let wants = stream.wants_to_send();
        tokio::select! {
            biased;
            message = inbound.message(), if inbound_open => match message {
                Ok(Some(request)) => {
                    if let Err(error) = Box::pin(receive::<P>(&shared, &mut stream, request, &tx)).await {
                        if let Some(limit) = error.limit() {
                            shared.metrics.limit_hits.get_or_create(&Metrics::limit(limit)).inc();
                        }
                        info!(%error, "closing stream");
                        close_with(&tx, Err(Box::new(error.into()))).await;
                        break "closed by server";
                    }
                    shared.clients.publish(&stream, P::NAME);
                }
                Ok(None) => {
                    debug!("client closed its side; it can no longer ACK or subscribe");
                    inbound_open = false;
                }
                Err(status) if status.code() == tonic::Code::OutOfRange => {
                    // tonic's decoder refused a message over the size limit.
                    shared.metrics.limit_hits.get_or_create(&Metrics::limit("request_bytes")).inc();
                    info!(%status, "closing stream: request too large");
                    close_with(&tx, Err(Box::new(Status::resource_exhausted(format!(
                        "request too large (--xds-max-request-bytes {}): {}",
                        shared.limits.max_request_bytes,
                        status.message()
                    ))))).await;
                    break "closed by server";
                }
                Err(status) => {
                    debug!(%status, "stream error");
                    // Tell the client why, if it is still there (a request
                    // that does not decode lands here).
                    close_with(&tx, Err(Box::new(Status::invalid_argument(format!(
                        "cannot read request: {}",
                        status.message()
                    ))))).await;
                    break "stream error";
                }
            },
            changed = stopping.changed() => {
                let stop = changed.is_err() || *stopping.borrow_and_update();
                if !stop {
                    continue;
                }
                // Clients reconnect (with their backoff) to another replica.
                close_with(&tx, Err(Box::new(shutting_down("reconnect")))).await;
                break "server shutting down";
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break "server shutting down";
                }
                let built = snapshots.borrow().built;
                stream.on_snapshot(built);
            },
            // Reading has ended: the only sign of the client going.
            () = tx.closed(), if !inbound_open => break "closed by client",
            permit = tx.reserve(), if wants => {
                let Ok(permit) = permit else { break "client gone" };
                // Not `borrow_and_update`: a snapshot published since
                // `changed()` was polled must still wake that branch, which
                // marks every started type for a look, not only those
                // waiting to send now.
                let snapshot = snapshots.borrow().clone();
                if let Some((kind, response, since)) = stream.next_response::<P>(&snapshot) {
                    let labels = Metrics::labels(P::NAME, kind.short_name());
                    shared.metrics.pushes.get_or_create(&labels).inc();
                    if let Some(since) = since {
                        shared
                            .metrics
                            .push_latency
                            .get_or_create(&labels)
                            .observe(Instant::now().saturating_duration_since(since).as_secs_f64());
                    }
                    permit.send(Ok(Box::new(response)));
                    shared.clients.publish(&stream, P::NAME);
                }
            },
        }
    };
    debug!(reason = end, "stream ended");
}

/// Handles one request.
async fn receive<P: Protocol>(
    shared: &Shared,
    stream: &mut Stream,
    request: P::Request,
    tx: &mpsc::Sender<Item<P>>,
) -> Result<(), XdsError> {
    let first_node = stream.peer.node_id.is_empty();
    let (kind, reply) = match stream.receive::<P>(&request, Instant::now())? {
        Received::Applied(kind, reply) => (kind, reply),
        Received::UnknownType(empty) => {
            if let Some(empty) = empty {
                info!(
                    type_url = P::type_url(&request),
                    "request for a type this server does not serve; answering empty"
                );
                // The queue holds at most one response; waiting here is
                // bounded by the client reading.
                let _ = tx.send(Ok(Box::new(empty))).await;
            }
            return Ok(());
        }
    };
    if first_node && !stream.peer.node_id.is_empty() {
        let span = tracing::Span::current();
        span.record("node", stream.peer.node_id.as_str());
        span.record("cluster", stream.peer.node_cluster.as_str());
        info!(user_agent = %stream.peer.user_agent, "client connected");
    }
    let labels = Metrics::labels(P::NAME, kind.short_name());
    match &reply {
        Reply::Ack => {
            shared.metrics.acks.get_or_create(&labels).inc();
        }
        Reply::Nack(_) | Reply::LateNack(_) => {
            shared.metrics.nacks.get_or_create(&labels).inc();
        }
        _ => {}
    }
    super::log_reply(kind, &reply, P::NAME);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_task_stays_small() {
        // Every idle stream keeps one of these alive; see docs/BENCHMARKS.md.
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let (tx, _rx) = mpsc::channel::<Item<Sotw>>(1);
        let (_snapshots_tx, snapshots) = watch::channel(Arc::new(crate::snapshot::build(
            Default::default(),
            0,
            None,
        )));
        let (_stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshots,
            stopping,
            clients: Clients::default(),
            metrics: Arc::new(Metrics::new()),
            limits: Arc::new(Limits::default()),
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            control_plane: Bytes::new(),
        });
        let size = size_of_future(&async move {
            let inbound: Option<Streaming<<Sotw as Protocol>::Request>> = None;
            if let Some(inbound) = inbound {
                drive::<Sotw>(shared, 1, String::new(), inbound, tx).await;
            }
        });
        // 2,296 bytes since a half-closed client is watched for leaving
        // (one more branch in the loop's select); a stream costs about
        // 12.6 KiB in all.
        assert!(size <= 2400, "stream task future is {size} bytes");
    }
}
