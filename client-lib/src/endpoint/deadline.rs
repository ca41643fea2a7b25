//! A call's deadline, read from its `grpc-timeout` header (what tonic's
//! `Request::set_timeout` writes). The header still goes to the server,
//! which enforces it too; the client stops waiting when it passes.

use std::time::Duration;

use http::HeaderMap;

/// The `grpc-timeout` of a request, if it has a valid one.
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
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
        headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
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
}
