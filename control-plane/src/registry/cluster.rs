//! The domain model shared by every stage after discovery.

use std::net::SocketAddr;

/// Smallest weight a routable endpoint may carry (xDS requires > 0).
pub const MIN_WEIGHT: u32 = 1;
/// Largest weight accepted from any source or policy.
pub const MAX_WEIGHT: u32 = 10_000;

/// One balanced service: a name clients subscribe to and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The name of the Listener, RouteConfiguration, Cluster and
    /// ClusterLoadAssignment that carry this cluster (`xds:///NAME`).
    pub name: String,
    /// Endpoints in source order; addresses are unique within a cluster.
    pub endpoints: Vec<Endpoint>,
    /// Which source the cluster came from, e.g. `file:/etc/lookaside.yaml`.
    pub source: String,
    /// How its weights are computed.
    pub policy: Policy,
    /// Where its endpoints serve ORCA load reports.
    pub orca_port: OrcaPort,
}

/// The weight policy of a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The source's weights, as they are.
    Static,
    /// A feedback controller that evens out utilization (the default).
    #[default]
    Utilization,
    /// gRPC's weighted round robin formula (gRFC A58):
    /// `qps / (utilization + eps / qps * penalty)`.
    Wrr,
}

impl Policy {
    /// The name used in config files and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::Utilization => "utilization",
            Policy::Wrr => "wrr",
        }
    }

    /// The policy named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "static" => Some(Policy::Static),
            "utilization" => Some(Policy::Utilization),
            "wrr" => Some(Policy::Wrr),
            _ => None,
        }
    }

    /// Whether the policy needs load reports.
    pub fn needs_load(self) -> bool {
        !matches!(self, Policy::Static)
    }
}

/// The port each endpoint of a cluster serves `OpenRcaService` on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OrcaPort {
    /// The endpoint's own port (gRPC servers add the service beside their
    /// own; the default).
    #[default]
    Same,
    /// A separate port on the same IP.
    Port(u16),
}

impl OrcaPort {
    /// Where `endpoint`'s load reports are served.
    pub fn address_of(self, endpoint: SocketAddr) -> SocketAddr {
        match self {
            OrcaPort::Same => endpoint,
            OrcaPort::Port(port) => SocketAddr::new(endpoint.ip(), port),
        }
    }
}

/// One backend address of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP and port clients connect to.
    pub address: SocketAddr,
    /// Weight the source asked for, in `[MIN_WEIGHT, MAX_WEIGHT]`.
    pub weight: u32,
    /// Where the endpoint runs.
    pub locality: Locality,
    /// Whether clients may send new calls to it.
    pub health: Health,
}

/// Region / zone of an endpoint, as in `envoy.config.core.v3.Locality`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    /// Region, e.g. `eu-west1`.
    pub region: String,
    /// Zone, e.g. `eu-west1-b`.
    pub zone: String,
}

/// Health of an endpoint as the source sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// Serving.
    #[default]
    Healthy,
    /// Going away: finish in-flight calls, send no new ones.
    Draining,
    /// Not serving.
    Unhealthy,
}

impl Health {
    /// The `envoy.config.core.v3.HealthStatus` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Draining => "DRAINING",
            Health::Unhealthy => "UNHEALTHY",
        }
    }
}
