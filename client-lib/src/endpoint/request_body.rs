//! A call's request body as it leaves the application: read ahead while
//! it is already there, so a request no server processed can be sent again.
//!
//! Owns: telling a complete body (kept, replayable) from one still being
//! produced (streamed once), and handing each attempt its copy.
//! Must never: wait for a body that is still being produced, or hold more
//! than [`MAX_REPLAYABLE`] (plus one frame) of it in memory.

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;

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
