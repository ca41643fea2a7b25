//! Whether the ADS stream to the control plane is up, as `xds-client`
//! reports it through its metrics hooks (gRFC A78's `connected` gauge,
//! `server_failure` counter, and the resource-update counters that say a
//! response arrived): logged when it changes, and exported.
//!
//! Owns: the log lines of the link: "connected" at the first response,
//! one warning when the control plane becomes unreachable, one line when
//! it answers again, one warning if nothing came within the first wait
//! (a response counts when it carries a resource: xds-client reports
//! nothing else); and the `lookaside_client_control_plane_*` metrics (the
//! connected gauge follows the stream itself, opened or lost, answered or
//! not).
//! Must never: act on an outage (the last assignments keep serving and the
//! xDS client reconnects on its own), or log once per reconnect attempt
//! (a stream that opens and fails without an answer says nothing new).

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use metrics::{counter, gauge};
use xds_client::metrics::instruments::{
    XDS_CLIENT_CONNECTED, XDS_CLIENT_RESOURCE_UPDATES_INVALID, XDS_CLIENT_RESOURCE_UPDATES_VALID,
    XDS_CLIENT_SERVER_FAILURE,
};
use xds_client::{Instrument, KeyValue, MetricsRecorder};

/// What the logs last said: nothing yet.
const SAID_NOTHING: u8 = 0;
/// ... that the control plane answers.
const SAID_UP: u8 = 1;
/// ... that it cannot be reached.
const SAID_DOWN: u8 = 2;

/// The least a first answer is waited for before the "never answered"
/// warning, however short the first-assignment timeout.
const LEAST_FIRST_WAIT: Duration = Duration::from_secs(5);

/// The state of one client's link to its control plane.
#[derive(Debug)]
pub(crate) struct ControlPlaneLink {
    /// The control plane's address, as configured.
    address: Box<str>,
    /// Whether the stream is up (this client's share of the connected
    /// gauge, which counts the process's clients of this control plane).
    up: AtomicBool,
    said: AtomicU8,
    /// The first wait has started (once per client).
    waiting: AtomicBool,
}

impl ControlPlaneLink {
    pub(crate) fn new(address: &str) -> Self {
        Self {
            address: address.into(),
            up: AtomicBool::new(false),
            said: AtomicU8::new(SAID_NOTHING),
            waiting: AtomicBool::new(false),
        }
    }

    fn labels(&self) -> [(&'static str, String); 1] {
        [("control_plane", self.address.to_string())]
    }

    /// Adds `delta` to the connected gauge (0 only shows it).
    fn connected_by(&self, delta: f64) {
        gauge!("lookaside_client_control_plane_connected", &self.labels()).increment(delta);
    }

    /// The stream opened (`true`) or the control plane could not be
    /// reached (`false`). The gauge follows at once; the log says
    /// "unreachable" once per outage, and "back" only with an answer (see
    /// [`ControlPlaneLink::answered`]).
    fn stream(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.connected_by(if up { 1.0 } else { -1.0 });
        }
        if !up {
            // Shown at 0 also when it was never up.
            self.connected_by(0.0);
            if self.said.swap(SAID_DOWN, Ordering::Relaxed) != SAID_DOWN {
                tracing::warn!(
                    control_plane = &*self.address,
                    "control plane unreachable: calls go on with the last assignments; \
                     reconnecting with backoff"
                );
            }
        }
    }

    /// A response arrived on the stream.
    fn answered(&self) {
        let control_plane = &*self.address;
        match self.said.swap(SAID_UP, Ordering::Relaxed) {
            SAID_NOTHING => tracing::info!(control_plane, "connected to the control plane"),
            SAID_DOWN => tracing::info!(
                control_plane,
                "control plane answers again; following its assignments"
            ),
            _ => {}
        }
    }

    /// At the client's first subscription (the xDS client connects then;
    /// later calls do nothing): waits for `first_assignment_timeout` (at
    /// least 5 s), then warns if nothing came from the control plane.
    /// xds-client reports only the loss of a stream that was up, so a
    /// control plane unreachable from the start would otherwise go
    /// unlogged. Nothing once the client and its channels are gone.
    pub(crate) fn first_subscription(self: &Arc<Self>, first_assignment_timeout: Duration) {
        if self.waiting.swap(true, Ordering::Relaxed) {
            return;
        }
        let link = Arc::downgrade(self);
        tokio::spawn(Self::warn_if_nothing_came(link, first_assignment_timeout));
    }

    async fn warn_if_nothing_came(link: Weak<Self>, first_assignment_timeout: Duration) {
        let after = first_assignment_timeout.max(LEAST_FIRST_WAIT);
        tokio::time::sleep(after).await;
        let Some(link) = link.upgrade() else {
            return;
        };
        if link.said.load(Ordering::Relaxed) != SAID_NOTHING {
            return;
        }
        let control_plane = &*link.address;
        if link.up.load(Ordering::Relaxed) {
            tracing::warn!(
                control_plane,
                "connected to the control plane, but no assignment after {after:?}: does it \
                 know the clusters asked for? Channels serve only their fallback endpoints, if \
                 any"
            );
        } else {
            link.connected_by(0.0);
            tracing::warn!(
                control_plane,
                "no answer from the control plane after {after:?}: channels serve only their \
                 fallback endpoints, if any; still trying"
            );
        }
    }
}

impl Drop for ControlPlaneLink {
    fn drop(&mut self) {
        // The gauge counts the process's clients connected to this
        // control plane: a dropped client is no longer one.
        if *self.up.get_mut() {
            self.connected_by(-1.0);
        }
    }
}

impl MetricsRecorder for ControlPlaneLink {
    fn add_counter_u64(&self, instrument: &'static Instrument, value: u64, _: &[KeyValue]) {
        let name = instrument.name;
        if name == XDS_CLIENT_SERVER_FAILURE.name {
            counter!(
                "lookaside_client_control_plane_failures_total",
                &self.labels()
            )
            .increment(value);
        } else if name == XDS_CLIENT_RESOURCE_UPDATES_VALID.name
            || name == XDS_CLIENT_RESOURCE_UPDATES_INVALID.name
        {
            self.answered();
        }
    }

    fn add_up_down_counter_i64(&self, _: &'static Instrument, _: i64, _: &[KeyValue]) {}

    fn record_histogram_f64(&self, _: &'static Instrument, _: f64, _: &[KeyValue]) {}

    fn record_gauge_i64(&self, instrument: &'static Instrument, value: i64, _: &[KeyValue]) {
        if instrument.name == XDS_CLIENT_CONNECTED.name {
            self.stream(value != 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn connected(link: &ControlPlaneLink, value: i64) {
        link.record_gauge_i64(&XDS_CLIENT_CONNECTED, value, &[]);
    }

    fn answer(link: &ControlPlaneLink) {
        link.add_counter_u64(&XDS_CLIENT_RESOURCE_UPDATES_VALID, 1, &[]);
    }

    /// What the steps since the last look added to the connected gauge (a
    /// debugging snapshot drains it).
    fn added(snapshotter: &metrics_util::debugging::Snapshotter) -> f64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(delta)
                    if key.key().name() == "lookaside_client_control_plane_connected" =>
                {
                    Some(delta.into_inner())
                }
                _ => None,
            })
            .sum()
    }

    /// The connected gauge and the logs' state after each step.
    #[test]
    fn the_gauge_counts_streams_up_and_the_logs_say_each_change_once() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let mut gauge = 0.0;
            let mut look = |link: &ControlPlaneLink| {
                gauge += added(&snapshotter);
                (gauge, link.said.load(Ordering::Relaxed))
            };
            let link = ControlPlaneLink::new("http://127.0.0.1:1");
            assert_eq!(look(&link), (0.0, SAID_NOTHING));
            connected(&link, 1);
            assert_eq!(look(&link), (1.0, SAID_NOTHING), "open, no answer yet");
            answer(&link);
            assert_eq!(look(&link), (1.0, SAID_UP));
            connected(&link, 0);
            assert_eq!(look(&link), (0.0, SAID_DOWN));
            // A stream that opens and fails without an answer: the gauge
            // follows, the logs stay at "unreachable".
            connected(&link, 1);
            assert_eq!(look(&link), (1.0, SAID_DOWN));
            connected(&link, 0);
            assert_eq!(look(&link), (0.0, SAID_DOWN));
            connected(&link, 1);
            answer(&link);
            assert_eq!(look(&link), (1.0, SAID_UP), "back, with an answer");
            // Other instruments change nothing.
            link.record_gauge_i64(
                &xds_client::metrics::instruments::XDS_CLIENT_RESOURCES,
                0,
                &[],
            );
            assert_eq!(look(&link), (1.0, SAID_UP));
            let (before, _) = look(&link);
            drop(link);
            assert_eq!(before + added(&snapshotter), 0.0, "a dropped client");
        });
    }
}
