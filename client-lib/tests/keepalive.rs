//! Keepalive PINGs go out only while calls are in flight: gRPC servers (Go,
//! Java, C++) by default close a connection that PINGs them while idle
//! (GOAWAY ENHANCE_YOUR_CALM, "too_many_pings"). Asked to, the client PINGs
//! idle connections too, and a peer that went away silently (it stops
//! answering and taking connections) is ejected with no call made. The
//! peers here are raw TCP
//! listener that reads the client's HTTP/2 frames and answers only the
//! handshake: SETTINGS, and the one PING a new connection waits for (which
//! such servers allow).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// Accepts one connection, answers its handshake, and reports the type of
/// every frame the client sends on it after the first PING, counting PINGs
/// (not PING ACKs) as `PING`.
async fn frame_reader() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<u8>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (frames, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        socket.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface[..], PREFACE);
        socket
            .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut answered = false;
        loop {
            let mut header = [0u8; 9];
            if socket.read_exact(&mut header).await.is_err() {
                return;
            }
            let length = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let mut payload = vec![0u8; length];
            if socket.read_exact(&mut payload).await.is_err() {
                return;
            }
            if !answered && header[3] == PING && header[4] & ACK == 0 {
                let mut ack = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                socket.write_all(&ack).await.unwrap();
                answered = true;
                continue;
            }
            let kind = if header[3] == PING && header[4] & ACK != 0 {
                0xff
            } else {
                header[3]
            };
            if frames.send(kind).is_err() {
                return;
            }
        }
    });
    (address, received)
}

fn pings_in(received: &mut mpsc::UnboundedReceiver<u8>) -> usize {
    let mut pings = 0;
    while let Ok(kind) = received.try_recv() {
        pings += usize::from(kind == PING);
    }
    pings
}

/// Waits up to 5 s for the client's next PING; panics with `what`.
async fn next_ping(received: &mut mpsc::UnboundedReceiver<u8>, what: &str) {
    let pinged = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(kind) = received.recv().await {
            if kind == PING {
                return true;
            }
        }
        false
    })
    .await
    .expect(what);
    assert!(pinged, "the connection closed without a PING");
}

#[tokio::test]
async fn keepalive_pings_only_while_calls_are_in_flight() {
    let (address, mut received) = frame_reader().await;
    let settings = ConnectionSettings {
        keepalive_interval: Duration::from_millis(50),
        keepalive_timeout: Duration::from_secs(30),
        probe_backoff_initial: Duration::from_secs(30),
        ..ConnectionSettings::default()
    };
    let (cluster, channel) = ClusterBalancer::spawn("idle", settings, Duration::from_secs(2));
    // The endpoint is connected at once (warm-up), then left idle for
    // eight keepalive intervals.
    cluster.assign(vec![(address, 1)]);
    let first = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("the client connected")
        .expect("a frame");
    assert_ne!(first, PING, "the client starts with SETTINGS");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pings_in(&mut received), 0, "an idle connection was pinged");

    // A call the peer never answers: now the connection is pinged.
    let call = tokio::spawn(async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
    });
    next_ping(&mut received, "a PING within 5 s of the call").await;
    call.abort();
}

/// A peer that takes one connection and then goes away silently, as a
/// lost node does: it stops taking connections (new ones are refused),
/// answers the handshake of the one it has (SETTINGS and the first PING),
/// says so on `handshaken`, and then never reads or writes it again.
async fn vanishing_peer() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (handshaken, handshake) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        drop(listener);
        support::answer_handshake(&mut socket).await.unwrap();
        let _ = handshaken.send(());
        // Gone: the socket stays open, nothing more is read or answered.
        std::future::pending::<()>().await;
        drop(socket);
    });
    (address, handshake)
}

#[tokio::test]
async fn asked_to_keepalive_pings_idle_connections_and_finds_a_vanished_peer() {
    let logs = support::Logs::default();
    // This thread only: the test's runtime runs every task here.
    let _default = tracing::subscriber::set_default(logs.subscriber(tracing::Level::INFO));
    let settings = ConnectionSettings {
        keepalive_interval: Duration::from_millis(50),
        keepalive_timeout: Duration::from_millis(200),
        keepalive_while_idle: true,
        reconnect_backoff_initial: Duration::from_millis(50),
        ..ConnectionSettings::default()
    };

    // Idle, and pinged.
    let (address, mut received) = frame_reader().await;
    let (cluster, _channel) =
        ClusterBalancer::spawn("idle", settings.clone(), Duration::from_secs(2));
    cluster.assign(vec![(address, 1)]);
    next_ping(&mut received, "a PING within 5 s with no call").await;

    // A peer that goes away silently once connected: its idle connection's
    // PINGs go unanswered, the connection is closed, and the endpoint is
    // ejected when it cannot be connected again. No call is made.
    let (vanishing, handshake) = vanishing_peer().await;
    let (cluster, channel) = ClusterBalancer::spawn("vanishing", settings, Duration::from_secs(2));
    cluster.assign(vec![(vanishing, 1)]);
    tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("the client connected")
        .expect("the peer answered the handshake");
    support::until("the vanished peer ejected", || {
        channel.usable_endpoints() == 0
    })
    .await;
    let closed = logs.count(&["peer stopped answering", &vanishing.to_string()]);
    assert_eq!(closed, 1, "{}", logs.text());
}
