//! A call's deadline, read from its `grpc-timeout` header (what tonic's
//! `Request::set_timeout` writes). Fixed once per call, so transparent
//! retries share it: each attempt tells the server the time left. The
//! header still goes to the server, which enforces it too; the client
//! stops waiting when it passes.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// When a call must be over.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The instant it passes.
    pub at: Instant,
    /// The call's whole timeout (for messages).
    pub after: Duration,
}

impl Deadline {
    /// The deadline of a call starting now with these headers, if they
    /// carry a valid `grpc-timeout`.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let after = timeout(headers)?;
        Some(Self {
            at: crate::clock::later(Instant::now(), after),
            after,
        })
    }

    /// Sets `grpc-timeout` in `headers` to the time left (a retried
    /// attempt must not grant the server the whole timeout again).
    pub(crate) fn rewrite(&self, headers: &mut HeaderMap) {
        let left = self.at.saturating_duration_since(Instant::now());
        // Under a millisecond gone (a first attempt): the header is exact
        // enough as the application wrote it.
        if self.after.saturating_sub(left) < Duration::from_millis(1) {
            return;
        }
        // Milliseconds, rounded up: at most 8 digits (27 hours).
        let millis = left.as_micros().div_ceil(1000).clamp(1, 99_999_999);
        if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
            headers.insert(GRPC_TIMEOUT, value);
        }
    }
}

/// The `grpc-timeout` of a request, if it has a valid one.
fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    // At most 8 digits and a unit (PROTOCOL-HTTP2.md, "Requests").
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        timeout(&headers)
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn malformed_values_mean_no_deadline() {
        for value in ["", "m", "123456789m", "10x", "-5m", "1.5S", " 5m"] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_attempt_tells_the_server_the_time_left() {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("2S"));
        let deadline = Deadline::of(&headers).expect("a deadline");
        deadline.rewrite(&mut headers);
        assert_eq!(
            headers[GRPC_TIMEOUT], "2S",
            "the first attempt is untouched"
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        deadline.rewrite(&mut headers);
        assert_eq!(headers[GRPC_TIMEOUT], "500m");
        tokio::time::advance(Duration::from_secs(1)).await;
        deadline.rewrite(&mut headers);
        assert_eq!(
            headers[GRPC_TIMEOUT], "1m",
            "never zero: the server ends it"
        );
    }
}
