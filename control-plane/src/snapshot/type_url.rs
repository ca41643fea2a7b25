//! The resource types we serve and their type URLs.

/// An xDS resource type served by Lookaside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `envoy.config.cluster.v3.Cluster` (CDS).
    Cluster,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
    Assignment,
    /// `envoy.config.listener.v3.Listener` (LDS).
    Listener,
    /// `envoy.config.route.v3.RouteConfiguration` (RDS).
    Route,
}

impl ResourceType {
    /// All types in the order ADS sends them: CDS, EDS, LDS, RDS, so that a
    /// Cluster's assignment follows the Cluster and a Listener's route
    /// configuration follows the Listener.
    pub const ADS_ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Assignment,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    /// The type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Assignment => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
        }
    }

    /// The type for a type URL, if we serve it.
    pub fn from_type_url(type_url: &str) -> Option<Self> {
        Self::ADS_ORDER
            .into_iter()
            .find(|kind| kind.type_url() == type_url)
    }

    /// Short name: LDS, RDS, CDS or EDS.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::Cluster => "CDS",
            ResourceType::Assignment => "EDS",
        }
    }

    /// Whether the protocol allows wildcard subscriptions for this type and
    /// treats a resource missing from a SotW response as deleted.
    pub fn is_full_state(self) -> bool {
        matches!(self, ResourceType::Listener | ResourceType::Cluster)
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ResourceType::Cluster => 0,
            ResourceType::Assignment => 1,
            ResourceType::Listener => 2,
            ResourceType::Route => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip() {
        for kind in ResourceType::ADS_ORDER {
            assert_eq!(ResourceType::from_type_url(kind.type_url()), Some(kind));
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x.Y"), None);
    }
}
