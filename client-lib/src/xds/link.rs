//! Whether the ADS stream to the control plane is up, as `xds-client`
//! reports it through its metrics hooks (gRFC A78's `connected` gauge and
//! `server_failure` counter): logged when it changes, and exported.
//!
//! Owns: the log lines of a control-plane outage (one when the control
//! plane becomes unreachable, one when it is back, one if it was never
//! reached), and the `lookaside_client_control_plane_*` metrics.
//! Must never: act on an outage (the last assignments keep serving and the
//! xDS client reconnects on its own), or log once per reconnect attempt.

use std::sync::Weak;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use xds_client::metrics::instruments::{XDS_CLIENT_CONNECTED, XDS_CLIENT_SERVER_FAILURE};
use xds_client::{Instrument, KeyValue, MetricsRecorder};

/// No stream has been up yet.
const NEVER: u8 = 0;
/// The stream is up.
const UP: u8 = 1;
/// The control plane could not be reached since the stream was last up.
const DOWN: u8 = 2;

/// The state of one client's link to its control plane.
#[derive(Debug)]
pub(crate) struct ControlPlaneLink {
    /// The control plane's address, as configured.
    address: Box<str>,
    state: AtomicU8,
    connected: Gauge,
    failures: Counter,
}

impl ControlPlaneLink {
    pub(crate) fn new(address: &str) -> Self {
        let labels = [("control_plane", address.to_string())];
        let connected = gauge!("lookaside_client_control_plane_connected", &labels);
        connected.set(0.0);
        Self {
            address: address.into(),
            state: AtomicU8::new(NEVER),
            connected,
            failures: counter!("lookaside_client_control_plane_failures_total", &labels),
        }
    }

    /// Whether the stream to the control plane is up now.
    #[cfg(test)]
    fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// The stream went up (`true`) or the control plane could not be
    /// reached (`false`): one log line per change.
    fn set(&self, up: bool) {
        let before = self
            .state
            .swap(if up { UP } else { DOWN }, Ordering::Relaxed);
        let control_plane = &*self.address;
        match (before, up) {
            (NEVER, true) => tracing::info!(control_plane, "connected to the control plane"),
            (DOWN, true) => tracing::info!(
                control_plane,
                "control plane reachable again; following its assignments"
            ),
            (NEVER | UP, false) => tracing::warn!(
                control_plane,
                "control plane unreachable: calls go on with the last assignments; reconnecting \
                 with backoff"
            ),
            _ => {}
        }
        self.connected.set(if up { 1.0 } else { 0.0 });
    }

    /// Waits `after` (the first-assignment timeout: a first call waits
    /// that long), then logs if the stream has never been up: xDS reports
    /// only the loss of a stream that was up, so a control plane that is
    /// down from the start would otherwise go unlogged. Nothing once the
    /// client and its channels are gone.
    pub(crate) async fn warn_if_never_up(link: Weak<Self>, after: Duration) {
        tokio::time::sleep(after).await;
        let Some(link) = link.upgrade() else {
            return;
        };
        if link.state.load(Ordering::Relaxed) == NEVER {
            tracing::warn!(
                control_plane = &*link.address,
                "no connection to the control plane after {after:?}: channels serve only their \
                 fallback endpoints, if any; still trying"
            );
        }
    }
}

impl MetricsRecorder for ControlPlaneLink {
    fn add_counter_u64(&self, instrument: &'static Instrument, value: u64, _: &[KeyValue]) {
        if instrument.name == XDS_CLIENT_SERVER_FAILURE.name {
            self.failures.increment(value);
        }
    }

    fn add_up_down_counter_i64(&self, _: &'static Instrument, _: i64, _: &[KeyValue]) {}

    fn record_histogram_f64(&self, _: &'static Instrument, _: f64, _: &[KeyValue]) {}

    fn record_gauge_i64(&self, instrument: &'static Instrument, value: i64, _: &[KeyValue]) {
        if instrument.name == XDS_CLIENT_CONNECTED.name {
            self.set(value != 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(link: &ControlPlaneLink, value: i64) {
        link.record_gauge_i64(&XDS_CLIENT_CONNECTED, value, &[]);
    }

    #[test]
    fn follows_the_connected_gauge() {
        let link = ControlPlaneLink::new("http://127.0.0.1:1");
        assert!(!link.is_up());
        connected(&link, 1);
        assert!(link.is_up());
        connected(&link, 0);
        assert!(!link.is_up());
        assert_eq!(link.state.load(Ordering::Relaxed), DOWN);
        connected(&link, 1);
        assert!(link.is_up());
        // Other instruments change nothing.
        link.record_gauge_i64(
            &xds_client::metrics::instruments::XDS_CLIENT_RESOURCES,
            0,
            &[],
        );
        assert!(link.is_up());
    }
}
