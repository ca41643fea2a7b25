//! The immutable view calls read: usable endpoints and their picker, and
//! the lower tiers' usable endpoints a retry may fall back on.

use std::net::SocketAddr;

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
    /// Usable endpoints of the tiers below the serving one, in tier order.
    /// Never picked: a call whose every serving endpoint failed retries
    /// here, in the moment before the balancer hears of the failures and
    /// fails over (without them, the calls of that moment would fail
    /// though the next tier is ready).
    fallback: Vec<Endpoint>,
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
        }
    }

    /// A set over `usable` endpoints with their weights (>= 1), and the
    /// lower tiers' usable endpoints as `fallback` for retries.
    pub fn new(
        usable: Vec<(Endpoint, u32)>,
        fallback: Vec<Endpoint>,
        assigned_endpoints: usize,
    ) -> Self {
        let picker = Picker::new(usable.iter().map(|(_, w)| (*w).max(1))).ok();
        Self {
            assigned: true,
            assigned_endpoints,
            endpoints: usable.into_iter().map(|(e, _)| e).collect(),
            picker,
            fallback,
        }
    }

    /// The endpoint for the next call, if any is usable.
    pub fn pick(&self) -> Option<&Endpoint> {
        let picker = self.picker.as_ref()?;
        self.endpoints.get(picker.pick())
    }

    /// The first usable endpoint not in `tried`, if any: of the serving
    /// tier, else of the tiers below it.
    pub fn untried(&self, tried: &[SocketAddr]) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .chain(&self.fallback)
            .find(|endpoint| !tried.contains(&endpoint.address))
    }

    /// Number of usable endpoints.
    pub fn usable(&self) -> usize {
        self.endpoints.len()
    }
}
