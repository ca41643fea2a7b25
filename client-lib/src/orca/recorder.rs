//! Counters the layer bumps on every call, and application metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Load of this server, shared by the layer (writer of the counters) and
/// every ORCA stream (readers). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LoadRecorder {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicI64,
    completed: AtomicU64,
    errors: AtomicU64,
    named: Mutex<BTreeMap<String, f64>>,
    application_utilization: Mutex<Option<f64>>,
}

impl LoadRecorder {
    pub(crate) fn started(&self) {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, error: bool) {
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.inner.completed.fetch_add(1, Ordering::Relaxed);
        if error {
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls being served now.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.inner.in_flight.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Calls completed since start.
    pub fn completed(&self) -> u64 {
        self.inner.completed.load(Ordering::Relaxed)
    }

    /// Calls that ended in an error since start.
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }

    /// Sets an application metric reported in `named_metrics`.
    pub fn set_named(&self, name: impl Into<String>, value: f64) {
        if let Ok(mut named) = self.inner.named.lock() {
            named.insert(name.into(), value);
        }
    }

    /// Sets the application-defined utilization (`application_utilization`).
    pub fn set_application_utilization(&self, value: f64) {
        if let Ok(mut slot) = self.inner.application_utilization.lock() {
            *slot = Some(value);
        }
    }

    pub(crate) fn named(&self) -> BTreeMap<String, f64> {
        self.inner
            .named
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    pub(crate) fn application_utilization(&self) -> Option<f64> {
        self.inner
            .application_utilization
            .lock()
            .ok()
            .and_then(|v| *v)
    }
}
