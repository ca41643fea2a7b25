//! One call on an endpoint: the request head and body onto a new stream of
//! the endpoint's connection, the response head back, within the call's
//! deadline.
//!
//! Must never: change what the application sent beyond what HTTP/2 needs
//! (`:scheme` and `:authority`, no connection-specific headers, a
//! `user-agent` if there is none).
//!
//! The futures here are kept small on purpose (values are moved in, not
//! held beside the futures that consume them): one is allocated per call.

use std::sync::Arc;

use http::HeaderValue;
use http::header::HeaderName;
use tonic::body::Body;
use tracing::debug;

use super::pipe::spawn_pipe;
use super::request_body::RequestBody;
use super::response_body::{CallAlive, response_body};
use super::{Connection, Deadline, EndpointError};

const USER_AGENT: &str = concat!("lookaside-client/", env!("CARGO_PKG_VERSION"));

/// Sends `head` and `body` to `connection`'s endpoint and waits for the
/// response head, until `deadline` (the call's, shared by its attempts).
/// The response body ends at the deadline too.
// Not an `async fn`: its future would keep every argument beside the
// inner future they are moved into (40 bytes more per call).
#[allow(clippy::manual_async_fn)]
pub(crate) fn call<'a>(
    connection: &'a Connection,
    head: &'a http::request::Parts,
    body: &'a mut RequestBody,
    deadline: Option<Deadline>,
) -> impl Future<Output = Result<http::Response<Body>, EndpointError>> + Send + use<'a> {
    async move {
        let (response, alive) = match deadline {
            None => exchange(connection, head, body, None).await?,
            // Boxed: the timer would otherwise grow every call's future.
            Some(deadline) => Box::pin(tokio::time::timeout_at(
                deadline.at,
                exchange(connection, head, body, Some(deadline)),
            ))
            .await
            .map_err(|_| EndpointError::Deadline {
                address: connection.address(),
                after: deadline.after,
            })??,
        };
        let deadline = deadline.map(|deadline| (deadline.at, deadline.after));
        Ok(response_body(response, deadline, alive))
    }
}

/// The head h2 sends for `head`: its method, path and headers (not its
/// extensions, which never leave the process), this endpoint's scheme and
/// authority, and a user-agent if the application set none.
fn request(connection: &Connection, head: &http::request::Parts) -> http::Request<()> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(connection.scheme().clone());
    uri.authority = Some(connection.authority().clone());
    uri.path_and_query = head.uri.path_and_query().cloned();
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    // Scheme, authority and the application's path always make a URI.
    *request.uri_mut() = http::Uri::from_parts(uri).unwrap_or_default();
    *request.version_mut() = head.version;
    let headers = request.headers_mut();
    *headers = head.headers.clone();
    strip_connection_headers(headers);
    if !headers.contains_key(http::header::USER_AGENT) {
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    request
}

/// Headers HTTP/2 forbids in a request (RFC 9113, 8.2.2); `te` is allowed
/// as `te: trailers` only (see [`strip_te`]).
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes the headers HTTP/2 forbids, as hyper's client does: h2 refuses
/// to send a request that carries one.
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    // One pass over the few headers a call has before any removal (a hash
    // per name): almost no call carries any of them.
    if headers
        .keys()
        .any(|name| CONNECTION_SPECIFIC.contains(name))
    {
        for name in CONNECTION_SPECIFIC {
            headers.remove(name);
        }
    }
    strip_te(headers);
}

/// Removes a `te` header other than `te: trailers` (the only value HTTP/2
/// allows).
fn strip_te(headers: &mut http::HeaderMap) {
    if headers
        .get(http::header::TE)
        .is_some_and(|te| te != "trailers")
    {
        headers.remove(http::header::TE);
    }
}

/// Opens the stream, sends the body (whole, or piped) and waits for the
/// response head. The request head is built only once the connection is
/// ready: it never waits inside the call's future (which is allocated per
/// call and would carry it), and a deadline's time left is measured when
/// the request is sent.
async fn exchange(
    connection: &Connection,
    head: &http::request::Parts,
    body: &mut RequestBody,
    deadline: Option<Deadline>,
) -> Result<(http::Response<h2::RecvStream>, CallAlive), EndpointError> {
    let address = connection.address();
    let opened = |source| EndpointError::Open {
        address,
        source: Arc::new(source),
    };
    // The call is counted on the connection from here until its response
    // ends (or it fails, or its response body is dropped): its keepalive
    // pings only while calls are on it, and calls past the server's stream
    // limit wait here.
    let (mut send, mut in_flight) = connection.ready().await.inspect_err(|error| {
        // Counted for load reports as a call the endpoint failed.
        if error.connection_failed() {
            connection.load().failed_unsent();
        }
    })?;
    let mut request = request(connection, head);
    if let Some(deadline) = deadline {
        deadline.rewrite(request.headers_mut());
    }
    let end = match body {
        RequestBody::Complete(bytes) => bytes.is_empty(),
        RequestBody::Streaming(_) => false,
        RequestBody::Sent => return Err(EndpointError::BodyGone { address }),
    };
    // In a block: the request stream is gone before the wait for the
    // response (the call's future would otherwise carry it).
    let (response, alive) = {
        let (response, mut stream) = match send.send_request(request, end) {
            Ok(opened) => opened,
            Err(source) => {
                let error = opened(source);
                in_flight.settle(&error);
                return Err(error);
            }
        };
        let alive = match body {
            RequestBody::Complete(bytes) => {
                if !end && let Err(error) = stream.send_data(bytes.clone(), true) {
                    // h2 refused the frame (e.g. over 2 GiB in one message), or
                    // the stream already ended. Reset it (a no-op in the second
                    // case): waiting for the response then says why, as for any
                    // stream that ends early, and never waits forever.
                    debug!(endpoint = %address, %error, "request body not sent; resetting the stream");
                    stream.send_reset(h2::Reason::INTERNAL_ERROR);
                }
                CallAlive::new(in_flight)
            }
            // The body is taken only once the stream is open: an attempt that
            // fails before leaves it to the next.
            RequestBody::Streaming(_) | RequestBody::Sent => {
                let RequestBody::Streaming(taken) = body.attempt() else {
                    return Err(EndpointError::BodyGone { address });
                };
                spawn_pipe(taken, stream, in_flight)
            }
        };
        (response, alive)
    };
    drop(send);
    match response.await {
        Ok(response) => Ok((response, alive)),
        Err(source) => {
            let error = EndpointError::Response {
                address,
                source: Arc::new(source),
            };
            alive.settle(&error);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_headers_never_reach_h2() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("x-kept", "yes"),
        ] {
            headers.insert(
                http::header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_connection_headers(&mut headers);
        let left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
        let mut grpc = http::HeaderMap::new();
        grpc.insert(http::header::TE, HeaderValue::from_static("trailers"));
        strip_connection_headers(&mut grpc);
        assert!(
            grpc.contains_key(http::header::TE),
            "gRPC's te: trailers stays"
        );
    }
}
