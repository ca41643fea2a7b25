//! An endpoint as the cluster holds it: address, connection, usable flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Connection, ConnectionSettings, Failures};
use crate::load::EndpointLoad;
use crate::telemetry::EndpointMetrics;

/// A backend address with its connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    pub(crate) connection: Connection,
    usable: Arc<AtomicBool>,
    pub(crate) metrics: EndpointMetrics,
}

impl Endpoint {
    /// An endpoint of `cluster` at `address`; it starts connecting at once.
    /// Connection attempts that fail are reported on `failures`, calls
    /// counted on `load`. Must be called within a tokio runtime.
    pub(crate) fn new(
        cluster: &str,
        address: SocketAddr,
        settings: &ConnectionSettings,
        failures: Failures,
        load: EndpointLoad,
    ) -> Self {
        let connection = Connection::new(cluster, address, settings, failures, load);
        connection.warm_up();
        Self {
            address,
            connection,
            usable: Arc::new(AtomicBool::new(true)),
            metrics: EndpointMetrics::new(cluster, address),
        }
    }

    /// Whether calls may go to it.
    pub fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// Marks it (un)usable; returns whether that changed anything.
    pub fn set_usable(&self, usable: bool) -> bool {
        self.usable.swap(usable, Ordering::AcqRel) != usable
    }
}
