//! The immutable view calls read: usable endpoints and their picker, and
//! the lower tiers' usable endpoints a retry may fall back on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::balance::Picker;
use crate::endpoint::Endpoint;

/// Usable endpoints of a cluster at one moment, with their picker.
#[derive(Debug)]
pub struct EndpointSet {
    /// Whether any assignment arrived yet.
    pub assigned: bool,
    /// Endpoints in the assignment (usable or not).
    pub assigned_endpoints: usize,
    endpoints: Vec<Endpoint>,
    picker: Option<Picker>,
    /// Usable endpoints of the tiers below the serving one, a list per
    /// tier, in tier order. Never picked: a call whose connection to every
    /// serving endpoint failed retries here, in the moment before the
    /// balancer hears of the failures and fails over (without them, the
    /// calls of that moment would fail though the next tier is ready).
    fallback: Vec<Vec<Endpoint>>,
    /// Turns the fallback's first endpoint, so that the calls caught in
    /// that moment spread over the next tier.
    rotation: AtomicUsize,
}

impl EndpointSet {
    /// The set before any assignment.
    pub fn unassigned() -> Self {
        Self {
            assigned: false,
            assigned_endpoints: 0,
            endpoints: Vec::new(),
            picker: None,
            fallback: Vec::new(),
            rotation: AtomicUsize::new(0),
        }
    }

    /// A set over `usable` endpoints with their weights (>= 1), and the
    /// lower tiers' usable endpoints (a list per tier, in tier order) as
    /// `fallback` for retries.
    pub fn new(
        usable: Vec<(Endpoint, u32)>,
        fallback: Vec<Vec<Endpoint>>,
        assigned_endpoints: usize,
    ) -> Self {
        let picker = Picker::new(usable.iter().map(|(_, w)| (*w).max(1))).ok();
        Self {
            assigned: true,
            assigned_endpoints,
            endpoints: usable.into_iter().map(|(e, _)| e).collect(),
            picker,
            fallback,
            rotation: AtomicUsize::new(0),
        }
    }

    /// The endpoint for the next call, if any is usable.
    pub fn pick(&self) -> Option<&Endpoint> {
        let picker = self.picker.as_ref()?;
        self.endpoints.get(picker.pick())
    }

    /// The first usable endpoint not `tried`, if any.
    pub fn untried(&self, tried: impl Fn(SocketAddr) -> bool) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| !tried(endpoint.address))
    }

    /// For a retry once the connection to every usable endpoint has
    /// `failed`: an endpoint of the first lower tier that has one not
    /// `tried`, turning from call to call. None while some usable endpoint
    /// has not failed (a refused stream is no reason to leave the tier).
    pub fn fallback(
        &self,
        failed: impl Fn(SocketAddr) -> bool,
        tried: impl Fn(SocketAddr) -> bool,
    ) -> Option<&Endpoint> {
        if !self
            .endpoints
            .iter()
            .all(|endpoint| failed(endpoint.address))
        {
            return None;
        }
        let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
        self.fallback.iter().find_map(|tier| {
            (0..tier.len())
                .filter_map(|i| tier.get((turn + i) % tier.len()))
                .find(|endpoint| !tried(endpoint.address))
        })
    }

    /// Number of usable endpoints.
    pub fn usable(&self) -> usize {
        self.endpoints.len()
    }
}
