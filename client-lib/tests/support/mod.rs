//! Shared fixtures of the client-lib tests: in-process tonic backends that
//! count the calls they serve.

#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

pub mod ads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Counts the requests a backend served.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    count: Arc<AtomicU64>,
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
        }
        self.inner.call(request)
    }
}

#[derive(Clone)]
struct CountingLayer(Arc<AtomicU64>);

impl<S> Layer<S> for CountingLayer {
    type Service = Counting<S>;
    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            count: self.0.clone(),
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
        let layer = CountingLayer(count.clone());
        let open = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let tracked = {
            let (open, accepted) = (open.clone(), accepted.clone());
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                move |result| {
                    result.map(|stream| {
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
            stop: Some(stop),
            task,
        }
    }

    pub fn served(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
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

/// A peer that accepts connections, then never reads or answers anything.
/// Abort the task to close them.
pub async fn silent_peer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    (address, held)
}

/// Calls Health/Check once through `channel`.
pub async fn call<S>(channel: &S) -> Result<(), tonic::Status>
where
    S: tonic::client::GrpcService<tonic::body::Body> + Clone,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

/// Polls `condition` every 10 ms; panics with `what` after 5 s.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
