//! Making one HTTP/2 connection to an endpoint: TCP without Nagle, TLS
//! (ALPN h2 required) when set, the h2 handshake with this client's
//! settings, and a first PING answered; probes make the same check.
//!
//! Owns: the steps and settings of a new connection, and what each failure
//! is called (connect, TLS, handshake; a peer's GOAWAY at once is not a
//! failure).
//! Must never: keep or drive a connection (the caller owns what it
//! returns), or retry.  Every attempt ends within the connect timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;

use super::tls::Io;
use super::{ConnectionSettings, EndpointError};

/// HTTP/2 settings, as hyper's client defaults (which tonic uses).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams opened before the server's SETTINGS say how many it allows (a
/// server that names no limit lifts it).
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// A TCP connection to `address`, with TLS on it if `settings` say so.
async fn dial(address: SocketAddr, settings: &ConnectionSettings) -> Result<Io, EndpointError> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .and_then(|tcp| tcp.set_nodelay(true).map(|()| tcp))
        .map_err(|source| EndpointError::Connect {
            address,
            source: Arc::new(source),
        })?;
    match &settings.tls {
        None => Ok(Io::Plain(tcp)),
        Some(tls) => {
            let tls_failed = |source| EndpointError::Tls {
                address,
                source: Arc::new(source),
            };
            let stream = tls.handshake(address, tcp).await.map_err(tls_failed)?;
            // rustls lets a server that picks no protocol through; HTTP/2
            // frames would then reach an HTTP/1 server.
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(tls_failed(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the server did not agree to HTTP/2 (ALPN h2)",
                )));
            }
            Ok(Io::Tls(Box::new(stream)))
        }
    }
}

/// A connection made and checked (see [`establish`]), not driven yet: a
/// probe's, which the endpoint's [`super::Connection`] takes over when it
/// recovers (one connection per recovery, not the probe's and then
/// another). Dropping it closes it.
pub(crate) struct Established {
    pub(super) send: SendRequest<Bytes>,
    pub(super) connection: h2::client::Connection<Io, Bytes>,
    pub(super) ping_pong: h2::PingPong,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established").finish_non_exhaustive()
    }
}

/// A new HTTP/2 connection to `address` (TLS included, when set), its
/// sender and its PING handle, once the peer has answered a first PING,
/// within the connect timeout. Also what a probe checks before an ejected
/// endpoint takes calls again (and the connection it then serves on).
/// Waiting for that answer (as gRPC's clients wait for the server's
/// SETTINGS) keeps out, as a failed handshake that ejects the endpoint and
/// leaves the call free to go elsewhere, a peer that accepts connections
/// but does not speak HTTP/2 or refuses this client's certificate (TLS 1.3
/// says so only after the client's side of the handshake). Otherwise such
/// a peer would fail the calls sent on it as though it had seen them, and
/// every probe would let it back in. Servers' PING policies allow it:
/// grpc-go and gRPC C-core count no strike for a connection's first PING,
/// grpc-java one of the two it tolerates.
pub(crate) async fn establish(
    address: SocketAddr,
    settings: &ConnectionSettings,
) -> Result<Established, EndpointError> {
    let after = settings.connect_timeout;
    tokio::time::timeout(after, steps(address, settings))
        .await
        .map_err(|_| EndpointError::ConnectTimeout { address, after })?
}

/// The steps of [`establish`], unbounded.
async fn steps(
    address: SocketAddr,
    settings: &ConnectionSettings,
) -> Result<Established, EndpointError> {
    let io = dial(address, settings).await?;
    let handshake = |source| EndpointError::Handshake {
        address,
        source: Arc::new(source),
    };
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(handshake)?;
    let closed = || EndpointError::Connect {
        address,
        source: Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the connection closed before answering a PING",
        )),
    };
    let mut ping_pong = connection.ping_pong().ok_or_else(closed)?;
    // The connection must be driven for the PING to leave and its answer
    // to be read.
    tokio::select! {
        pong = ping_pong.ping(h2::Ping::opaque()) => pong.map_err(handshake)?,
        ended = &mut connection => return Err(match ended.err() {
            None => closed(),
            // The peer closed at once, gracefully (draining, or calming this
            // client down): the endpoint answers, and the error says so as
            // on a live connection (not a failure that ejects it).
            Some(source) if source.is_go_away() && source.is_remote() => EndpointError::Open {
                address,
                source: Arc::new(source),
            },
            Some(source) => handshake(source),
        }),
    };
    Ok(Established {
        send,
        connection,
        ping_pong,
    })
}
