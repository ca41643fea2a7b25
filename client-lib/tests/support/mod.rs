//! Shared fixtures of the client-lib tests: in-process tonic backends that
//! count the calls they serve.

#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

pub mod ads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Counts the requests a backend served, and keeps the last one's URI.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    count: Arc<AtomicU64>,
    last_uri: Arc<std::sync::Mutex<Option<http::Uri>>>,
}

impl<S, B> Service<http::Request<B>> for Counting<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, request: http::Request<B>) -> S::Future {
        // Not the control plane asking for ORCA load reports.
        if !request.uri().path().starts_with("/xds.service.orca.v3.") {
            self.count.fetch_add(1, Ordering::Relaxed);
            *self.last_uri.lock().unwrap() = Some(request.uri().clone());
        }
        self.inner.call(request)
    }
}

#[derive(Clone)]
struct CountingLayer(Arc<AtomicU64>, Arc<std::sync::Mutex<Option<http::Uri>>>);

impl<S> Layer<S> for CountingLayer {
    type Service = Counting<S>;
    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            count: self.0.clone(),
            last_uri: self.1.clone(),
        }
    }
}

/// A connection the backend accepted; counts itself out when closed.
struct Tracked {
    stream: tokio::net::TcpStream,
    open: Arc<AtomicU64>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tonic::transport::server::Connected for Tracked {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

pub struct Backend {
    pub address: SocketAddr,
    count: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    last_uri: Arc<std::sync::Mutex<Option<http::Uri>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// A backend on `address` (port 0: any free port).
    pub async fn start_at(address: SocketAddr) -> Self {
        Self::start_with(address, None).await
    }

    /// A backend that speaks only TLS, as `tls` says.
    pub async fn start_tls(tls: tonic::transport::ServerTlsConfig) -> Self {
        Self::start_with("127.0.0.1:0".parse().unwrap(), Some(tls)).await
    }

    async fn start_with(
        address: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let last_uri = Arc::new(std::sync::Mutex::new(None));
        let layer = CountingLayer(count.clone(), last_uri.clone());
        let open = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let tracked = {
            let (open, accepted) = (open.clone(), accepted.clone());
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                move |result| {
                    result.map(|stream| {
                        // As tonic's own `serve` sets it.
                        let _ = stream.set_nodelay(true);
                        open.fetch_add(1, Ordering::Relaxed);
                        accepted.fetch_add(1, Ordering::Relaxed);
                        Tracked {
                            stream,
                            open: open.clone(),
                        }
                    })
                },
            )
        };
        let task = tokio::spawn(async move {
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                builder = builder.tls_config(tls).unwrap();
            }
            let _ = builder
                .layer(layer)
                .add_service(health)
                .serve_with_incoming_shutdown(tracked, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            address,
            count,
            open,
            accepted,
            last_uri,
            stop: Some(stop),
            task,
        }
    }

    pub fn served(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The URI (scheme, authority, path) of the last call it served.
    pub fn last_uri(&self) -> Option<http::Uri> {
        self.last_uri.lock().unwrap().clone()
    }

    /// Client connections accepted since it started.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Graceful stop (like SIGTERM): GOAWAY, in-flight calls finish.
    pub fn drain(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops listening at once. Not a SIGKILL: connections already open
    /// stay up for their calls in flight (a server stream went on after
    /// it), and a new connection is refused. (The SIGKILL tests kill backend
    /// processes: tests/tests/client_backend_killed.rs.)
    pub fn kill(&mut self) {
        self.task.abort();
        self.stop.take();
    }
}

/// An address where TCP connections hang (a listener whose accept queue is
/// full: the SYN is dropped) until the caller's connect timeout. Keep the
/// returned value alive as long as the address must stay that way.
pub async fn blackhole() -> (SocketAddr, Blackhole) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let address = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            tokio::net::TcpStream::connect(address),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (address, Blackhole(listener, fillers))
}

/// What keeps a [`blackhole`] in place.
pub struct Blackhole(tokio::net::TcpListener, Vec<tokio::net::TcpStream>);

/// Answers a client's HTTP/2 handshake on `socket` as a server would at
/// the least: reads the preface, sends empty SETTINGS, reads frames up to
/// the first PING (which clients wait for) and acknowledges it.
pub async fn answer_handshake(socket: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut preface = [0u8; 24];
    socket.read_exact(&mut preface).await?;
    socket.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await?;
    // Frames until the first PING (type 6, not an ACK).
    let ping = loop {
        let mut head = [0u8; 9];
        socket.read_exact(&mut head).await?;
        let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; length];
        socket.read_exact(&mut payload).await?;
        if head[3] == 0x6 && head[4] & 0x1 == 0 {
            break payload;
        }
    };
    let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
    ack.extend_from_slice(&ping);
    socket.write_all(&ack).await
}

/// A peer that answers the HTTP/2 handshake, then never reads or answers
/// anything: a process that froze once connected. Abort the task to close
/// its connections.
pub async fn silent_peer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        // Dropped with this task: every connection closes.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            connections.spawn(async move {
                answer_handshake(&mut socket).await.ok()?;
                // Frozen: hold the socket, read nothing.
                std::future::pending::<()>().await;
                Some(socket)
            });
        }
    });
    (address, held)
}

/// An address on loopback where nothing listens (a port the OS handed out
/// and took back): connections to it are refused.
pub fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One gRPC message (length-prefixed, uncompressed) of a SERVING health
/// status, as a raw HTTP/2 peer sends it in a DATA frame.
pub fn serving_frame() -> bytes::Bytes {
    let message = prost::Message::encode_to_vec(&tonic_health::pb::HealthCheckResponse {
        status: tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    framed.into()
}

/// Answers a call on a raw HTTP/2 peer as a gRPC server does: a SERVING
/// health message, then `grpc_status` in the trailers.
pub fn answer(mut respond: h2::server::SendResponse<bytes::Bytes>, grpc_status: &'static str) {
    let head = http::Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut stream) = respond.send_response(head, false) else {
        return;
    };
    let _ = stream.send_data(serving_frame(), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(grpc_status));
    let _ = stream.send_trailers(trailers);
}

/// A raw HTTP/2 peer that answers every call with a message, then the
/// status it is set to in the trailers (so a failure comes at the call's
/// very end), counting the calls.
pub struct StatusPeer {
    pub address: SocketAddr,
    status: Arc<std::sync::Mutex<&'static str>>,
    calls: Arc<AtomicU64>,
}

impl StatusPeer {
    /// A peer answering `status` (a `grpc-status` code) until told else.
    pub async fn start(status: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let status = Arc::new(std::sync::Mutex::new(status));
        let calls = Arc::new(AtomicU64::new(0));
        let (answers, counted) = (status.clone(), calls.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (answers, counted) = (answers.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_request, respond))) = connection.accept().await {
                        counted.fetch_add(1, Ordering::Relaxed);
                        answer(respond, *answers.lock().unwrap());
                    }
                });
            }
        });
        Self {
            address,
            status,
            calls,
        }
    }

    /// Answers `status` from now on.
    pub fn set_status(&self, status: &'static str) {
        *self.status.lock().unwrap() = status;
    }

    /// Calls it answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Calls Health/Check once through `channel`.
/// A balancer for cluster `name` over `addresses` (weight 1 each), with
/// default settings and 2 s to wait for a first assignment.
pub fn cluster(
    name: &str,
    addresses: &[SocketAddr],
) -> (
    lookaside_client::cluster::ClusterBalancer,
    lookaside_client::LbChannel,
) {
    let (balancer, channel) = lookaside_client::cluster::ClusterBalancer::spawn(
        name,
        lookaside_client::endpoint::ConnectionSettings::default(),
        std::time::Duration::from_secs(2),
    );
    balancer.assign(addresses.iter().map(|address| (*address, 1)).collect());
    (balancer, channel)
}

pub async fn call(channel: &lookaside_client::LbChannel) -> Result<(), tonic::Status> {
    call_service(channel, "").await
}

/// Calls Health/Check of `service` once through `channel` (a service the
/// backend does not know: NOT_FOUND).
pub async fn call_service(
    channel: &lookaside_client::LbChannel,
    service: &str,
) -> Result<(), tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|_| ())
}

/// Polls `condition` every 10 ms; panics with `what` after 5 s.
pub async fn until(what: &str, condition: impl FnMut() -> bool) {
    until_within(what, std::time::Duration::from_secs(5), condition).await;
}

/// Polls `condition` every 10 ms; panics with `what` after `timeout`.
pub async fn until_within(
    what: &str,
    timeout: std::time::Duration,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Whether the debugging recorder behind `snapshotter` counted `name` with
/// some label valued `label` since the last snapshot (a snapshot drains
/// counters: for several checks of one window, take one
/// `snapshot().into_vec()` and ask [`counted_in`]).
pub fn counted(
    snapshotter: &metrics_util::debugging::Snapshotter,
    name: &str,
    label: &str,
) -> bool {
    counted_in(&snapshotter.snapshot().into_vec(), name, label)
}

/// A debugging recorder's snapshot, as a list.
pub type Seen = [(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    metrics_util::debugging::DebugValue,
)];

/// Whether `seen` counted `name` with some label valued `label`.
pub fn counted_in(seen: &Seen, name: &str, label: &str) -> bool {
    seen.iter().any(|(key, _, _, value)| {
        let key = key.key();
        key.name() == name
            && key.labels().any(|l| l.value() == label)
            && matches!(value, metrics_util::debugging::DebugValue::Counter(n) if *n > 0)
    })
}

/// Log output kept in memory (a `tracing_subscriber` writer: pass
/// `move || logs.clone()`), for tests to read.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// A subscriber that writes here, up to `level`, span creations
    /// included (with their fields); install it for the process
    /// (`set_global_default`) or this thread (`set_default`).
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .finish()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines that contain every one of `words`.
    pub fn count(&self, words: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|line| words.iter().all(|word| line.contains(word)))
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A real (in-process) Lookaside control plane serving the config file at
/// `path` on `at` (port 0: any), polling the file every 20 ms, until
/// `stop` resolves (or is dropped).
pub async fn control_plane(
    path: &std::path::Path,
    at: SocketAddr,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> lookaside_control_plane::server::Running {
    use lookaside_control_plane::server::{ServeConfig, start};
    start(
        ServeConfig {
            xds_listen: at,
            config_poll: std::time::Duration::from_millis(20),
            shutdown_grace: std::time::Duration::from_millis(500),
            ..ServeConfig::local(path.to_path_buf())
        },
        async {
            let _ = stop.await;
        },
    )
    .await
    .expect("control plane starts")
}

/// Any free loopback port.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Installs a debugging metrics recorder for the whole test binary (one
/// test per binary: a process has one); what it saw, to read.
pub fn process_recorder() -> metrics_util::debugging::Snapshotter {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    snapshotter
}

/// Metric values by name and labels. A debugging snapshot drains counters
/// and gauges alike, so a test keeps its own running totals, and a gauge
/// its last value other than 0 (a drained gauge reads 0; read no gauge
/// that is ever set to 0 through it).
#[derive(Default)]
pub struct Totals(Vec<Entry>);

/// Name, labels, value.
type Entry = (String, Vec<(String, String)>, f64);

impl Totals {
    /// Adds what the recorder saw since the last look.
    pub fn refresh(&mut self, snapshotter: &metrics_util::debugging::Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let name = key.name().to_string();
            let existing = self
                .0
                .iter_mut()
                .find(|(n, l, _)| *n == name && *l == labels);
            let (add, is_counter) = match value {
                metrics_util::debugging::DebugValue::Counter(n) => (n as f64, true),
                metrics_util::debugging::DebugValue::Gauge(g) => (g.into_inner(), false),
                metrics_util::debugging::DebugValue::Histogram(h) => (h.len() as f64, true),
            };
            match existing {
                Some(entry) if is_counter => entry.2 += add,
                Some(_) if add == 0.0 => {}
                Some(entry) => entry.2 = add,
                None => self.0.push((name, labels, add)),
            }
        }
    }

    /// The value of `name` for the series carrying every one of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.iter().find_map(|(n, l, v)| {
            let matches = n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want));
            matches.then_some(*v)
        })
    }
}
