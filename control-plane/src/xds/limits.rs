//! Per-server and per-stream limits of the ADS server.

/// Limits applied to every ADS stream.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent ADS streams per server.
    pub max_streams: usize,
    /// Resource names in one request.
    pub max_names_per_request: usize,
    /// Resource names one stream may be subscribed to, over every type.
    /// Keep it at most `max_names_per_request`: a Delta client names all
    /// it holds in the first request after a reconnect.
    pub max_subscriptions_per_stream: usize,
    /// Size of one decoded request message, in bytes.
    pub max_request_bytes: usize,
    /// Distinct unknown type URLs one stream may ask for.
    pub max_unknown_types: usize,
    /// Requests per second one stream may send (bursts of twice that);
    /// 0 for no limit. ACKs and NACKs of the latest response are free: they
    /// are bounded by what the server sends.
    pub max_requests_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 50_000,
            max_names_per_request: 10_000,
            max_subscriptions_per_stream: 10_000,
            max_request_bytes: 4 * 1024 * 1024,
            max_unknown_types: 16,
            max_requests_per_second: 100,
        }
    }
}
