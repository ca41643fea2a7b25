//! One endpoint's HTTP/2 connection: made on demand, one attempt at a time
//! (or taken over from the probe that found an ejected endpoint back),
//! watched with keepalive PINGs, and replaced when it ends.
//!
//! Owns: when to connect (one attempt at a time, within the connect
//! timeout; the steps are in [`super::dial`]), the task that drives the
//! connection (polled once per scheduler pass: [`super::coalescing`]; its
//! PINGs: [`super::keepalive`]), making it again unasked when it ends (with
//! backoff after early ends; never for a removed endpoint), and handing
//! callers a live `SendRequest` with their call counted in flight on it
//! (once the server allows one more stream: [`super::in_flight`]). An attempt to connect runs on its own
//! task, shared by every call that waits for it: a call whose deadline
//! passes stops waiting, the attempt goes on, and a failed attempt is
//! reported to the cluster (which ejects the endpoint) whoever waited, at
//! most one report waiting per endpoint. Calls go straight onto the h2
//! connection from the caller's task: no dispatch queue, no task per call.
//! A connection whose every handle is gone (the endpoint was removed)
//! closes once its in-flight calls finish.
//! Must never: retry a request or decide whether the endpoint is usable
//! (the cluster does), or hold the endpoint alive from its own task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared as SharedFuture};
use h2::client::SendRequest;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};

use super::backoff::backoff;
use super::coalescing::Coalescing;
use super::dial::{Established, establish};
use super::in_flight::{Calls, InFlight};
use super::keepalive::keepalive;
use super::{ConnectionSettings, EndpointError};
use crate::load::EndpointLoad;

/// A lazily made, self-replacing HTTP/2 connection to one endpoint. Cheap
/// to clone; clones share the connection.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    cluster: Arc<str>,
    address: SocketAddr,
    authority: http::uri::Authority,
    /// `https` over TLS, else `http`.
    scheme: http::uri::Scheme,
    settings: ConnectionSettings,
    /// The connection calls use now, if any.
    live: ArcSwapOption<Live>,
    /// The latest attempt to connect (numbered), finished or not.
    attempt: Mutex<Option<(u64, Attempt)>>,
    /// Where failed connections are reported (the cluster ejects the
    /// endpoint until it answers again).
    failures: Failures,
    /// A failure was reported and the balancer has not taken it yet: one
    /// report per endpoint waits at most, so the queue, unbounded, holds
    /// at most one report per endpoint.
    failure_reported: AtomicBool,
    /// Connections in a row that ended before they were stable: each
    /// doubles the wait before the next one is made unasked.
    short_lived: AtomicU32,
    next_id: AtomicU64,
    /// PING interval of new connections, in milliseconds: the configured
    /// one, doubled each time the peer said "too many pings".
    keepalive_ms: AtomicU64,
    /// Connections made.
    made: metrics::Counter,
    /// Calls held back past the server's stream limit, on any of its
    /// connections.
    waiting_for_stream: metrics::Gauge,
    /// What the calls to the endpoint did, for load reports.
    load: EndpointLoad,
    /// The endpoint left the assignment: its connection serves the calls
    /// still on it, and is not made again unasked when it ends.
    retired: AtomicBool,
}

/// The longest keepalive interval doubling reaches.
const MAX_KEEPALIVE: Duration = crate::clock::LONGEST_PERIOD;

/// A connection that lived this long was stable: the next one is made at
/// once when it ends, and the reconnect backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Where an endpoint's failed connections are reported: the cluster's
/// balancer, which ejects it. One report per endpoint waits at most (see
/// `Connection::report_failure`).
pub(crate) type Failures = mpsc::UnboundedSender<SocketAddr>;

/// An attempt to connect, on its own task; every waiting call shares it.
type Attempt = SharedFuture<BoxFuture<'static, Result<Arc<Live>, EndpointError>>>;

#[derive(Debug)]
struct Live {
    id: u64,
    send: SendRequest<Bytes>,
    calls: Calls,
}

impl Connection {
    /// A connection to `address` of `cluster`, made on first use; attempts
    /// that fail are reported on `failures`, every call on `load`.
    pub(crate) fn new(
        cluster: &str,
        address: SocketAddr,
        settings: &ConnectionSettings,
        failures: Failures,
        load: EndpointLoad,
    ) -> Self {
        // Requests name the server as its certificate does: the configured
        // server name, else the address (which always prints as a valid
        // authority).
        let authority = settings
            .tls
            .as_ref()
            .and_then(|tls| tls.dns_name())
            .map_or_else(
                || address.to_string(),
                |name| format!("{name}:{}", address.port()),
            )
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("0.0.0.0"));
        let scheme = match settings.tls {
            Some(_) => http::uri::Scheme::HTTPS,
            None => http::uri::Scheme::HTTP,
        };
        Self {
            shared: Arc::new(Shared {
                cluster: cluster.into(),
                address,
                authority,
                scheme,
                settings: settings.clone(),
                live: ArcSwapOption::empty(),
                attempt: Mutex::new(None),
                failures,
                failure_reported: AtomicBool::new(false),
                short_lived: AtomicU32::new(0),
                next_id: AtomicU64::new(0),
                keepalive_ms: AtomicU64::new(
                    u64::try_from(settings.keepalive_interval.as_millis()).unwrap_or(u64::MAX),
                ),
                made: crate::telemetry::connections(cluster, address),
                waiting_for_stream: crate::telemetry::waiting_for_stream(cluster, address),
                load,
                retired: AtomicBool::new(false),
            }),
        }
    }

    /// Starts connecting now, so the first call does not wait for it.
    pub(crate) fn warm_up(&self) {
        drop(self.shared.attempt());
    }

    /// The endpoint recovered with `established`, the connection its probe
    /// made: that is its connection now (none is made again), unless one
    /// is live or being made already.
    pub(crate) fn adopt(&self, established: Established) {
        self.shared.adopt(established);
    }

    /// The endpoint left the assignment: calls still on the connection
    /// finish, but it is not replaced unasked when it ends.
    pub(crate) fn retire(&self) {
        self.shared.retired.store(true, Ordering::Release);
    }

    /// Reports that a connection to the endpoint failed, unless a report
    /// is already waiting for the balancer.
    pub(crate) fn report_failure(&self) {
        self.shared.report_failure();
    }

    /// The balancer took the waiting report: the next failure is reported.
    pub(crate) fn failure_taken(&self) {
        self.shared.failure_reported.store(false, Ordering::Release);
    }

    /// The endpoint's address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// What the calls to the endpoint did, for load reports.
    pub(crate) fn load(&self) -> &EndpointLoad {
        &self.shared.load
    }

    /// The `:scheme` requests carry.
    pub(crate) fn scheme(&self) -> &http::uri::Scheme {
        &self.shared.scheme
    }

    /// The `:authority` requests carry.
    pub(crate) fn authority(&self) -> &http::uri::Authority {
        &self.shared.authority
    }

    /// A handle ready to open one stream, and the call counted in flight
    /// on its connection, once the server allows one more stream (see
    /// [`Calls`]). A connection that has ended (the peer sent GOAWAY, or it
    /// failed, also while the call waited for a stream) is replaced by a
    /// new one first.
    pub(crate) async fn ready(&self) -> Result<(SendRequest<Bytes>, InFlight), EndpointError> {
        let mut replaced = false;
        loop {
            let live = match self.shared.live.load_full() {
                Some(live) => live,
                // Boxed: connecting is rare, and its future is large; every
                // call's future would otherwise carry it.
                None => Box::pin(self.shared.current()).await?,
            };
            match live.send.clone().ready().await {
                Ok(send) => {
                    let probe = || match send.clone().ready().now_or_never() {
                        Some(Err(_)) => None,
                        _ => Some(send.current_max_send_streams()),
                    };
                    if let Some(in_flight) = live.calls.start(&probe).await {
                        return Ok((send, in_flight));
                    }
                    // Ended, or past GOAWAY, while the call waited: the
                    // next pass finds it so and replaces it.
                }
                Err(source) => {
                    self.shared.forget(live.id);
                    if replaced {
                        return Err(EndpointError::Open {
                            address: self.shared.address,
                            source: Arc::new(source),
                        });
                    }
                    debug!(cluster = %self.shared.cluster, endpoint = %self.shared.address, error = %source, "connection ended; connecting again");
                    replaced = true;
                }
            }
        }
    }
}

impl Shared {
    fn report_failure(&self) {
        // A retired endpoint's report could only eject the endpoint that
        // took its address since.
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        if !self.failure_reported.swap(true, Ordering::AcqRel) {
            // Closed: the cluster is gone, nobody needs to know.
            let _ = self.failures.send(self.address);
        }
    }

    /// How long after a connection that lived `lived` was made the next
    /// one is made unasked: at once after a stable one; after one that
    /// ended early, the reconnect backoff, doubled for each such
    /// connection in a row, with jitter.
    fn reconnect_delay(&self, lived: Duration) -> Duration {
        if lived >= STABLE_AFTER {
            self.short_lived.store(0, Ordering::Relaxed);
            return Duration::ZERO;
        }
        let before = self.short_lived.fetch_add(1, Ordering::Relaxed);
        backoff(
            self.settings.reconnect_backoff_initial,
            self.settings.reconnect_backoff_max,
            before,
        )
    }

    /// The live connection, connecting first if there is none.
    async fn current(self: &Arc<Self>) -> Result<Arc<Live>, EndpointError> {
        if let Some(live) = self.live.load_full() {
            return Ok(live);
        }
        self.attempt().await
    }

    /// The attempt under way, or a new one.
    fn attempt(self: &Arc<Self>) -> Attempt {
        let mut slot = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(attempt) = under_way(&slot) {
            return attempt.clone();
        }
        // An attempt stores its connection before it clears the slot (under
        // this lock): a caller that found no connection a moment ago and no
        // attempt now uses the new connection instead of making another.
        if let Some(live) = self.live.load_full() {
            return futures::future::ready(Ok(live)).boxed().shared();
        }
        let number = self.next_id.fetch_add(1, Ordering::Relaxed);
        // The task holds the endpoint for at most the connect timeout.
        let shared = self.clone();
        let task = tokio::spawn(async move {
            let result = shared.connect(number).await;
            // A connection made is stored by `start`, before its driver
            // could forget it.
            if let Err(error) = &result {
                debug!(cluster = %shared.cluster, endpoint = %shared.address, error = %crate::telemetry::error_chain(error), "could not connect");
                // Not a peer that closed gracefully (see `establish`).
                if error.connection_failed() {
                    shared.report_failure();
                }
            }
            // Done: the next call that finds no connection starts afresh.
            let mut slot = shared
                .attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if matches!(slot.as_ref(), Some((current, _)) if *current == number) {
                *slot = None;
            }
            result
        });
        let address = self.address;
        let attempt = async move {
            task.await.unwrap_or_else(|join| {
                Err(EndpointError::Connect {
                    address,
                    source: Arc::new(std::io::Error::other(format!(
                        "the connection attempt ended: {join}"
                    ))),
                })
            })
        }
        .boxed()
        .shared();
        *slot = Some((number, attempt.clone()));
        attempt
    }

    /// The PING interval for a new connection.
    fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms.load(Ordering::Relaxed))
    }

    /// A connection (or its handshake) ended with `error`. If that was the
    /// peer's GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"), as gRPC servers
    /// send: like gRPC's own clients, PING half as often from the next
    /// connection on (up to an hour).
    fn calm_down_if_asked(&self, error: &h2::Error) {
        if !super::error::too_many_pings(error) {
            return;
        }
        let max = u64::try_from(MAX_KEEPALIVE.as_millis()).unwrap_or(u64::MAX);
        let previous = self
            .keepalive_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ms| {
                // Never shorter than configured, even above the cap.
                Some(ms.saturating_mul(2).min(max.max(ms)).max(1))
            })
            .unwrap_or_else(|ms| ms);
        let idle = self.settings.keepalive_while_idle;
        warn!(cluster = %self.cluster, endpoint = %self.address, interval = ?self.keepalive_interval(), previous = ?Duration::from_millis(previous), keepalive_while_idle = idle, "peer said too many pings; keepalive interval doubled{}", if idle { " (the server does not permit PINGs without calls this often: see ConnectionSettings::keepalive_while_idle)" } else { "" });
    }

    /// Drops connection `id` if calls still use it.
    fn forget(&self, id: u64) {
        self.live.rcu(|live| match live {
            Some(live) if live.id == id => None,
            other => other.clone(),
        });
    }

    async fn connect(self: &Arc<Self>, id: u64) -> Result<Arc<Live>, EndpointError> {
        let established = match establish(self.address, &self.settings).await {
            Ok(established) => established,
            Err(error) => {
                // The peer may close at once (its GOAWAY read with the
                // answer to the first PING).
                if let EndpointError::Open { source, .. }
                | EndpointError::Handshake { source, .. } = &error
                {
                    self.calm_down_if_asked(source);
                }
                return Err(error);
            }
        };
        Ok(self.start(id, established))
    }

    /// Starts driving `established` as connection `id`, the live one. Stored
    /// before its driver starts: a connection that ends at once is then
    /// forgotten by the driver, never stored after it ended.
    fn start(self: &Arc<Self>, id: u64, established: Established) -> Arc<Live> {
        let Established {
            send,
            connection,
            ping_pong,
        } = established;
        let address = self.address;
        // The server's SETTINGS are in: they came before its answer to
        // the first PING.
        let calls = Calls::new(
            send.current_max_send_streams(),
            self.waiting_for_stream.clone(),
            self.load.clone(),
        );
        let keepalive = keepalive(
            ping_pong,
            calls.clone(),
            self.keepalive_interval(),
            self.settings.keepalive_timeout,
            self.settings.keepalive_while_idle,
        );
        let shared = Arc::downgrade(self);
        // Entered on every poll of the connection: with nobody listening,
        // a span without metadata costs nothing there (a disabled one still
        // asks the `log` bridge each time).
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!("lookaside_connection", cluster = %self.cluster, endpoint = %address)
        } else {
            tracing::Span::none()
        };
        let live = Arc::new(Live {
            id,
            send,
            calls: calls.clone(),
        });
        self.live.store(Some(live.clone()));
        let task = drive(
            connection,
            keepalive,
            calls.clone(),
            shared,
            id,
            self.cluster.clone(),
            address,
        );
        tokio::spawn(task.instrument(span));
        self.made.increment(1);
        debug!(cluster = %self.cluster, endpoint = %address, "connected");
        live
    }

    /// Takes over `established` (a probe's) as the live connection, unless
    /// one is live already or an attempt is under way (then it is closed).
    fn adopt(self: &Arc<Self>, established: Established) {
        // Under the attempt lock: no attempt starts meanwhile.
        let slot = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
        if under_way(&slot).is_some() || self.live.load().is_some() {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.start(id, established);
        drop(slot);
    }
}

/// The attempt in `slot`, if it is still under way (a finished one may sit
/// there a moment before its task clears it).
fn under_way(slot: &Option<(u64, Attempt)>) -> Option<&Attempt> {
    slot.as_ref()
        .map(|(_, attempt)| attempt)
        .filter(|attempt| attempt.peek().is_none())
}

/// Drives connection `id` until it ends or stops answering PINGs, then
/// (if `shared` still exists: the endpoint was not removed) connects anew,
/// as gRPC's balancers do. An endpoint that went away is then ejected when
/// it goes, by the failed attempt, not found dead by the next call that
/// needs it: a failover tier's endpoints take no calls until the failover.
/// A connection that ended early is replaced only after the reconnect
/// backoff (calls that need one sooner make it themselves).
/// Its events name the cluster and endpoint themselves: the span around it
/// exists only when someone listens at DEBUG.
async fn drive<T>(
    connection: h2::client::Connection<T, Bytes>,
    keepalive: impl Future<Output = String>,
    calls: Calls,
    shared: Weak<Shared>,
    id: u64,
    cluster: Arc<str>,
    endpoint: SocketAddr,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let made = tokio::time::Instant::now();
    tokio::select! {
        ended = Coalescing::new(connection) => match ended {
            Ok(()) => debug!(%cluster, %endpoint, "connection closed"),
            Err(error) => {
                debug!(%cluster, %endpoint, %error, "connection ended");
                if let Some(shared) = shared.upgrade() {
                    shared.calm_down_if_asked(&error);
                }
            }
        },
        // Dropping the connection closes the socket; its calls fail.
        reason = keepalive => {
            // Not reported as a failure by itself: the connection is made
            // again (at once after a stable one), and an endpoint that went
            // away is ejected when that fails. The calls on this one, if
            // any, report their own failures.
            warn!(%cluster, %endpoint, %reason, "peer stopped answering; connection closed");
        }
    }
    // The connection is dropped: calls waiting for a stream on it go on.
    calls.end();
    let delay = match shared.upgrade() {
        Some(shared) => {
            shared.forget(id);
            shared.reconnect_delay(made.elapsed())
        }
        None => return,
    };
    tokio::time::sleep_until(crate::clock::later(made, delay)).await;
    if let Some(shared) = shared.upgrade()
        && !shared.retired.load(Ordering::Acquire)
    {
        // A call may have made the next connection already: then nothing.
        drop(shared.attempt());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    impl Shared {
        fn attempt_pending(&self) -> bool {
            self.attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        }
    }

    fn unconnected(
        settings: &ConnectionSettings,
    ) -> (Connection, mpsc::UnboundedReceiver<SocketAddr>) {
        let (failures, reported) = mpsc::unbounded_channel();
        let address = SocketAddr::from(([127, 0, 0, 1], 9));
        (
            Connection::new("test", address, settings, failures, EndpointLoad::default()),
            reported,
        )
    }

    #[test]
    fn one_failure_report_waits_per_endpoint() {
        let (connection, mut reported) = unconnected(&ConnectionSettings::default());
        for _ in 0..100 {
            connection.report_failure();
        }
        assert!(reported.try_recv().is_ok());
        assert!(reported.try_recv().is_err(), "a second report waits");
        connection.failure_taken();
        connection.report_failure();
        assert!(reported.try_recv().is_ok(), "taken: the next is reported");
    }

    #[test]
    fn connections_that_end_early_back_off_and_a_stable_one_starts_over() {
        let settings = ConnectionSettings {
            reconnect_backoff_initial: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(5),
            ..ConnectionSettings::default()
        };
        let (connection, _reported) = unconnected(&settings);
        let early = || connection.shared.reconnect_delay(Duration::from_millis(10));
        let around = |delay: Duration, secs: f64| {
            let secs_got = delay.as_secs_f64();
            assert!(
                (secs * 0.8..=secs * 1.2).contains(&secs_got),
                "{delay:?}, expected {secs} s give or take a fifth"
            );
        };
        for secs in [1.0, 2.0, 4.0, 5.0, 5.0] {
            around(early(), secs);
        }
        let stable = connection.shared.reconnect_delay(STABLE_AFTER);
        assert_eq!(
            stable,
            Duration::ZERO,
            "a stable connection is replaced at once"
        );
        around(early(), 1.0);
    }

    /// A listener on a free loopback port, and its address.
    async fn listening() -> (tokio::net::TcpListener, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("bind: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("address: {error}"));
        (listener, address)
    }

    /// A plain HTTP/2 peer; counts the connections it accepted.
    async fn h2_peer() -> (SocketAddr, Arc<AtomicU64>) {
        let (listener, address) = listening().await;
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut connection) = h2::server::handshake(socket).await {
                        while connection.accept().await.is_some() {}
                    }
                });
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn a_probes_connection_is_adopted_as_the_live_one_unless_one_is_live() {
        let (address, accepted) = h2_peer().await;
        let (failures, _reported) = mpsc::unbounded_channel();
        let settings = ConnectionSettings::default();
        let connection = Connection::new(
            "adopt",
            address,
            &settings,
            failures,
            EndpointLoad::default(),
        );
        let probed = establish(address, &settings)
            .await
            .unwrap_or_else(|error| panic!("probe: {error}"));
        connection.adopt(probed);
        let live = |connection: &Connection| connection.shared.live.load().as_ref().map(|l| l.id);
        let adopted = live(&connection);
        assert!(adopted.is_some(), "the probe's connection is live");
        drop(
            connection
                .ready()
                .await
                .unwrap_or_else(|error| panic!("ready: {error}")),
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a call uses it: no connection is made again"
        );
        let second = establish(address, &settings)
            .await
            .unwrap_or_else(|error| panic!("second probe: {error}"));
        connection.adopt(second);
        assert_eq!(live(&connection), adopted, "the live connection is kept");
    }

    /// A connection (keepalive every 50 ms) to a peer that answers every
    /// connection with SETTINGS, answers its first PING, then, `after` that,
    /// sends GOAWAY(ENHANCE_YOUR_CALM, `debug`), as grpc-go does with
    /// "too_many_pings".
    async fn calm_peer(debug: &'static [u8], after: Duration) -> Connection {
        calm_peer_reconnecting(debug, after, Duration::from_secs(3600)).await
    }

    /// [`calm_peer`], whose connection is made again unasked `reconnect`
    /// after it ended.
    async fn calm_peer_reconnecting(
        debug: &'static [u8],
        after: Duration,
        reconnect: Duration,
    ) -> Connection {
        let (listener, address) = listening().await;
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut preface = [0u8; 24];
                    if socket.read_exact(&mut preface).await.is_err() {
                        return;
                    }
                    if socket
                        .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Frames until the first PING (type 6, not an ACK).
                    let ping = loop {
                        let mut head = [0u8; 9];
                        if socket.read_exact(&mut head).await.is_err() {
                            return;
                        }
                        let length = usize::from(head[1]) << 8 | usize::from(head[2]);
                        let mut payload = vec![0u8; length];
                        if socket.read_exact(&mut payload).await.is_err() {
                            return;
                        }
                        if head[3] == 0x6 && head[4] & 0x1 == 0 {
                            break payload;
                        }
                    };
                    let mut frames = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
                    frames.extend_from_slice(&ping);
                    if !after.is_zero() {
                        if socket.write_all(&frames).await.is_err() {
                            return;
                        }
                        frames.clear();
                        tokio::time::sleep(after).await;
                    }
                    frames.extend_from_slice(&[0, 0, 8 + debug.len() as u8, 0x7, 0, 0, 0, 0, 0]);
                    frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x0b]);
                    frames.extend_from_slice(debug);
                    if socket.write_all(&frames).await.is_err() {
                        return;
                    }
                    let mut rest = Vec::new();
                    let _ = socket.read_to_end(&mut rest).await;
                });
            }
        });
        let (failures, _) = mpsc::unbounded_channel();
        let settings = ConnectionSettings {
            keepalive_interval: Duration::from_millis(50),
            reconnect_backoff_initial: reconnect,
            ..ConnectionSettings::default()
        };
        Connection::new(
            "calm",
            address,
            &settings,
            failures,
            EndpointLoad::default(),
        )
    }

    #[tokio::test]
    async fn too_many_pings_doubles_the_keepalive_interval_of_later_connections() {
        // On the live connection, as a server's calm-down comes.
        let connection = calm_peer(b"too_many_pings", Duration::from_millis(20)).await;
        for expected in [100, 200, 400] {
            connection.warm_up();
            until(&format!("interval doubled to {expected} ms"), || {
                connection.shared.keepalive_interval() == Duration::from_millis(expected)
                    && connection.shared.live.load().is_none()
            })
            .await;
        }
    }

    /// Polls `done` every 5 ms; panics with `what` after 5 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A connection that ends is made again unasked, unless its endpoint
    /// left the assignment.
    #[tokio::test]
    async fn a_retired_endpoints_connection_is_not_made_again() {
        let reconnect = Duration::from_millis(10);
        let assigned = calm_peer_reconnecting(b"bye", Duration::from_millis(20), reconnect).await;
        assigned.warm_up();
        let attempts = |c: &Connection| c.shared.next_id.load(Ordering::Relaxed);
        until("made again", || attempts(&assigned) >= 2).await;

        let retired = calm_peer_reconnecting(b"bye", Duration::from_millis(20), reconnect).await;
        retired.retire();
        retired.warm_up();
        // Ended (its drive task chose the delay before the next one).
        until("ended", || {
            retired.shared.short_lived.load(Ordering::Relaxed) == 1
        })
        .await;
        // Its drive task, which holds the only weak reference, has returned:
        // it would have dialled again before (after the delay it chose).
        until("its drive task returned", || {
            Arc::weak_count(&retired.shared) == 0
        })
        .await;
        assert_eq!(
            attempts(&retired),
            1,
            "a retired endpoint was dialled again"
        );
    }

    /// The calm-down read with the answer to the connection's first PING:
    /// the interval doubles as well, and the endpoint, which answers, is
    /// not reported as failed.
    #[tokio::test]
    async fn a_calm_down_with_the_first_pong_doubles_and_ejects_nothing() {
        let connection = calm_peer(b"too_many_pings", Duration::ZERO).await;
        let failed = connection.shared.attempt().await;
        assert!(
            matches!(&failed, Err(EndpointError::Open { .. })),
            "{failed:?}"
        );
        assert_eq!(
            connection.shared.keepalive_interval(),
            Duration::from_millis(100)
        );
        assert!(
            !connection.shared.failure_reported.load(Ordering::Acquire),
            "a peer that answers was reported as failed"
        );
    }

    #[tokio::test]
    async fn other_calm_downs_leave_the_keepalive_interval_alone() {
        let connection = calm_peer(b"too_many_data_frames", Duration::from_millis(20)).await;
        for _ in 0..3 {
            connection.warm_up();
            // Until the connection was made and has ended (or failed).
            until("the connection ended", || {
                connection.shared.live.load().is_none() && !connection.shared.attempt_pending()
            })
            .await;
        }
        assert_eq!(
            connection.shared.keepalive_interval(),
            Duration::from_millis(50)
        );
    }
}
