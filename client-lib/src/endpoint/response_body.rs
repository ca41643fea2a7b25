//! A call's response body as it comes in from its HTTP/2 stream, and what
//! keeps the rest of the call alive while the application reads it.
//!
//! Owns: returning flow-control credit as the body is read, ending it at
//! the call's deadline, the status of a stream that fails (UNAVAILABLE for
//! a lost connection), and counting the call out of its connection when
//! the response ends, by its [`Outcome`] (`grpc-status`).
//! Must never: hold a finished call's slot on the connection, or keep a
//! piped request going once the call is over.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::oneshot;
use tonic::Status;

use super::in_flight::InFlight;
use crate::load::Outcome;

/// Held by the response side of a call; when it is dropped (the call
/// finished or was abandoned) the request pipe stops and resets the stream,
/// and the connection counts one call less in flight (if the response has
/// not ended before).
#[derive(Debug)]
pub(crate) struct CallAlive {
    _abandoned: Option<oneshot::Receiver<()>>,
    in_flight: InFlight,
}

impl CallAlive {
    /// For a call with nothing to pipe.
    pub(crate) fn new(in_flight: InFlight) -> Self {
        Self {
            _abandoned: None,
            in_flight,
        }
    }

    /// For a call whose request is piped: `abandoned` closes when this is
    /// dropped (or the response ends), which stops the pipe.
    pub(super) fn piping(in_flight: InFlight, abandoned: oneshot::Receiver<()>) -> Self {
        Self {
            _abandoned: Some(abandoned),
            in_flight,
        }
    }

    /// The response ended (or failed): the connection counts the call out
    /// now, not when the application drops a finished stream it keeps (its
    /// HTTP/2 stream is closed, and calls past the server's stream limit
    /// wait for the count). A request still being piped stops, and its
    /// stream is reset: the call is over, and the stream would otherwise
    /// stay open and counted by HTTP/2. (A complete body larger than the
    /// stream's window, answered before the server read it all, keeps its
    /// stream open in h2 until the body is dropped: a call then may wait in
    /// h2's queue meanwhile. Rare: unary requests are small.)
    pub(super) fn response_ended(&mut self, outcome: Outcome) {
        self.in_flight.finish(outcome);
        self._abandoned = None;
    }

    /// The attempt failed with `error` before its response (see
    /// [`InFlight::settle`]).
    pub(super) fn settle(mut self, error: &super::EndpointError) {
        self.in_flight.settle(error);
    }

    /// Whether the response has ended (the call is counted out).
    fn is_over(&self) -> bool {
        self.in_flight.is_over()
    }
}

/// The body tonic reads for `response`, whose head just arrived: empty
/// when the head ended the stream (a trailers-only response: the call is
/// counted out at once, by the head's `grpc-status`), else read from the
/// stream until `deadline`. (tonic replaces a body that says it has ended
/// with an empty one, dropping it: the call would count as abandoned.)
pub(crate) fn response_body(
    response: http::Response<h2::RecvStream>,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    mut alive: CallAlive,
) -> http::Response<tonic::body::Body> {
    let http = response.status();
    // The one look at h2's state per call (it takes the connection's lock;
    // the body below answers `is_end_stream` from its own state).
    if response.body().is_end_stream() {
        alive.response_ended(ended_by(http, Some(response.headers())));
        return response.map(|_| tonic::body::Body::empty());
    }
    response.map(|stream| tonic::body::Body::new(ResponseBody::new(stream, http, deadline, alive)))
}

/// How a call whose head had HTTP status `http` ended, given the trailers
/// (or trailers-only head) that ended it: succeeded with `grpc-status: 0`
/// over HTTP 200 and nothing else.
fn ended_by(http: http::StatusCode, trailers: Option<&HeaderMap>) -> Outcome {
    match http.as_u16() {
        200 => {}
        // UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED in gRPC's
        // mapping of HTTP statuses: answers about the call.
        401 | 403 | 404 => return Outcome::Answered,
        _ => return Outcome::EndpointFailed,
    }
    let status = trailers.and_then(|trailers| trailers.get(Status::GRPC_STATUS));
    match status.map(http::HeaderValue::as_bytes) {
        Some(b"0") => Outcome::Succeeded,
        // UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS (gRPC's own failures
        // and what a crashing handler gives), or no status.
        Some(b"2" | b"13" | b"14" | b"15") | None => Outcome::EndpointFailed,
        // CANCELLED, DEADLINE_EXCEEDED: the call's deadline or its caller,
        // as the server saw them.
        Some(b"1" | b"4") => Outcome::GaveUp,
        Some(_) => Outcome::Answered,
    }
}

/// A response body read from an h2 stream.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    stream: h2::RecvStream,
    /// The head's HTTP status.
    http: http::StatusCode,
    data_done: bool,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, std::time::Duration)>,
    alive: CallAlive,
}

impl ResponseBody {
    fn new(
        stream: h2::RecvStream,
        http: http::StatusCode,
        deadline: Option<(tokio::time::Instant, std::time::Duration)>,
        alive: CallAlive,
    ) -> Self {
        Self {
            stream,
            http,
            data_done: false,
            deadline: deadline.map(|(at, after)| (Box::pin(tokio::time::sleep_until(at)), after)),
            alive,
        }
    }
}

/// A response body's error (tonic takes any).
type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What a call reading its response sees when the stream fails. A lost
/// connection is UNAVAILABLE, as gRPC specifies for transport failures
/// (tonic alone would say UNKNOWN, which retry policies do not retry); a
/// reset stream keeps the code tonic gives its reason.
fn body_error(error: h2::Error) -> BodyError {
    if error.is_io() {
        let mut status = Status::unavailable(format!(
            "connection lost while reading the response: {error}"
        ));
        status.set_source(std::sync::Arc::new(error));
        return status.into();
    }
    error.into()
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some((sleep, after)) = self.deadline.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            let status = Status::deadline_exceeded(format!(
                "deadline of {after:?} exceeded reading the response"
            ));
            return Poll::Ready(Some(Err(status.into())));
        }
        if !self.data_done {
            match self.stream.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    // Reading it frees the window for more.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(error))) => {
                    // The stream failed: HTTP/2 counts it out too.
                    self.alive
                        .response_ended(super::error::stream_outcome(&error));
                    return Poll::Ready(Some(Err(body_error(error))));
                }
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let Poll::Ready(trailers) = self.stream.poll_trailers(cx) else {
            return Poll::Pending;
        };
        // The last frame, or the stream failed. (Not at a passed deadline:
        // the stream stays open until the body is dropped.)
        let outcome = match &trailers {
            Ok(trailers) => ended_by(self.http, trailers.as_ref()),
            Err(error) => super::error::stream_outcome(error),
        };
        self.alive.response_ended(outcome);
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(body_error(error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not h2's view: asking takes the connection's lock, and a stream
        // that ended with its head never gets here.
        self.alive.is_over()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailers(code: &'static str) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static(code));
        trailers
    }

    #[test]
    fn a_call_succeeded_only_with_status_ok_over_http_200() {
        let ok = http::StatusCode::OK;
        let of = |code: &'static str| ended_by(ok, Some(&trailers(code)));
        assert_eq!(of("0"), Outcome::Succeeded);
        for failed in ["2", "13", "14", "15"] {
            assert_eq!(of(failed), Outcome::EndpointFailed, "status {failed}");
        }
        for answered in ["3", "5", "7", "8", "9", "12", "16"] {
            assert_eq!(of(answered), Outcome::Answered, "status {answered}");
        }
        assert_eq!(of("1"), Outcome::GaveUp, "CANCELLED");
        assert_eq!(of("4"), Outcome::GaveUp, "DEADLINE_EXCEEDED");
        let failed = Outcome::EndpointFailed;
        assert_eq!(ended_by(ok, Some(&HeaderMap::new())), failed, "no status");
        assert_eq!(ended_by(ok, None), failed, "no trailers, no status");
        let http = |code: u16| http::StatusCode::from_u16(code).unwrap();
        for failed in [400, 500, 502, 503, 504] {
            let outcome = ended_by(http(failed), Some(&trailers("0")));
            assert_eq!(outcome, Outcome::EndpointFailed, "HTTP {failed}");
        }
        for answered in [401, 403, 404] {
            let outcome = ended_by(http(answered), None);
            assert_eq!(outcome, Outcome::Answered, "HTTP {answered}");
        }
    }
}
