//! A tiny HTTP/1.1 client for local admin pages (Envoy's `/clusters`,
//! `/ready`, `/listeners`; Lookaside's `/metrics`): one GET per connection,
//! `Connection: close`, plain or chunked bodies. Enough for a test, and no
//! HTTP client crate in the dependency tree.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// e.g. 200.
    pub status: u16,
    /// The decoded body, as text.
    pub body: String,
}

/// `GET http://{address}{path}`.
pub async fn get(address: SocketAddr, path: &str) -> Result<Response> {
    tokio::time::timeout(TIMEOUT, get_inner(address, path))
        .await
        .with_context(|| format!("GET http://{address}{path} took over {TIMEOUT:?}"))?
        .with_context(|| format!("GET http://{address}{path}"))
}

/// `GET`, failing unless the status is 200; returns the body.
pub async fn get_ok(address: SocketAddr, path: &str) -> Result<String> {
    let response = get(address, path).await?;
    if response.status != 200 {
        bail!(
            "GET http://{address}{path}: status {}: {}",
            response.status,
            response.body
        );
    }
    Ok(response.body)
}

async fn get_inner(address: SocketAddr, path: &str) -> Result<Response> {
    let mut stream = TcpStream::connect(address).await.context("connecting")?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("sending the request")?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .context("reading the response")?;
    parse(&raw)
}

/// Parses a whole HTTP/1.1 response.
fn parse(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .context("no end of headers in the response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .context("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).context("chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        body = body
            .get(size + 2..)
            .context("chunk without trailing CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, "hello");
        let chunked = parse(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 503);
        assert_eq!(chunked.body, "hello world");
    }
}
