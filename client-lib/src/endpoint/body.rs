//! Bodies on an HTTP/2 stream: the request's going out (whole, or piped
//! with flow control while the application still produces it) and the
//! response's coming in (returning flow-control credit as it is read, and
//! ending at the call's deadline).
//!
//! Must never: buffer more of a streaming request than HTTP/2 flow control
//! lets through, or keep piping a request whose call was dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tonic::Status;
use tonic::body::Body;

use super::in_flight::InFlight;

/// The most of a request body read ahead over several frames; a larger
/// body that is still coming is streamed (and cannot be retried).
pub const MAX_REPLAYABLE: usize = 1024 * 1024;

/// A request body, either complete in memory (replayable) or still
/// streaming.
#[derive(Debug)]
pub enum RequestBody {
    /// Every byte of the body: the call can be sent again.
    Complete(Bytes),
    /// A body that is still being produced: one attempt only.
    Streaming(Body),
    /// A streaming body an attempt has taken: no other attempt can be made.
    Sent,
}

impl RequestBody {
    /// Reads what is already available of `body`. Never waits for a body
    /// that is still being produced, and never holds more than one frame
    /// past [`MAX_REPLAYABLE`] bytes: a body that has not ended by then is
    /// streamed (one large message stays replayable; a large stream is not
    /// held in memory).
    pub async fn read(mut body: Body) -> Result<Self, Status> {
        let mut read = ReadAhead::default();
        loop {
            match body.frame().now_or_never() {
                // Ready and finished: the body is complete.
                Some(None) => return Ok(Self::Complete(read.into_bytes())),
                Some(Some(Err(status))) => return Err(status),
                // Not ready: a streaming body.
                None => return Ok(Self::Streaming(prepend(read.into_bytes(), None, body))),
                Some(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        read.push(&data);
                        if read.len() > MAX_REPLAYABLE {
                            return match body.frame().now_or_never() {
                                Some(None) => Ok(Self::Complete(read.into_bytes())),
                                Some(Some(Err(status))) => Err(status),
                                None => Ok(Self::Streaming(prepend(read.into_bytes(), None, body))),
                                Some(Some(Ok(next))) => Ok(Self::Streaming(prepend(
                                    read.into_bytes(),
                                    Some(next),
                                    body,
                                ))),
                            };
                        }
                    }
                    // Trailers in a request: pass it through as a stream.
                    Err(trailers) => {
                        return Ok(Self::Streaming(prepend(
                            read.into_bytes(),
                            Some(trailers),
                            body,
                        )));
                    }
                },
            }
        }
    }

    /// The body for an attempt that is sending now: a copy of a complete
    /// body, or a streaming body itself (leaving [`Self::Sent`]). Taken
    /// only once the stream is open, so an attempt that failed before
    /// sending anything leaves a streaming body for the next one.
    pub fn attempt(&mut self) -> Self {
        match self {
            Self::Complete(bytes) => Self::Complete(bytes.clone()),
            Self::Streaming(_) => std::mem::replace(self, Self::Sent),
            Self::Sent => Self::Sent,
        }
    }

    /// Whether another attempt can be made: nothing of a streaming body
    /// has been taken yet.
    pub fn replayable(&self) -> bool {
        !matches!(self, Self::Sent)
    }
}

/// The data of a body read so far. The first frame is copied alone (tonic
/// encodes into a much larger buffer that would otherwise stay allocated
/// for the whole call); later ones are appended.
#[derive(Default)]
struct ReadAhead {
    first: Option<Bytes>,
    more: BytesMut,
}

impl ReadAhead {
    fn push(&mut self, data: &[u8]) {
        if self.first.is_none() {
            self.first = Some(Bytes::copy_from_slice(data));
        } else {
            self.more.extend_from_slice(data);
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    fn into_bytes(self) -> Bytes {
        match self.first {
            None => Bytes::new(),
            Some(first) if self.more.is_empty() => first,
            Some(first) => {
                let mut whole = BytesMut::with_capacity(first.len() + self.more.len());
                whole.extend_from_slice(&first);
                whole.extend_from_slice(&self.more);
                whole.freeze()
            }
        }
    }
}

/// `head`, then `next` (a frame already taken from `rest`), then the rest.
fn prepend(head: Bytes, next: Option<Frame<Bytes>>, rest: Body) -> Body {
    if head.is_empty() && next.is_none() {
        return rest;
    }
    let mut taken = Vec::with_capacity(2);
    if !head.is_empty() {
        taken.push(Ok(Frame::data(head)));
    }
    taken.extend(next.map(Ok));
    let rest = http_body_util::BodyStream::new(rest);
    Body::new(http_body_util::StreamBody::new(futures::StreamExt::chain(
        futures::stream::iter(taken),
        rest,
    )))
}

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

/// Pipes a streaming request body into `stream` on its own task, within
/// the stream's flow-control window.
pub(crate) fn spawn_pipe(
    body: Body,
    stream: h2::SendStream<Bytes>,
    in_flight: InFlight,
) -> CallAlive {
    let (alive, abandoned) = oneshot::channel();
    tokio::spawn(pipe(body, stream, alive));
    CallAlive {
        _abandoned: Some(abandoned),
        in_flight: Some(in_flight),
    }
}

async fn pipe(mut body: Body, mut stream: h2::SendStream<Bytes>, mut alive: oneshot::Sender<()>) {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = alive.closed() => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        let frame = match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(status)) => {
                tracing::debug!(%status, "request body failed; resetting the stream");
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                }
                return;
            }
        };
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = tokio::select! {
                granted = std::future::poll_fn(|cx| stream.poll_capacity(cx)) => granted,
                _ = alive.closed() => {
                    stream.send_reset(h2::Reason::CANCEL);
                    return;
                }
            };
            match granted {
                Some(Ok(0)) => continue,
                Some(Ok(granted)) => {
                    let chunk = data.split_to(granted.min(data.len()));
                    if stream.send_data(chunk, false).is_err() {
                        return;
                    }
                }
                // The stream was reset or the connection closed.
                Some(Err(_)) | None => return,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_complete_body_is_replayable() {
        let mut body = RequestBody::read(Body::new(http_body_util::Full::new(Bytes::from_static(
            b"abc",
        ))))
        .await
        .expect("read");
        assert!(body.replayable());
        for _ in 0..2 {
            let RequestBody::Complete(bytes) = body.attempt() else {
                panic!("complete");
            };
            assert_eq!(&bytes[..], b"abc");
        }
    }

    #[tokio::test]
    async fn a_large_ready_stream_is_streamed_not_held() {
        // Always ready, 64 KiB a frame: read stops past MAX_REPLAYABLE.
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let frames = (0..64).map(move |_| Ok::<_, Status>(Frame::data(chunk.clone())));
        let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        let mut body = RequestBody::read(body).await.expect("read");
        assert!(
            matches!(body, RequestBody::Streaming(_)),
            "4 MiB is not held for a retry"
        );
        let RequestBody::Streaming(attempt) = body.attempt() else {
            panic!("streaming");
        };
        assert!(!body.replayable(), "an attempt took it");
        let bytes = attempt.collect().await.expect("collect").to_bytes();
        assert_eq!(bytes.len(), 64 * 64 * 1024, "nothing lost");
    }

    #[tokio::test]
    async fn one_large_message_stays_replayable() {
        let message = Bytes::from(vec![1u8; 3 * MAX_REPLAYABLE]);
        let mut body = RequestBody::read(Body::new(http_body_util::Full::new(message)))
            .await
            .expect("read");
        assert!(body.replayable());
        let RequestBody::Complete(bytes) = body.attempt() else {
            panic!("complete");
        };
        assert_eq!(bytes.len(), 3 * MAX_REPLAYABLE);
    }

    #[tokio::test]
    async fn request_trailers_are_passed_on() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("42"));
        let frames = vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"data"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        let mut body = RequestBody::read(body).await.expect("read");
        let RequestBody::Streaming(attempt) = body.attempt() else {
            panic!("streaming");
        };
        let collected = attempt.collect().await.expect("collect");
        let trailers = collected.trailers().cloned().expect("trailers kept");
        assert_eq!(trailers["x-checksum"], "42");
        assert_eq!(&collected.to_bytes()[..], b"data");
    }

    #[tokio::test]
    async fn a_streaming_body_passes_through_once() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(2);
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .expect("send");
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut body = RequestBody::read(Body::new(http_body_util::StreamBody::new(stream)))
            .await
            .expect("read");
        assert!(
            body.replayable(),
            "until an attempt takes it, another endpoint may"
        );
        let RequestBody::Streaming(attempt) = body.attempt() else {
            panic!("streaming");
        };
        assert!(!body.replayable());
        assert!(matches!(body.attempt(), RequestBody::Sent), "only once");
        tx.send(Ok(Frame::data(Bytes::from_static(b"-second"))))
            .await
            .expect("send");
        drop(tx);
        let bytes = attempt.collect().await.expect("collect").to_bytes();
        assert_eq!(&bytes[..], b"first-second");
    }
}
