//! A streaming request body piped into its HTTP/2 stream on its own task,
//! within the stream's flow-control window.
//!
//! Owns: the pipe task, and resetting the stream when the body fails or
//! the call is abandoned.
//! Must never: buffer more than HTTP/2 flow control lets through, or keep
//! piping a request whose call was dropped.

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tonic::body::Body;

use super::in_flight::InFlight;
use super::response_body::CallAlive;

/// Pipes a streaming request body into `stream` on its own task, within
/// the stream's flow-control window.
pub(crate) fn spawn_pipe(
    body: Body,
    stream: h2::SendStream<Bytes>,
    in_flight: InFlight,
) -> CallAlive {
    let (alive, abandoned) = oneshot::channel();
    tokio::spawn(pipe(body, stream, alive));
    CallAlive::piping(in_flight, abandoned)
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
