//! Lookaside config files (YAML) as the tests write them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One endpoint line of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// Weight, 1..=10000 for a valid file (tests write 0 to make it invalid).
    pub weight: u32,
    /// Optional `zone`.
    pub zone: Option<String>,
    /// Optional `health` (`healthy`, `draining`, `unhealthy`).
    pub health: Option<String>,
}

impl Endpoint {
    /// An endpoint with only an address and a weight.
    pub fn new(address: impl ToString, weight: u32) -> Self {
        Self {
            address: address.to_string(),
            weight,
            zone: None,
            health: None,
        }
    }

    /// The same endpoint in `zone`.
    pub fn with_zone(mut self, zone: &str) -> Self {
        self.zone = Some(zone.to_owned());
        self
    }

    /// The same endpoint with `health` (`healthy`, `draining`, `unhealthy`).
    pub fn with_health(mut self, health: &str) -> Self {
        self.health = Some(health.to_owned());
        self
    }
}

/// A whole config file: clusters and their endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    clusters: Vec<(String, Vec<Endpoint>)>,
    /// Weight policy per cluster name, where one is set.
    policies: BTreeMap<String, String>,
}

impl Config {
    /// A file with no cluster yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds cluster `name` with `endpoints`.
    pub fn cluster(mut self, name: &str, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.clusters
            .push((name.to_owned(), endpoints.into_iter().collect()));
        self
    }

    /// Adds cluster `name` whose endpoints are `(address, weight)` pairs.
    pub fn weighted<A: ToString>(
        self,
        name: &str,
        endpoints: impl IntoIterator<Item = (A, u32)>,
    ) -> Self {
        self.cluster(
            name,
            endpoints
                .into_iter()
                .map(|(address, weight)| Endpoint::new(address, weight)),
        )
    }

    /// Sets cluster `name`'s weight `policy` (`static`, `utilization`,
    /// `wrr`); unset, the control plane's default applies.
    pub fn policy(mut self, name: &str, policy: &str) -> Self {
        self.policies.insert(name.to_owned(), policy.to_owned());
        self
    }

    /// The file's text. Each endpoint is one flow-style line, so an error
    /// about an endpoint points at a line [`Config::line_of`] can find.
    pub fn to_yaml(&self) -> String {
        let mut yaml = String::from("clusters:\n");
        for (name, endpoints) in &self.clusters {
            let _ = writeln!(yaml, "  - name: {name}");
            if let Some(policy) = self.policies.get(name) {
                let _ = writeln!(yaml, "    policy: {policy}");
            }
            let _ = writeln!(yaml, "    endpoints:");
            for endpoint in endpoints {
                let _ = write!(
                    yaml,
                    "      - {{ address: {}, weight: {}",
                    endpoint.address, endpoint.weight
                );
                if let Some(zone) = &endpoint.zone {
                    let _ = write!(yaml, ", zone: {zone}");
                }
                if let Some(health) = &endpoint.health {
                    let _ = write!(yaml, ", health: {health}");
                }
                yaml.push_str(" }\n");
            }
        }
        yaml
    }

    /// The 1-based line of [`Config::to_yaml`] that holds endpoint `address`.
    pub fn line_of(&self, address: &str) -> Option<u32> {
        let needle = format!("address: {address},");
        self.to_yaml()
            .lines()
            .position(|line| line.contains(&needle))
            .and_then(|index| u32::try_from(index + 1).ok())
    }
}
