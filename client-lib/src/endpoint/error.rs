//! What can go wrong between a call and one endpoint, and what each failure
//! means for the call: was the request never sent (another endpoint may
//! take it), is the connection gone (eject the endpoint), or did only this
//! call's stream end (and whose failure was it: failure accrual counts only
//! the endpoint's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Status};

use crate::load::Outcome;

/// A call to one endpoint failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    /// The TCP connection could not be made.
    #[error("connecting to {address}")]
    Connect {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The TCP connection or the HTTP/2 handshake took too long.
    #[error("connecting to {address}: no connection within {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        address: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The HTTP/2 handshake failed.
    #[error("HTTP/2 handshake with {address}")]
    Handshake {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        #[source]
        source: Arc<h2::Error>,
    },
    /// The TLS handshake failed (an untrusted or mismatched certificate, a
    /// peer that does not speak TLS or HTTP/2).
    #[error("TLS handshake with {address}")]
    Tls {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The connection refused to open the stream (it is closing or gone);
    /// nothing of the request was sent.
    #[error("opening a stream to {address}")]
    Open {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        #[source]
        source: Arc<h2::Error>,
    },
    /// The request was sent but no response headers came back.
    #[error("waiting for the response of {address}")]
    Response {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        #[source]
        source: Arc<h2::Error>,
    },
    /// A streaming request body was already taken by an earlier attempt
    /// (never made: such a call is not retried).
    #[error("the request body for {address} went with an earlier attempt")]
    BodyGone {
        /// The endpoint.
        address: SocketAddr,
    },
    /// The call's deadline (`grpc-timeout`) passed before the response.
    #[error("deadline of {after:?} exceeded waiting for {address}")]
    Deadline {
        /// The endpoint.
        address: SocketAddr,
        /// The call's timeout.
        after: Duration,
    },
}

impl EndpointError {
    /// Whether the server never saw the request, so another endpoint may
    /// take it (gRPC's transparent retry): no connection, a stream the
    /// connection would not open, a stream refused (`REFUSED_STREAM`) or
    /// past the server's `GOAWAY`.
    pub fn unprocessed(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Tls { .. }
            | Self::Handshake { .. } => true,
            // The connection is closing or gone; not a request h2 refused.
            Self::Open { source, .. } => source.is_io() || source.is_go_away(),
            Self::Response { source, .. } => {
                source.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (source.is_go_away() && source.is_remote())
            }
            Self::BodyGone { .. } | Self::Deadline { .. } => false,
        }
    }

    /// Whether the endpoint refused the request unprocessed while it is
    /// fine (a refused stream, a stream past a graceful GOAWAY): the call
    /// may go to another endpoint, and counts on this one only if it goes
    /// nowhere else (load reports).
    pub fn refused(&self) -> bool {
        self.unprocessed() && !self.connection_failed()
    }

    /// Whether the endpoint's connection failed (rather than one call's
    /// stream, or the server replacing a connection with a graceful
    /// GOAWAY): the cluster ejects the endpoint until it answers again.
    pub fn connection_failed(&self) -> bool {
        // A server's GOAWAY NO_ERROR replaces the connection gracefully;
        // ENHANCE_YOUR_CALM says this client was too eager (too many
        // PINGs or resets). Either way the endpoint answers.
        let failed = |source: &h2::Error| {
            source.is_io()
                || (source.is_go_away()
                    && !(source.is_remote()
                        && matches!(
                            source.reason(),
                            Some(h2::Reason::NO_ERROR | h2::Reason::ENHANCE_YOUR_CALM)
                        )))
        };
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Tls { .. }
            | Self::Handshake { .. } => true,
            Self::Open { source, .. } | Self::Response { source, .. } => failed(source),
            Self::BodyGone { .. } | Self::Deadline { .. } => false,
        }
    }

    /// What this failure says about the endpoint (see [`Outcome`]).
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Tls { .. }
            | Self::Handshake { .. } => Outcome::ConnectionLost,
            Self::Open { source, .. } | Self::Response { source, .. } => stream_outcome(source),
            Self::BodyGone { .. } | Self::Deadline { .. } => Outcome::GaveUp,
        }
    }

    /// The status a call that ends with this error returns, naming the
    /// cluster and the endpoint.
    pub fn status(&self, cluster: &str) -> Status {
        let code = match self {
            Self::Deadline { .. } => Code::DeadlineExceeded,
            Self::BodyGone { .. } => Code::Internal,
            // h2 would not send the request at all (e.g. a header HTTP/2
            // forbids): the call's own fault, as gRPC reports it.
            Self::Open { .. } if !self.unprocessed() => Code::Internal,
            Self::Response { source, .. } if !self.connection_failed() && !source.is_go_away() => {
                stream_code(source)
            }
            _ => Code::Unavailable,
        };
        Status::new(
            code,
            format!("cluster {cluster}: {}", crate::telemetry::error_chain(self)),
        )
    }
}

/// Whether a connection ended because the peer found its PINGs too many:
/// GOAWAY(ENHANCE_YOUR_CALM) with the debug data "too_many_pings" (which
/// h2 prints), as gRPC servers send. Servers send ENHANCE_YOUR_CALM for
/// other abuse too (floods of small DATA frames, of resets). Best effort: a
/// peer that resets the socket right after its GOAWAY leaves an I/O error.
pub(super) fn too_many_pings(error: &h2::Error) -> bool {
    error.is_go_away()
        && error.is_remote()
        && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
        && error.to_string().contains("too_many_pings")
}

/// What a call's stream failing with `error` says about its endpoint: the
/// connection failed or went away (its own business: ejection), the
/// stream was given up (a reset this client sent, h2 refusing what the
/// call asked, a server's CANCEL), or the endpoint failed it (any other
/// reset, a protocol error of the peer's).
pub(crate) fn stream_outcome(error: &h2::Error) -> Outcome {
    if error.is_io() || error.is_go_away() {
        return Outcome::ConnectionLost;
    }
    match error.reason() {
        // A user error of h2's (the call's own fault): no reason.
        None => Outcome::GaveUp,
        Some(h2::Reason::CANCEL) => Outcome::GaveUp,
        // Reset by this client (its deadline, its caller, a request body
        // that failed).
        Some(_) if error.is_reset() && !error.is_remote() && !error.is_library() => Outcome::GaveUp,
        Some(_) => Outcome::EndpointFailed,
    }
}

/// The gRPC code for a stream the server reset, as gRPC's HTTP/2 mapping
/// says (PROTOCOL-HTTP2.md, "Errors").
fn stream_code(error: &h2::Error) -> Code {
    match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(_) => Code::Internal,
        None => Code::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn requests_that_never_left_may_go_elsewhere() {
        let refused = EndpointError::Connect {
            address: address(),
            source: Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert!(refused.unprocessed() && refused.connection_failed());
        let refused_stream = EndpointError::Response {
            address: address(),
            source: Arc::new(h2::Error::from(h2::Reason::REFUSED_STREAM)),
        };
        assert!(refused_stream.unprocessed());
        assert!(
            !refused_stream.connection_failed(),
            "one stream, not the connection"
        );
        assert_eq!(refused_stream.status("c").code(), Code::Unavailable);
    }

    /// What a real h2 server does to the one call it gets.
    enum Server {
        Reset(h2::Reason),
        GoAway,
        Nothing,
    }

    /// The error a call on a real h2 connection gets when the server does
    /// `server` (and this client resets the stream first, if `reset`), as
    /// `stream_outcome` reads it.
    async fn outcome_of(server: Server, reset: bool) -> Outcome {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.unwrap();
            let Some(Ok((_request, mut respond))) = connection.accept().await else {
                return;
            };
            match server {
                Server::Reset(reason) => respond.send_reset(reason),
                Server::GoAway => connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR),
                Server::Nothing => {}
            }
            while let Some(Ok(_)) = connection.accept().await {}
            drop(respond);
        });
        let (mut send, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::post("http://backend/call").body(()).unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        if reset {
            stream.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), response);
        let error = answer.await.expect("the call ends").unwrap_err();
        stream_outcome(&error)
    }

    #[tokio::test]
    async fn a_stream_counts_against_the_endpoint_only_when_its_server_failed_it() {
        let internal = Server::Reset(h2::Reason::INTERNAL_ERROR);
        assert_eq!(outcome_of(internal, false).await, Outcome::EndpointFailed);
        let cancel = Server::Reset(h2::Reason::CANCEL);
        assert_eq!(outcome_of(cancel, false).await, Outcome::GaveUp);
        assert_eq!(
            outcome_of(Server::Nothing, true).await,
            Outcome::GaveUp,
            "a reset this client sent"
        );
        assert_eq!(
            outcome_of(Server::GoAway, false).await,
            Outcome::ConnectionLost
        );
    }

    #[test]
    fn a_call_that_never_had_a_stream_counts_against_no_run() {
        let dialled = EndpointError::Connect {
            address: address(),
            source: Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert_eq!(dialled.outcome(), Outcome::ConnectionLost);
        let late = EndpointError::Deadline {
            address: address(),
            after: Duration::from_secs(1),
        };
        assert_eq!(late.outcome(), Outcome::GaveUp);
    }

    #[test]
    fn a_reset_stream_is_neither_retried_nor_an_ejection() {
        let cancelled = EndpointError::Response {
            address: address(),
            source: Arc::new(h2::Error::from(h2::Reason::CANCEL)),
        };
        assert!(!cancelled.unprocessed());
        assert!(!cancelled.connection_failed());
        assert_eq!(cancelled.status("c").code(), Code::Cancelled);
    }

    #[test]
    fn a_request_h2_will_not_send_is_the_calls_fault() {
        // Not a connection error (no I/O, no GOAWAY): e.g. a header HTTP/2
        // forbids. Retrying elsewhere or ejecting would take every
        // endpoint out for one bad call.
        let refused = EndpointError::Open {
            address: address(),
            source: Arc::new(h2::Error::from(h2::Reason::PROTOCOL_ERROR)),
        };
        assert!(!refused.unprocessed());
        assert!(!refused.connection_failed());
        let status = refused.status("greeter");
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("cluster greeter"), "{status:?}");
        assert!(status.message().contains("127.0.0.1:1"), "{status:?}");
    }

    #[test]
    fn a_deadline_is_deadline_exceeded() {
        let late = EndpointError::Deadline {
            address: address(),
            after: Duration::from_millis(5),
        };
        assert!(!late.unprocessed() && !late.connection_failed());
        assert_eq!(late.status("c").code(), Code::DeadlineExceeded);
    }
}
