//! An endpoint: address, weight, tonic channel, usable flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::transport::Channel;

use super::ConnectionSettings;
use crate::telemetry::EndpointMetrics;

/// A backend address with its connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// The HTTP/2 connection (reconnects on its own; clones share it).
    pub channel: Channel,
    usable: Arc<AtomicBool>,
    pub(crate) metrics: EndpointMetrics,
}

impl Endpoint {
    /// An endpoint of `cluster` at `address`. The connection is made on
    /// first use.
    pub fn new(cluster: &str, address: SocketAddr, settings: &ConnectionSettings) -> Self {
        let uri = format!("http://{address}");
        // A SocketAddr always makes a valid authority; fall back to a channel
        // that fails on use rather than panicking if that ever changes.
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .unwrap_or_else(|_| tonic::transport::Endpoint::from_static("http://0.0.0.0:1"))
            .connect_timeout(settings.connect_timeout)
            .http2_keep_alive_interval(settings.keepalive_interval)
            .keep_alive_timeout(settings.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        Self {
            address,
            channel: endpoint.connect_lazy(),
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
