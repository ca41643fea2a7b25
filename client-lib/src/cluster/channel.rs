//! The `tower::Service` generated tonic clients call through.
//!
//! Owns: one call's way through the cluster: waiting for the first
//! assignment (fail-fast calls) or for a usable endpoint (wait-for-ready
//! calls), picking an endpoint, sending on it, and trying again where
//! [`super::retry`] allows; and readiness (always ready, or, asked to,
//! pending while no endpoint is usable).
//! Must never: block readiness unless asked to (`poll_ready` cannot see a
//! call's deadline; see [`LbChannel::ready_when_usable`]), change the
//! endpoint set (the balancer does), or send a request that may have been
//! processed a second time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::Status;
use tonic::body::Body;
use tower::Service;
use tracing::Instrument;

use super::EndpointSet;
use super::ready::{self, WaitForReady};
use super::retry::{self, Requeue};
use crate::endpoint::{Connection, Deadline, RequestBody};
use crate::load::Refusal;
use crate::telemetry::ClusterMetrics;

/// The first pause of a wait-for-ready call that every endpoint refused
/// (see `Calls::after_pause`).
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
/// The longest such pause.
const MAX_REFUSED_PAUSE: Duration = Duration::from_secs(2);

/// Balances calls over a cluster's usable endpoints by weight. Cheap to
/// clone (one reference count: a call clones it); clones share everything
/// but whether their calls wait for ready and what their readiness reflects
/// (other handles of the same cluster, e.g. another `lb.channel(name)`,
/// stay fail-fast and always ready).
pub struct LbChannel {
    calls: Calls,
    /// `poll_ready` is pending while no endpoint is usable (see
    /// [`LbChannel::ready_when_usable`]).
    ready_when_usable: bool,
    /// That wait, while `poll_ready` is pending (never shared by clones).
    until_usable: Option<UntilUsable>,
}

/// A wait for a usable endpoint; `Sync` so that the channel stays `Sync`
/// (applications share it).
type UntilUsable = std::pin::Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// The channel is shared between tasks and threads (e.g. in an `Arc` or an
/// axum state): keep it so.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<LbChannel>();
};

impl Clone for LbChannel {
    fn clone(&self) -> Self {
        Self {
            calls: self.calls.clone(),
            ready_when_usable: self.ready_when_usable,
            until_usable: None,
        }
    }
}

/// What a call takes of its channel (a clone of it lives in each call's
/// future, so it stays this small).
#[derive(Clone)]
struct Calls {
    shared: Arc<Shared>,
    /// Calls wait for a usable endpoint instead of failing fast (see
    /// [`LbChannel::wait_for_ready`]).
    wait_for_ready: bool,
}

impl std::fmt::Debug for LbChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbChannel")
            .field("cluster", &self.calls.shared.name)
            .field("wait_for_ready", &self.calls.wait_for_ready)
            .field("ready_when_usable", &self.ready_when_usable)
            .finish_non_exhaustive()
    }
}

/// Also the cluster's lifetime: when the last clone drops, `published`
/// closes and the balancer task ends (see `ClusterBalancer`).
#[derive(Debug)]
struct Shared {
    name: Box<str>,
    set: Arc<ArcSwap<EndpointSet>>,
    published: watch::Receiver<()>,
    first_assignment_timeout: Duration,
    metrics: ClusterMetrics,
}

impl LbChannel {
    pub(super) fn new(
        name: &str,
        set: Arc<ArcSwap<EndpointSet>>,
        published: watch::Receiver<()>,
        first_assignment_timeout: Duration,
        metrics: ClusterMetrics,
    ) -> Self {
        Self {
            calls: Calls {
                shared: Arc::new(Shared {
                    name: name.into(),
                    set,
                    published,
                    first_assignment_timeout,
                    metrics,
                }),
                wait_for_ready: false,
            },
            ready_when_usable: false,
            until_usable: None,
        }
    }

    /// This channel with gRPC's wait-for-ready semantics for every call:
    /// a call that finds no usable endpoint (none assigned yet, or every
    /// one ejected), or whose attempts all failed to connect, waits for one
    /// until its deadline (without a deadline, as long as it takes) instead
    /// of failing fast with UNAVAILABLE. After its attempts all failed to
    /// connect it tries the usable endpoints it has not tried yet, then
    /// waits for the balancer's next endpoint set and starts over; when the
    /// endpoints answer but refused it (refused streams, GOAWAY), it tries
    /// them again after a pause (100 ms, doubling up to 2 s). The cap on
    /// transparent retries holds between such waits, not across them.
    /// Nothing that may have been processed is sent again. One call can ask
    /// for it alone with the [`WaitForReady`] request extension. Readiness
    /// (`poll_ready`) still never blocks: it cannot see a call's deadline
    /// (see [`LbChannel::until_usable`]).
    #[must_use]
    pub fn wait_for_ready(mut self) -> Self {
        self.calls.wait_for_ready = true;
        self
    }

    /// This channel with readiness that reflects its endpoints, for tower
    /// middleware that reads it (a balancer over several clusters, load
    /// shedding, `ServiceExt::ready` under a timeout): `poll_ready` is
    /// pending while no endpoint is usable (before the first assignment,
    /// and while every endpoint is ejected or out for a penalty) and ready
    /// once one is; an error if the cluster's balancer has stopped (nothing
    /// will become usable: a [`super::ClusterBalancer`] the application
    /// made was dropped; a channel from `Client::channel` keeps its cluster
    /// followed while it lives, after the `Client` too).
    ///
    /// Not for a tonic-generated client on its own: it waits for readiness
    /// before its request exists, so the call's deadline cannot bound that
    /// wait, and while nothing is usable the call would wait with no
    /// bound. The default channel is always ready instead: a call that
    /// finds nothing usable fails fast with UNAVAILABLE (or, with
    /// [`LbChannel::wait_for_ready`], waits within its deadline).
    #[must_use]
    pub fn ready_when_usable(mut self) -> Self {
        self.ready_when_usable = true;
        self
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.calls.shared.name
    }

    /// Waits until some endpoint is usable (assigned, not ejected and not
    /// out for a penalty; at once if one is), where the caller can bound the wait
    /// (`tokio::time::timeout`): e.g. to hold a service's own readiness
    /// until its backends are. `false`: the cluster's balancer has stopped
    /// (a [`super::ClusterBalancer`] the application made was dropped; the
    /// channel keeps its last endpoint set, which has none usable, and no
    /// set will follow). A channel from `Client::channel` keeps its
    /// cluster followed while it lives.
    pub async fn until_usable(&self) -> bool {
        self.calls.shared.until_usable().await
    }

    /// Whether some endpoint can take a call now.
    pub fn is_usable(&self) -> bool {
        self.calls.shared.set.load().usable() > 0
    }

    /// Endpoints taking calls now (not ejected, not out for a penalty).
    pub fn usable_endpoints(&self) -> usize {
        self.calls.shared.set.load().usable()
    }

    /// Endpoints in the latest assignment, usable or not (0 before the
    /// first).
    pub fn assigned_endpoints(&self) -> usize {
        self.calls.shared.set.load().assigned_endpoints
    }
}

impl Calls {
    /// Picks an endpoint not in `tried` (each with whether its connection
    /// failed): a few weighted draws, then (the draws keep landing on tried
    /// endpoints, as they do when the tried ones carry most of the weight)
    /// the first untried endpoint, then, if the connection to every usable
    /// endpoint failed, one of a lower tier (the balancer is about to fail
    /// over).
    fn pick_untried(&self, tried: &[(SocketAddr, bool)]) -> Option<Connection> {
        let was_tried = |address| tried.iter().any(|(t, _)| *t == address);
        let failed = |address| tried.iter().any(|(t, failed)| *t == address && *failed);
        let set = self.shared.set.load();
        let endpoint = (0..4)
            .filter_map(|_| set.pick())
            .find(|endpoint| !was_tried(endpoint.address))
            .or_else(|| set.untried(was_tried))
            .or_else(|| set.fallback(failed, was_tried))?;
        endpoint.metrics.picks.increment(1);
        Some(endpoint.connection.clone())
    }

    /// Whether the call with head `parts` waits for ready (the channel's
    /// or the call's choice). Asked only off the path every call takes.
    fn waits_for_ready(&self, parts: &http::request::Parts) -> bool {
        self.wait_for_ready || parts.extensions.get::<WaitForReady>().is_some()
    }

    /// The endpoint `pick` finds in the cluster's endpoint set, now or in
    /// a set the balancer publishes later, for a wait-for-ready call: up to
    /// its deadline; `waiting` says for what, should it pass.
    async fn pick_within(
        &self,
        deadline: Option<Deadline>,
        waiting: &str,
        pick: impl FnMut(&EndpointSet) -> Option<Connection>,
    ) -> Result<Connection, Status> {
        let name = &self.shared.name;
        let next = ready::until(&self.shared.set, &self.shared.published, pick);
        ready::within(name, deadline, waiting, next)
            .await?
            .ok_or_else(|| ready::stopped(name))
    }

    /// An endpoint for a wait-for-ready call whose every attempt failed to
    /// connect (`tried`): the first usable one not tried while the cluster
    /// still has the endpoint set `seen` it failed in, any usable one once
    /// the balancer has published another (it ejected the failed ones, or
    /// probed them back). Up to the call's deadline.
    async fn requeue(
        &self,
        seen: &Arc<EndpointSet>,
        tried: &mut Vec<(SocketAddr, bool)>,
        deadline: Option<Deadline>,
    ) -> Result<Connection, Status> {
        self.pick_within(deadline, "no endpoint was reachable", |set| {
            if !std::ptr::eq(set, &**seen) {
                tried.clear();
            }
            self.pick_untried(tried)
        })
        .await
    }

    /// An endpoint for a wait-for-ready call with none left to try, as
    /// `requeue` says; `pauses` counts the rounds it paused.
    async fn go_on(
        &self,
        requeue: Requeue,
        pauses: &mut u32,
        tried: &mut Vec<(SocketAddr, bool)>,
        deadline: Option<Deadline>,
    ) -> Result<Connection, Status> {
        match requeue {
            Requeue::NextSet => {
                // Refused streams say nothing of the endpoint.
                tried.retain(|&(_, failed)| failed);
                let seen = self.shared.set.load_full();
                self.requeue(&seen, tried, deadline).await
            }
            Requeue::Pause => {
                let round = *pauses;
                *pauses = pauses.saturating_add(1);
                self.after_pause(round, tried, deadline).await
            }
        }
    }

    /// An endpoint for a wait-for-ready call that every endpoint refused
    /// though they answer (refused streams, GOAWAY): any usable one again,
    /// after a pause that doubles with each such round (`round`, from 0:
    /// 100 ms, up to 2 s, give or take a fifth). Up to the call's deadline.
    async fn after_pause(
        &self,
        round: u32,
        tried: &mut Vec<(SocketAddr, bool)>,
        deadline: Option<Deadline>,
    ) -> Result<Connection, Status> {
        let pause = crate::endpoint::backoff(REFUSED_PAUSE, MAX_REFUSED_PAUSE, round);
        let name = &self.shared.name;
        let pause = tokio::time::sleep(pause);
        ready::within(name, deadline, "every endpoint refused the call", pause).await?;
        tried.clear();
        self.pick_within(deadline, "no endpoint was usable", |_| {
            self.pick_untried(&[])
        })
        .await
    }

    /// Waits for the first assignment, up to the configured timeout or the
    /// call's deadline, whichever comes first.
    async fn assigned(&self, deadline: Option<Deadline>) -> Result<(), Status> {
        let assigned = |set: &EndpointSet| set.assigned.then_some(());
        // A stopped balancer ends it too: the pick then says what is wrong.
        let wait = async {
            ready::until(&self.shared.set, &self.shared.published, assigned).await;
        };
        let timeout = self.shared.first_assignment_timeout;
        let limit = crate::clock::later(tokio::time::Instant::now(), timeout);
        match deadline {
            Some(deadline) if deadline.at < limit => tokio::time::timeout_at(deadline.at, wait)
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "cluster {}: deadline of {:?} passed before the first assignment",
                        self.shared.name, deadline.after
                    ))
                }),
            _ => tokio::time::timeout_at(limit, wait).await.map_err(|_| {
                Status::unavailable(format!(
                    "cluster {}: no assignment from the control plane within {:?}",
                    self.shared.name, self.shared.first_assignment_timeout
                ))
            }),
        }
    }
}

impl Shared {
    /// See [`LbChannel::until_usable`].
    async fn until_usable(&self) -> bool {
        let usable = |set: &EndpointSet| (set.usable() > 0).then_some(());
        ready::until(&self.set, &self.published, usable)
            .await
            .is_some()
    }
}

impl Service<http::Request<Body>> for LbChannel {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // By default never blocks: calls wait for the first assignment (or,
        // wait for ready, for a usable endpoint) within their deadlines,
        // which readiness cannot see, or fail fast with UNAVAILABLE (a
        // status tonic passes through; it would turn a readiness error into
        // UNKNOWN).
        if !self.ready_when_usable || self.is_usable() {
            self.until_usable = None;
            return Poll::Ready(Ok(()));
        }
        let shared = self.calls.shared.clone();
        let wait = self
            .until_usable
            .get_or_insert_with(|| Box::pin(async move { shared.until_usable().await }));
        let usable = std::task::ready!(wait.as_mut().poll(cx));
        self.until_usable = None;
        if usable {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(ready::stopped(&self.calls.shared.name).into()))
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.calls.clone();
        // Split here, not in the future: a value moved inside a future still
        // takes room in it, and one such future is allocated per call.
        let (parts, body) = request.into_parts();
        // Fixed once: retries share the call's deadline.
        let deadline = Deadline::of(&parts.headers);
        Box::pin(async move {
            if !this.shared.set.load().assigned && !this.waits_for_ready(&parts) {
                // Boxed: a rare wait should not grow every call's future.
                Box::pin(this.assigned(deadline)).await?;
            }
            let mut body = RequestBody::read(body).await?;
            // Endpoints not to try again, each with whether its connection
            // failed, and the one that may be tried once more (its
            // connection, not the endpoint, refused).
            let mut tried: Vec<(SocketAddr, bool)> = Vec::new();
            let mut spared: Option<SocketAddr> = None;
            let mut attempts = 0;
            // Rounds a wait-for-ready call paused for endpoints that
            // refused it.
            let mut pauses: u32 = 0;
            let mut connection = match this.pick_untried(&tried) {
                Some(connection) => connection,
                None if this.waits_for_ready(&parts) => {
                    let usable = |_: &EndpointSet| this.pick_untried(&[]);
                    // Boxed: a rare wait should not grow every call's future.
                    Box::pin(this.pick_within(deadline, "no endpoint was usable", usable)).await?
                }
                None => {
                    let set = this.shared.set.load();
                    return Err(Status::unavailable(format!(
                        "cluster {}: none of its {} endpoints is reachable",
                        this.shared.name, set.assigned_endpoints
                    ))
                    .into());
                }
            };
            loop {
                let address = connection.address();
                // Only built when someone listens: formatting the fields
                // for nobody costs more than the pick.
                let span = if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::debug_span!("lookaside_call", cluster = %this.shared.name, endpoint = %address)
                } else {
                    tracing::Span::none()
                };
                attempts += 1;
                let attempt = crate::endpoint::call(&connection, &parts, &mut body, deadline);
                let error = match attempt.instrument(span).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                };
                let failed = error.connection_failed();
                if failed {
                    // Eject the endpoint; the balancer probes it back.
                    connection.report_failure();
                }
                let requeue = this
                    .waits_for_ready(&parts)
                    .then(|| retry::requeue(&error, body.replayable()))
                    .flatten();
                let retry = retry::may_retry(&error, body.replayable(), attempts);
                // A stream refused, or past a graceful GOAWAY: the endpoint
                // is fine and its next connection may take the call.
                if (retry || requeue.is_some()) && (failed || spared.replace(address).is_some()) {
                    tried.push((address, failed));
                }
                let next = if retry {
                    this.pick_untried(&tried)
                } else {
                    None
                };
                // An attempt the endpoint refused counts failed there after
                // all if the call goes nowhere else, or is dropped while it
                // waits (load reports).
                let refusal = Refusal::new(error.refused().then(|| connection.load().clone()));
                connection = match (next, requeue) {
                    (Some(next), _) => {
                        refusal.went_on();
                        next
                    }
                    (None, Some(requeue)) => {
                        let next = this.go_on(requeue, &mut pauses, &mut tried, deadline);
                        let next = Box::pin(next).await?;
                        refusal.went_on();
                        spared = None;
                        attempts = 0;
                        next
                    }
                    // None left: this error says more than "none is
                    // reachable".
                    (None, None) => return Err(error.status(&this.shared.name).into()),
                };
                this.shared.metrics.retries.increment(1);
                tracing::debug!(cluster = %this.shared.name, endpoint = %address, error = %crate::telemetry::error_chain(&error), "request not processed; trying again");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// One such future is allocated per call. At 1 KiB or less it comes
    /// from glibc's per-thread cache; above, every call takes the arena's
    /// slower path (it measured 1,432 bytes before the request head was
    /// built after the connection is ready).
    #[tokio::test]
    async fn a_calls_future_fits_in_a_kibibyte() {
        let (_balancer, mut channel) = super::super::ClusterBalancer::spawn(
            "sized",
            Default::default(),
            Duration::from_secs(1),
        );
        let future = channel.call(http::Request::new(Body::empty()));
        let size = std::mem::size_of_val(&*future);
        assert!(size <= 1024, "a call's future takes {size} bytes");
    }

    /// A channel over `serving` (address, weight) and `fallback` endpoints
    /// (one tier) of loopback ports nothing needs to answer on; no
    /// balancer behind it.
    fn channel_over(serving: &[(u16, u32)], fallback: &[u16]) -> LbChannel {
        let (failures, _reported) = mpsc::unbounded_channel();
        let endpoint = |port| {
            crate::endpoint::Endpoint::new(
                "test",
                loopback(port),
                &Default::default(),
                failures.clone(),
                Default::default(),
            )
        };
        let set = EndpointSet::new(
            serving
                .iter()
                .map(|&(port, w)| (endpoint(port), w))
                .collect(),
            vec![fallback.iter().map(|&port| endpoint(port)).collect()],
            serving.len() + fallback.len(),
        );
        let (_published, published) = watch::channel(());
        LbChannel::new(
            "test",
            Arc::new(ArcSwap::from_pointee(set)),
            published,
            Duration::from_secs(1),
            ClusterMetrics::new("test"),
        )
    }

    /// A channel whose cluster's latest assignment is empty (nothing is
    /// usable), and its balancer.
    fn assigned_nothing() -> (super::super::ClusterBalancer, LbChannel) {
        let (balancer, channel) = super::super::ClusterBalancer::spawn(
            "empty",
            Default::default(),
            Duration::from_secs(1),
        );
        balancer.assign(Vec::new());
        (balancer, channel)
    }

    /// A request with a deadline of `ms` milliseconds.
    fn request_within(ms: u64) -> http::Request<Body> {
        let mut request = http::Request::new(Body::empty());
        request.headers_mut().insert(
            "grpc-timeout",
            http::HeaderValue::from_str(&format!("{ms}m")).unwrap(),
        );
        request
    }

    async fn ready_within(channel: &mut LbChannel, after: Duration) -> bool {
        matches!(
            tokio::time::timeout(after, tower::ServiceExt::ready(channel)).await,
            Ok(Ok(_))
        )
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_readiness_never_blocks_and_a_call_with_nothing_usable_fails_fast() {
        let (_balancer, mut channel) = assigned_nothing();
        assert!(ready_within(&mut channel, Duration::from_millis(1)).await);
        let failed = channel.call(request_within(10_000)).await.unwrap_err();
        let status = Status::from_error(failed);
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("cluster empty"), "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_can_reflect_whether_an_endpoint_is_usable() {
        let (balancer, channel) = assigned_nothing();
        let mut channel = channel.ready_when_usable();
        let mut other = channel.clone();
        assert!(
            !ready_within(&mut channel, Duration::from_secs(5)).await,
            "ready with nothing usable"
        );
        balancer.assign(vec![(refusing_then_answering_peer(0).await, 1)]);
        assert!(ready_within(&mut channel, Duration::from_secs(1)).await);
        assert!(
            ready_within(&mut other, Duration::from_secs(1)).await,
            "a clone, which never waited"
        );
        let answered = tower::ServiceExt::oneshot(&mut channel, request_within(1000)).await;
        assert!(answered.is_ok(), "{answered:?}");
        balancer.assign(Vec::new());
        let shared = &channel.calls.shared;
        let published = ready::until(&shared.set, &shared.published, |set| {
            (set.usable() == 0).then_some(())
        });
        tokio::time::timeout(Duration::from_secs(1), published)
            .await
            .expect("the empty assignment is published");
        assert!(
            !ready_within(&mut channel, Duration::from_secs(5)).await,
            "ready with nothing usable any more"
        );
        drop(balancer);
        let stopped = tokio::time::timeout(
            Duration::from_secs(1),
            tower::ServiceExt::ready(&mut channel),
        )
        .await
        .expect("a stopped balancer ends the wait");
        let status = Status::from_error(stopped.unwrap_err());
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("cluster empty"), "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn until_usable_waits_for_an_endpoint_that_can_take_calls() {
        let (balancer, channel) = assigned_nothing();
        let channel = channel.wait_for_ready();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), channel.until_usable())
                .await
                .is_err(),
            "usable with nothing assigned"
        );
        assert!(
            ready_within(&mut channel.clone(), Duration::from_millis(1)).await,
            "readiness never blocks, even waiting for ready"
        );
        balancer.assign(vec![(refusing_then_answering_peer(0).await, 1)]);
        let usable = tokio::time::timeout(Duration::from_secs(1), channel.until_usable()).await;
        assert_eq!(usable, Ok(true));
        drop(balancer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_ready_call_waits_for_a_usable_endpoint_until_its_deadline() {
        let (_balancer, channel) = assigned_nothing();
        let mut channel = channel.wait_for_ready();
        let started = tokio::time::Instant::now();
        let failed = channel.call(request_within(300)).await.unwrap_err();
        let status = Status::from_error(failed);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("wait for ready"), "{status:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn one_call_can_wait_for_ready_on_a_fail_fast_channel() {
        let (_balancer, mut channel) = assigned_nothing();
        let mut request = request_within(300);
        request.extensions_mut().insert(WaitForReady);
        let status = Status::from_error(channel.call(request).await.unwrap_err());
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        let other = Status::from_error(channel.call(request_within(300)).await.unwrap_err());
        assert_eq!(
            other.code(),
            tonic::Code::Unavailable,
            "the channel's other calls stay fail-fast: {other:?}"
        );
    }

    /// An HTTP/2 server that refuses its first `refusing` requests
    /// (`REFUSED_STREAM`: not processed, as a server shedding load says),
    /// then answers every request with a trailers-only status OK.
    async fn refusing_then_answering_peer(refusing: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let refused = refused.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = connection.accept().await {
                        if refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < refusing {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                        } else {
                            // Trailers-only: status OK in the head, which
                            // ends the stream.
                            let mut ok = http::Response::new(());
                            ok.headers_mut()
                                .insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = respond.send_response(ok, true);
                        }
                    }
                });
            }
        });
        address
    }

    /// A channel over one endpoint at `peer` (no balancer behind it), the
    /// endpoint's load counters, and what keeps its endpoint set published.
    fn channel_at(peer: SocketAddr) -> (LbChannel, crate::load::EndpointLoad, watch::Sender<()>) {
        let (failures, _reported) = mpsc::unbounded_channel();
        let load = crate::load::EndpointLoad::default();
        let endpoint = crate::endpoint::Endpoint::new(
            "test",
            peer,
            &Default::default(),
            failures,
            load.clone(),
        );
        let set = EndpointSet::new(vec![(endpoint, 1)], Vec::new(), 1);
        let (publish, published) = watch::channel(());
        let channel = LbChannel::new(
            "test",
            Arc::new(ArcSwap::from_pointee(set)),
            published,
            Duration::from_secs(1),
            ClusterMetrics::new("test"),
        );
        (channel, load, publish)
    }

    /// A wait-for-ready call its only endpoint refuses until the call's
    /// deadline fails then, and counts failed on that endpoint once (its
    /// refused attempts were withdrawn while it went on).
    #[tokio::test]
    async fn a_refused_call_that_goes_nowhere_counts_failed_once() {
        let (channel, load, _publish) = channel_at(refusing_then_answering_peer(usize::MAX).await);
        let mut channel = channel.wait_for_ready();
        let failed =
            tokio::time::timeout(Duration::from_secs(10), channel.call(request_within(300)))
                .await
                .expect("the call ends at its deadline");
        assert!(failed.is_err());
        let totals = load.totals();
        assert_eq!((totals.issued, totals.succeeded, totals.failed), (1, 0, 1));
    }

    /// The same call without a deadline, dropped by the application after
    /// a while (in a pause between tries, or in an attempt): failed once.
    #[tokio::test]
    async fn a_refused_call_dropped_while_it_waits_counts_failed_once() {
        let (channel, load, _publish) = channel_at(refusing_then_answering_peer(usize::MAX).await);
        let mut channel = channel.wait_for_ready();
        let call = channel.call(http::Request::new(Body::empty()));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), call)
                .await
                .is_err(),
            "no deadline: it waits on"
        );
        let totals = load.totals();
        assert_eq!((totals.issued, totals.succeeded, totals.failed), (1, 0, 1));
    }

    /// A wait-for-ready call that its only endpoint keeps refusing (refused
    /// streams; a GOAWAY on every new connection takes the same path) tries
    /// again after a pause until the endpoint takes it, where a fail-fast
    /// call fails once its transparent retries are spent.
    #[tokio::test]
    async fn a_wait_for_ready_call_an_endpoint_refuses_tries_again_after_a_pause() {
        for wait_for_ready in [false, true] {
            let (channel, load, _publish) = channel_at(refusing_then_answering_peer(4).await);
            let mut channel = if wait_for_ready {
                channel.wait_for_ready()
            } else {
                channel
            };
            let started = tokio::time::Instant::now();
            let answered =
                tokio::time::timeout(Duration::from_secs(10), channel.call(request_within(8_000)))
                    .await
                    .expect("the call ends within its deadline");
            if wait_for_ready {
                assert!(answered.is_ok(), "{answered:?}");
                assert!(
                    started.elapsed() >= REFUSED_PAUSE * 4 / 5,
                    "it paused before trying again"
                );
            } else {
                let status = Status::from_error(answered.unwrap_err());
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            }
            // For load reports, refused attempts that went on count
            // nowhere: the endpoint counts the call once, the one it took
            // and answered OK, trailers-only (wait for ready), or the last
            // it refused (fail fast, which then gave up).
            let totals = load.totals();
            assert_eq!(
                (totals.issued, totals.succeeded, totals.failed),
                (1, u64::from(wait_for_ready), u64::from(!wait_for_ready)),
                "wait for ready: {wait_for_ready}"
            );
        }
    }

    /// A wait-for-ready call whose attempt fails to connect while the
    /// cluster still counts the endpoint usable (the balancer has not
    /// ejected it yet) waits for the next endpoint set rather than fail.
    #[tokio::test]
    async fn a_wait_for_ready_call_that_failed_to_connect_waits_for_the_next_set() {
        let down = {
            let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            reserved.local_addr().unwrap()
        };
        let (failures, mut reported) = mpsc::unbounded_channel();
        let set_at = |address| {
            let endpoint = crate::endpoint::Endpoint::new(
                "test",
                address,
                &Default::default(),
                failures.clone(),
                Default::default(),
            );
            Arc::new(EndpointSet::new(vec![(endpoint, 1)], Vec::new(), 1))
        };
        let set = Arc::new(ArcSwap::new(set_at(down)));
        let (publish, published) = watch::channel(());
        let channel = LbChannel::new(
            "test",
            set.clone(),
            published,
            Duration::from_secs(1),
            ClusterMetrics::new("test"),
        )
        .wait_for_ready();
        let call = tokio::spawn(channel.clone().call(request_within(10_000)));
        // The call waits for the next set once it holds a receiver of its
        // own (the channel holds the other).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while publish.receiver_count() < 2 {
            assert!(!call.is_finished(), "the call gave up");
            assert!(
                tokio::time::Instant::now() < deadline,
                "the call never waited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(reported.recv().await, Some(down), "the endpoint failed");

        set.store(set_at(refusing_then_answering_peer(0).await));
        publish.send_replace(());
        let answered = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("answered once another set is published")
            .unwrap();
        assert!(answered.is_ok(), "{answered:?}");
    }

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// With the tried endpoint carrying nearly all the weight, weighted
    /// draws keep landing on it; the untried one must still be found.
    #[tokio::test]
    async fn a_retry_finds_the_light_endpoint_beside_a_heavy_tried_one() {
        let channel = channel_over(&[(1, 999), (2, 1)], &[]);
        for _ in 0..1000 {
            let picked = channel
                .calls
                .pick_untried(&[(loopback(1), false)])
                .map(|c| c.address());
            assert_eq!(picked, Some(loopback(2)));
        }
        assert!(
            channel
                .calls
                .pick_untried(&[(loopback(1), false), (loopback(2), true)])
                .is_none()
        );
    }

    /// The connection to the serving tier's last endpoint failed and the
    /// balancer has not failed over yet: the retry goes to the next tier,
    /// spread over its endpoints, which no first attempt ever does, nor a
    /// retry after a refused stream.
    #[tokio::test]
    async fn a_retry_falls_back_on_the_next_tier_before_the_balancer_fails_over() {
        let channel = channel_over(&[(1, 1)], &[2, 3]);
        let serving = loopback(1);
        for _ in 0..100 {
            let picked = channel.calls.pick_untried(&[]).map(|c| c.address());
            assert_eq!(
                picked,
                Some(serving),
                "first attempts stay on the serving tier"
            );
        }
        let refused = channel
            .calls
            .pick_untried(&[(serving, false)])
            .map(|c| c.address());
        assert_eq!(refused, None, "a refused stream is no reason to fail over");
        let retried: std::collections::BTreeSet<u16> = (0..10)
            .filter_map(|_| channel.calls.pick_untried(&[(serving, true)]))
            .map(|c| c.address().port())
            .collect();
        assert_eq!(retried, [2, 3].into(), "retries spread over the next tier");
        assert_eq!(channel.usable_endpoints(), 1, "the fallback is not serving");
        let all = [(serving, true), (loopback(2), true), (loopback(3), false)];
        assert!(channel.calls.pick_untried(&all).is_none());
    }
}
