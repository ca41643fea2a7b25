//! A TCP proxy in front of the control-plane replicas, standing in for a
//! Kubernetes Service: the client is given one address, and each NEW
//! connection to it goes to the next replica, round robin, whose port
//! accepts. Bytes are copied both ways untouched, so a replica that dies
//! breaks the connections it held, and the client's next connection lands
//! on a live replica.
//!
//! Needed because `lookaside-client`'s xDS client (hyperium `xds-client`
//! 0.1.0-alpha.4) accepts a list of servers but only ever connects to the
//! first (gRFC A71 fallback is not implemented there).
//!
//! The proxy never moves an open connection to another replica and never
//! looks at what it carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long connecting to one replica may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// How many routed connections the proxy remembers.
const MAX_REMEMBERED: usize = 10_000;

/// One connection the proxy accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// When it was accepted.
    pub at: Instant,
    /// The replica it went to; `None` when no replica accepted (the client's
    /// connection was then closed).
    pub upstream: Option<SocketAddr>,
}

#[derive(Debug)]
struct Shared {
    upstreams: Vec<SocketAddr>,
    next: AtomicUsize,
    routed: Mutex<Vec<Routed>>,
}

impl Shared {
    fn routed(&self) -> MutexGuard<'_, Vec<Routed>> {
        self.routed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running proxy; stops (and breaks every connection) when dropped.
#[derive(Debug)]
pub struct ServiceProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl ServiceProxy {
    /// Listens on a local port the OS picks, in front of `upstreams`.
    pub async fn start(upstreams: Vec<SocketAddr>) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the proxy")?;
        let address = listener.local_addr().context("reading the proxy address")?;
        let shared = Arc::new(Shared {
            upstreams,
            next: AtomicUsize::new(0),
            routed: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            address,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every connection accepted so far (the first `MAX_REMEMBERED`).
    pub fn routed(&self) -> Vec<Routed> {
        self.shared.routed().clone()
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts the
        // connection tasks.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                connections.spawn(serve(client, shared.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Connects `client` to the next replica that accepts and copies bytes both
/// ways until either side closes or fails.
async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let at = Instant::now();
    let count = shared.upstreams.len();
    let first = shared.next.fetch_add(1, Ordering::Relaxed);
    let mut upstream = None;
    for offset in 0..count {
        let address = shared.upstreams[(first + offset) % count];
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await
        {
            upstream = Some((address, stream));
            break;
        }
    }
    {
        let mut routed = shared.routed();
        if routed.len() < MAX_REMEMBERED {
            routed.push(Routed {
                at,
                upstream: upstream.as_ref().map(|(address, _)| *address),
            });
        }
    }
    let Some((_, mut server)) = upstream else {
        return;
    };
    let _ = server.set_nodelay(true);
    // Ends when either side closes or is reset; dropping both sockets then
    // closes the other side too, as a dead pod's connections break.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection with `name` and closes it.
    async fn named_server(name: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(name).await;
            }
        });
        (address, task)
    }

    async fn who(proxy: SocketAddr) -> Vec<u8> {
        let mut stream = TcpStream::connect(proxy).await.expect("connect");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply).await;
        reply
    }

    #[tokio::test]
    async fn new_connections_go_round_robin_to_replicas_that_accept() {
        let (a, a_task) = named_server(b"A").await;
        let (b, _b_task) = named_server(b"B").await;
        let proxy = ServiceProxy::start(vec![a, b]).await.expect("proxy");
        let replies = [who(proxy.address()).await, who(proxy.address()).await];
        assert_eq!(replies, [b"A".to_vec(), b"B".to_vec()]);

        // A dies: its port refuses, every new connection goes to B.
        a_task.abort();
        let _ = a_task.await;
        for _ in 0..3 {
            assert_eq!(who(proxy.address()).await, b"B".to_vec());
        }
        let routed = proxy.routed();
        assert_eq!(routed.len(), 5);
        assert!(routed.iter().skip(2).all(|r| r.upstream == Some(b)));
    }
}
