//! Connection settings shared by every endpoint of a client, and how an
//! endpoint's failures take it out of use.

use std::time::Duration;

use super::EndpointTls;

/// How endpoint connections are made and watched.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Give up on a connection attempt after this long.
    pub connect_timeout: Duration,
    /// Send an HTTP/2 PING this often while calls are in flight (never on
    /// an idle connection: gRPC servers count those as abuse by default).
    /// Servers in Go, Java and C++ also allow at most one PING per 5 minutes
    /// unless they send data in between; raise this for quiet long-lived
    /// streams to such servers.
    pub keepalive_interval: Duration,
    /// Declare the peer dead when a PING is not answered in this long.
    pub keepalive_timeout: Duration,
    /// First delay before probing an endpoint that failed (doubled after
    /// each failed probe; every delay give or take a fifth). A probe makes
    /// an HTTP/2 connection (TLS included) and waits for a PING's answer.
    pub probe_backoff_initial: Duration,
    /// Longest delay between probes.
    pub probe_backoff_max: Duration,
    /// A connection that ends is made again unasked (so an endpoint that
    /// went away is ejected when it goes): at once if it had been up for
    /// 10 s, else this long after it was made, doubled for each early end
    /// in a row (a peer that closes every connection is not dialled in a
    /// loop), give or take a fifth.
    pub reconnect_backoff_initial: Duration,
    /// Longest wait before a connection is made again unasked.
    pub reconnect_backoff_max: Duration,
    /// TLS towards the endpoints (default: plaintext).
    pub tls: Option<EndpointTls>,
    /// Take an endpoint that fails calls in a row out for a while (default:
    /// on; `None`: off). See [`FailureAccrual`].
    pub failure_accrual: Option<FailureAccrual>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            probe_backoff_initial: Duration::from_millis(100),
            probe_backoff_max: Duration::from_secs(5),
            // gRPC's connection backoff: 1 s, up to 120 s.
            reconnect_backoff_initial: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(120),
            tls: None,
            failure_accrual: Some(FailureAccrual::default()),
        }
    }
}

/// When an endpoint whose connection is up is taken out for failing calls
/// in a row, and for how long. Counted: UNAVAILABLE, INTERNAL, UNKNOWN,
/// DATA_LOSS, no status, an HTTP error status (but 401, 403, 404), a
/// stream the server reset (but with CANCEL) or that h2 reset for a
/// malformed response. Any other answer (OK or an
/// application's error status) ends a run; a deadline, a cancellation, a
/// stream this client reset, or a lost or failed connection (ejection's
/// business: the endpoint is probed back) neither adds to it nor ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAccrual {
    /// Failures in a row that take an endpoint out (at least 1).
    pub consecutive_failures: u32,
    /// The first penalty; doubled each time the endpoint fails again at
    /// once after coming back (its first call back fails), give or take a
    /// fifth (never past `penalty_max`). Back to this once it answers a
    /// call after coming back.
    pub penalty_initial: Duration,
    /// The longest penalty.
    pub penalty_max: Duration,
    /// At most this share of a priority tier's endpoints is out for failing
    /// calls at once (at least one may be, unless it is the last usable one
    /// of its tier: failure accrual never makes calls fail over).
    pub max_ejected_percent: u32,
}

impl Default for FailureAccrual {
    /// Envoy's consecutive failures (5) and Linkerd's penalties (1 s, up to
    /// 60 s); at most half the endpoints out.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            penalty_initial: Duration::from_secs(1),
            penalty_max: Duration::from_secs(60),
            max_ejected_percent: 50,
        }
    }
}
