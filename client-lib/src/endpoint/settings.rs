//! Connection settings shared by every endpoint of a client, and which of
//! them can work.
//!
//! Owns: the settings, their defaults, and refusing values that cannot
//! work (`ConnectionSettings::validate`).
//! Must never: change a value the application gave (it is refused or
//! taken as it is).

use std::time::Duration;

use super::EndpointTls;

/// How endpoint connections are made and watched.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Give up on a connection attempt after this long.
    pub connect_timeout: Duration,
    /// Send an HTTP/2 PING this often while calls are in flight (on an idle
    /// connection only with `keepalive_while_idle`: gRPC servers count
    /// those as abuse by default).
    /// Servers in Go, Java and C++ also allow at most one PING per 5 minutes
    /// unless they send data in between; raise this for quiet long-lived
    /// streams to such servers.
    pub keepalive_interval: Duration,
    /// Declare the peer dead when a PING is not answered in this long.
    pub keepalive_timeout: Duration,
    /// PING idle connections too (gRPC's `keepalive_permit_without_calls`),
    /// so a connection to a peer that went away silently (a node lost, a
    /// partition) is closed within `keepalive_interval` plus
    /// `keepalive_timeout`, and the endpoint ejected when it cannot be
    /// connected again, before calls find it. Off by default: the servers
    /// must permit PINGs without calls at this interval, or they close the
    /// connection ("too_many_pings") and the interval doubles up to minutes:
    /// grpc-go `keepalive.EnforcementPolicy{PermitWithoutStream: true,
    /// MinTime}`, grpc-java `permitKeepAliveWithoutCalls(true)` and
    /// `permitKeepAliveTime`, gRPC C++ `GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS`
    /// and `GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS`, with
    /// the minimum time no longer than `keepalive_interval` (5 minutes by
    /// default in all three). tonic (hyper) servers accept them as they are.
    pub keepalive_while_idle: bool,
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
}

impl ConnectionSettings {
    /// Whether these settings can work: a zero connect timeout would eject
    /// every endpoint, and a zero keepalive interval or timeout, probe or
    /// reconnect backoff would PING or dial in a loop. `Client`'s builder
    /// checks them; check them yourself before `ClusterBalancer::spawn`.
    /// The error names the field.
    pub fn validate(&self) -> Result<(), ConnectionSettingsError> {
        for (setting, value) in [
            ("connect_timeout", self.connect_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
            ("probe_backoff_initial", self.probe_backoff_initial),
            ("reconnect_backoff_initial", self.reconnect_backoff_initial),
        ] {
            if value.is_zero() {
                return Err(ConnectionSettingsError::Zero { setting });
            }
        }
        Ok(())
    }
}

/// A [`ConnectionSettings`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionSettingsError {
    /// A duration that must be more than zero is zero.
    #[error("connection setting {setting} must be more than zero")]
    Zero {
        /// The field.
        setting: &'static str,
    },
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            keepalive_while_idle: false,
            probe_backoff_initial: Duration::from_millis(100),
            probe_backoff_max: Duration::from_secs(5),
            // gRPC's connection backoff: 1 s, up to 120 s.
            reconnect_backoff_initial: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(120),
            tls: None,
        }
    }
}
