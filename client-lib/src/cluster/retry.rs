//! Transparent retry: a call whose request never reached a server may go to
//! another endpoint.
//!
//! As gRPC's own transparent retry, only requests that were not processed
//! are retried: the connection could not be made, the server refused the
//! stream (`REFUSED_STREAM`), or it was past the server's GOAWAY. A request
//! that may have reached the server (connection lost mid-call) is never
//! replayed. Only requests whose whole body is known up front (unary and
//! server-streaming calls) can be replayed; streaming request bodies are
//! passed through untouched.

use std::error::Error as StdError;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::BodyExt;
use tonic::body::Body;

/// A request body, either complete in memory (replayable) or still
/// streaming.
#[derive(Debug)]
pub(super) enum RequestBody {
    /// Every byte of the body: the call can be sent again.
    Complete(Bytes),
    /// A body that is still being produced: one attempt only.
    Streaming(Body),
}

impl RequestBody {
    /// Reads what is already available of `body`. Never waits for a body
    /// that is still being produced.
    pub(super) async fn read(mut body: Body) -> Result<Self, tonic::Status> {
        let mut buffer = BytesMut::new();
        loop {
            match body.frame().now_or_never() {
                // Ready and finished: the body is complete.
                Some(None) => return Ok(Self::Complete(buffer.freeze())),
                Some(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => buffer.extend_from_slice(&data),
                    // Trailers in a request: pass it through as a stream.
                    Err(_) => return Ok(Self::Streaming(prepend(buffer.freeze(), body))),
                },
                Some(Some(Err(status))) => return Err(status),
                // Not ready: a streaming body.
                None => return Ok(Self::Streaming(prepend(buffer.freeze(), body))),
            }
        }
    }

    /// The body for one attempt.
    pub(super) fn attempt(&mut self) -> Body {
        match self {
            Self::Complete(bytes) => Body::new(http_body_util::Full::new(bytes.clone())),
            Self::Streaming(body) => std::mem::take(body),
        }
    }

    /// Whether another attempt can be made.
    pub(super) fn replayable(&self) -> bool {
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
    Body::new(http_body_util::StreamBody::new(first.chain(rest)))
}

/// Whether `error` says the request was never processed by the server.
pub(super) fn unprocessed(error: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return true;
            }
            if h2.is_go_away() && h2.is_remote() {
                return true;
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// `error` and its sources, joined by ": ".
pub(super) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let next = source.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = source.source();
    }
    text
}

use futures::StreamExt;

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
            let bytes = body.attempt().collect().await.expect("collect").to_bytes();
            assert_eq!(&bytes[..], b"abc");
        }
    }

    #[tokio::test]
    async fn a_streaming_body_passes_through_once() {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, tonic::Status>>(2);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"first"))))
            .await
            .expect("send");
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut body = RequestBody::read(Body::new(http_body_util::StreamBody::new(stream)))
            .await
            .expect("read");
        assert!(!body.replayable());
        let attempt = body.attempt();
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"-second"))))
            .await
            .expect("send");
        drop(tx);
        let bytes = attempt.collect().await.expect("collect").to_bytes();
        assert_eq!(&bytes[..], b"first-second");
    }

    #[test]
    fn only_unprocessed_errors_are_retried() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(unprocessed(&refused));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!unprocessed(&reset), "the request may have been processed");
        let refused_stream = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(unprocessed(&refused_stream));
    }
}
