//! The tower layer that measures every call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::LoadRecorder;

/// Counts calls in flight, completed and failed. Add it to a tonic server
/// with `Server::builder().layer(...)`.
#[derive(Debug, Clone)]
pub struct OrcaLayer {
    recorder: LoadRecorder,
}

impl OrcaLayer {
    pub(crate) fn new(recorder: LoadRecorder) -> Self {
        Self { recorder }
    }
}

impl<S> Layer<S> for OrcaLayer {
    type Service = OrcaService<S>;

    fn layer(&self, inner: S) -> OrcaService<S> {
        OrcaService {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

/// The service [`OrcaLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct OrcaService<S> {
    inner: S,
    recorder: LoadRecorder,
}

/// Whether a response is a gRPC error known from its headers (a
/// trailers-only response, which is how servers answer most failed calls).
fn is_error<B>(response: &http::Response<B>) -> bool {
    if !response.status().is_success() {
        return true;
    }
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() != b"0")
}

/// Ends the in-flight count however the call ends (even if cancelled).
struct InFlight {
    recorder: LoadRecorder,
    error: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.recorder.finished(self.error);
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for OrcaService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The ORCA stream itself is not load.
        let measured = !request.uri().path().starts_with("/xds.service.orca.v3.");
        let guard = measured.then(|| {
            self.recorder.started();
            InFlight {
                recorder: self.recorder.clone(),
                error: true,
            }
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if let Some(mut guard) = guard {
                guard.error = match &result {
                    Ok(response) => is_error(response),
                    Err(_) => true,
                };
            }
            result
        })
    }
}
