//! The TLS accept loop of a gRPC listener: every new connection is
//! handshaken with the configuration current at its arrival, so a reload
//! reaches new connections while established ones keep theirs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Reloading, ServerTls};
use crate::telemetry::Metrics;

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; further connections wait to be accepted
/// (the kernel's backlog holds them).
const MAX_HANDSHAKES: usize = 1024;
/// Handshakes in progress at once from one IP address: silent
/// connections from one peer (a slowloris) cannot hold every slot of
/// `MAX_HANDSHAKES`. Further connections from it are closed at once.
const MAX_HANDSHAKES_PER_PEER: usize = 64;
/// Handshaken connections not yet taken by the server.
const READY_QUEUE: usize = 64;

/// Handshakes in progress by peer address. Shared by the accept loop and
/// the handshake tasks.
#[derive(Debug, Clone, Default)]
struct PerPeer(Arc<dashmap::DashMap<std::net::IpAddr, usize>>);

/// One handshake's place in `PerPeer`; gives it back when dropped.
struct PeerSlot {
    peers: PerPeer,
    ip: std::net::IpAddr,
}

impl PerPeer {
    /// A slot for `ip`, unless it already has `MAX_HANDSHAKES_PER_PEER`.
    fn take(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut count = self.0.entry(ip).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_PEER {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        // The entry goes with its last handshake: the map holds only peers
        // handshaking now.
        self.peers.0.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

/// Handshaken TLS connections for `Router::serve_with_incoming_shutdown`.
/// Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsIncoming {
    ready: mpsc::Receiver<TlsStream<TcpStream>>,
}

impl TlsIncoming {
    /// Accepts on `listener`, handshaking with `config`'s current value.
    pub fn new(listener: TcpListener, config: Reloading<ServerTls>, metrics: Arc<Metrics>) -> Self {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, config, metrics, tx));
        Self { ready }
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|next| next.map(Ok))
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Reloading<ServerTls>,
    metrics: Arc<Metrics>,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let peers = PerPeer::default();
    loop {
        let permit = tokio::select! {
            permit = handshakes.clone().acquire_owned() => permit,
            () = ready.closed() => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = peers.take(peer.ip()) else {
            metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "too many handshakes from this address at once; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config.borrow().0.clone());
        let ready = ready.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            // The address's count is of handshakes in progress only.
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send(stream).await;
                }
                Ok(Err(error)) => {
                    metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_gets_a_bounded_share_and_slots_come_back() {
        let peers = PerPeer::default();
        let one: std::net::IpAddr = [10, 0, 0, 1].into();
        let other: std::net::IpAddr = [10, 0, 0, 2].into();
        let held: Vec<PeerSlot> = (0..MAX_HANDSHAKES_PER_PEER)
            .filter_map(|_| peers.take(one))
            .collect();
        assert_eq!(held.len(), MAX_HANDSHAKES_PER_PEER);
        assert!(
            peers.take(one).is_none(),
            "one peer took more than its share"
        );
        assert!(peers.take(other).is_some(), "another peer was refused");
        drop(held);
        assert!(peers.0.is_empty(), "finished handshakes left entries");
        assert!(peers.take(one).is_some());
    }
}
