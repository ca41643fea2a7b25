//! A call's response body as it comes in from its HTTP/2 stream, and what
//! keeps the rest of the call alive while the application reads it.
//!
//! Owns: returning flow-control credit as the body is read, ending it at
//! the call's deadline, the status of a stream that fails (UNAVAILABLE for
//! a lost connection), and counting the call out of its connection when
//! the response ends.
//! Must never: hold a finished call's slot on the connection, or keep a
//! piped request going once the call is over.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::oneshot;
use tonic::Status;

use super::in_flight::InFlight;

/// Held by the response side of a call; when it is dropped (the call
/// finished or was abandoned) the request pipe stops and resets the stream,
/// and the connection counts one call less in flight (if the response has
/// not ended before).
#[derive(Debug)]
pub(crate) struct CallAlive {
    _abandoned: Option<oneshot::Receiver<()>>,
    in_flight: Option<InFlight>,
}

impl CallAlive {
    /// For a call with nothing to pipe.
    pub(crate) fn new(in_flight: InFlight) -> Self {
        Self {
            _abandoned: None,
            in_flight: Some(in_flight),
        }
    }

    /// For a call whose request is piped: `abandoned` closes when this is
    /// dropped (or the response ends), which stops the pipe.
    pub(super) fn piping(in_flight: InFlight, abandoned: oneshot::Receiver<()>) -> Self {
        Self {
            _abandoned: Some(abandoned),
            in_flight: Some(in_flight),
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
    fn response_ended(&mut self) {
        self.in_flight = None;
        self._abandoned = None;
    }
}

/// A response body read from an h2 stream.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    stream: h2::RecvStream,
    data_done: bool,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, std::time::Duration)>,
    alive: CallAlive,
}

impl ResponseBody {
    pub(crate) fn new(
        stream: h2::RecvStream,
        deadline: Option<(tokio::time::Instant, std::time::Duration)>,
        alive: CallAlive,
    ) -> Self {
        Self {
            stream,
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
                    self.alive.response_ended();
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
        self.alive.response_ended();
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(body_error(error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}
