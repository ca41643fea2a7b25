//! One call on an endpoint: the request head and body onto a new stream of
//! the endpoint's connection, the response head back, within the call's
//! deadline.
//!
//! Must never: change what the application sent beyond what HTTP/2 needs
//! (`:scheme` and `:authority`, a `user-agent` if there is none).

use std::sync::Arc;

use http::HeaderValue;
use tonic::body::Body;

use super::body::{CallAlive, RequestBody, ResponseBody, spawn_pipe};
use super::{Connection, EndpointError, deadline};

const USER_AGENT: &str = concat!("lookaside-client/", env!("CARGO_PKG_VERSION"));

/// Sends `head` and `body` to `connection`'s endpoint and waits for the
/// response head. The response body ends at the deadline too.
pub(crate) async fn call(
    connection: &Connection,
    mut head: http::request::Parts,
    body: RequestBody,
) -> Result<http::Response<Body>, EndpointError> {
    let address = connection.address();
    let deadline =
        deadline::timeout(&head.headers).map(|after| (tokio::time::Instant::now() + after, after));
    let mut uri = std::mem::take(&mut head.uri).into_parts();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(connection.authority().clone());
    // Scheme, authority and the application's path always make a URI.
    head.uri = http::Uri::from_parts(uri).unwrap_or_default();
    if !head.headers.contains_key(http::header::USER_AGENT) {
        head.headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    let request = http::Request::from_parts(head, ());
    let opened = |source| EndpointError::Open {
        address,
        source: Arc::new(source),
    };

    let send = async {
        let mut send = connection.ready().await?;
        let (response, alive) = match body {
            RequestBody::Complete(bytes) => {
                let end = bytes.is_empty();
                let (response, mut stream) = send.send_request(request, end).map_err(opened)?;
                if !end {
                    // Sent as one DATA frame with END_STREAM.
                    stream
                        .send_data(bytes, true)
                        .map_err(|source| EndpointError::Response {
                            address,
                            source: Arc::new(source),
                        })?;
                }
                (response, CallAlive::none())
            }
            RequestBody::Streaming(body) => {
                let (response, stream) = send.send_request(request, false).map_err(opened)?;
                (response, spawn_pipe(body, stream))
            }
        };
        let response = response.await.map_err(|source| EndpointError::Response {
            address,
            source: Arc::new(source),
        })?;
        Ok((response, alive))
    };
    let (response, alive) = match deadline {
        None => send.await?,
        Some((at, after)) => tokio::time::timeout_at(at, send)
            .await
            .map_err(|_| EndpointError::Deadline { address, after })??,
    };
    Ok(response.map(|stream| Body::new(ResponseBody::new(stream, deadline, alive))))
}
