//! Bodies on an HTTP/2 stream: the request's going out (whole, or piped
//! with flow control while the application still produces it) and the
//! response's coming in (returning flow-control credit as it is read, and
//! ending at the call's deadline).
//!
//! Must never: buffer more of a streaming request than HTTP/2 flow control
//! lets through, or keep piping a request whose call was dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tonic::Status;
use tonic::body::Body;

/// A request body, either complete in memory (replayable) or still
/// streaming.
#[derive(Debug)]
pub enum RequestBody {
    /// Every byte of the body: the call can be sent again.
    Complete(Bytes),
    /// A body that is still being produced: one attempt only.
    Streaming(Body),
}

impl RequestBody {
    /// Reads what is already available of `body`. Never waits for a body
    /// that is still being produced.
    pub async fn read(mut body: Body) -> Result<Self, Status> {
        let mut complete = Bytes::new();
        loop {
            match body.frame().now_or_never() {
                // Ready and finished: the body is complete.
                Some(None) => return Ok(Self::Complete(complete)),
                Some(Some(Ok(frame))) => match frame.into_data() {
                    // Copied: tonic encodes into a much larger buffer that
                    // would otherwise stay allocated for the whole call.
                    Ok(data) if complete.is_empty() => complete = Bytes::copy_from_slice(&data),
                    Ok(data) => complete = [&complete[..], &data[..]].concat().into(),
                    // Trailers in a request: pass it through as a stream.
                    Err(_) => return Ok(Self::Streaming(prepend(complete, body))),
                },
                Some(Some(Err(status))) => return Err(status),
                // Not ready: a streaming body.
                None => return Ok(Self::Streaming(prepend(complete, body))),
            }
        }
    }

    /// The body for one attempt.
    pub fn attempt(&mut self) -> Self {
        match self {
            Self::Complete(bytes) => Self::Complete(bytes.clone()),
            Self::Streaming(body) => Self::Streaming(std::mem::take(body)),
        }
    }

    /// Whether another attempt can be made.
    pub fn replayable(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}

/// `head` followed by the rest of `body`.
fn prepend(head: Bytes, body: Body) -> Body {
    if head.is_empty() {
        return body;
    }
    let first = http_body_util::BodyStream::new(Body::new(http_body_util::Full::new(head)));
    let rest = http_body_util::BodyStream::new(body);
    Body::new(http_body_util::StreamBody::new(futures::StreamExt::chain(
        first, rest,
    )))
}

/// Held by the response side of a call; when it is dropped (the call
/// finished or was abandoned) the request pipe stops and resets the stream.
#[derive(Debug)]
pub(crate) struct CallAlive(#[allow(dead_code)] Option<oneshot::Receiver<()>>);

impl CallAlive {
    /// For a call with nothing to pipe.
    pub(crate) fn none() -> Self {
        Self(None)
    }
}

/// Pipes a streaming request body into `stream` on its own task, within
/// the stream's flow-control window.
pub(crate) fn spawn_pipe(body: Body, stream: h2::SendStream<Bytes>) -> CallAlive {
    let (alive, abandoned) = oneshot::channel();
    tokio::spawn(pipe(body, stream, alive));
    CallAlive(Some(abandoned))
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
    _alive: CallAlive,
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
            _alive: alive,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

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
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.stream.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            Poll::Pending => Poll::Pending,
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
    async fn a_streaming_body_passes_through_once() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(2);
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .expect("send");
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut body = RequestBody::read(Body::new(http_body_util::StreamBody::new(stream)))
            .await
            .expect("read");
        assert!(!body.replayable());
        let RequestBody::Streaming(attempt) = body.attempt() else {
            panic!("streaming");
        };
        tx.send(Ok(Frame::data(Bytes::from_static(b"-second"))))
            .await
            .expect("send");
        drop(tx);
        let bytes = attempt.collect().await.expect("collect").to_bytes();
        assert_eq!(&bytes[..], b"first-second");
    }
}
