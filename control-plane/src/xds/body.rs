//! The HTTP/2 response body of an ADS stream.
//!
//! Pulls responses from the stream's one-slot queue only when hyper asks for
//! the next frame (that is, when the client has read what came before), and
//! hands h2 the response's shared byte strings as they are. Ends with gRPC
//! trailers: `grpc-status: 0`, or the status the stream was closed with.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::Status;

use super::response::Wire;

/// What the stream task queues: a response, or the status that ends the
/// stream. Boxed so the channel's preallocated slots stay small (tokio
/// allocates them 32 at a time, per stream).
pub(crate) type Item<R> = Result<Box<R>, Box<Status>>;

/// Response body fed by one stream task.
#[derive(Debug)]
pub(crate) struct OutboundBody<R> {
    queue: mpsc::Receiver<Item<R>>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl<R> OutboundBody<R> {
    pub(crate) fn new(queue: mpsc::Receiver<Item<R>>) -> Self {
        Self {
            queue,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("13"));
    }
    map
}

impl<R: Wire + Send + 'static> http_body::Body for OutboundBody<R> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.queue.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(response))) => {
                self.pending.extend(response.frames());
                match self.pending.pop_front() {
                    Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    None => Poll::Pending,
                }
            }
            Poll::Ready(Some(Err(status))) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(&Status::ok(""))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}
