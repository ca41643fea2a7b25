//! The YAML schema of the config file. Field-level checks (weight range,
//! address syntax and routability, unknown fields) run during
//! deserialization so the YAML parser attaches the line and column of the
//! offending value.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, de};

use crate::registry::{Health, MAX_WEIGHT, MIN_WEIGHT, Policy};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    /// Balanced services; `None` when the file has no `clusters` key.
    /// `clusters:` with nothing after it is refused (a file cut short reads
    /// so); `clusters: []` serves none.
    #[serde(default, deserialize_with = "clusters")]
    pub(super) clusters: Option<Vec<ClusterEntry>>,
}

/// One cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterEntry {
    pub(super) name: ClusterName,
    /// Weight policy: `static`, `utilization` (default) or `wrr`.
    #[serde(default)]
    pub(super) policy: PolicyEntry,
    /// Port the endpoints serve ORCA on, when not their own port.
    #[serde(default)]
    pub(super) orca_port: Option<OrcaPortEntry>,
    /// `endpoints:` with nothing after it is refused (a file cut short
    /// reads so); leave the key out or write `endpoints: []` for none.
    #[serde(default, deserialize_with = "endpoints")]
    pub(super) endpoints: Vec<EndpointEntry>,
}

fn clusters<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<ClusterEntry>>, D::Error> {
    list(deserializer, "clusters").map(Some)
}

fn endpoints<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<EndpointEntry>, D::Error> {
    list(deserializer, "endpoints")
}

/// A list that must be written as one: YAML reads `key:` with nothing
/// after it as null, which serde would take for an empty list.
fn list<'de, D, T>(deserializer: D, key: &str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(deserializer)?.ok_or_else(|| {
        de::Error::custom(format!(
            "{key}: expected a list, found nothing (write {key}: [] for none)"
        ))
    })
}

/// A policy name as written in the file.
#[derive(Debug, Default)]
pub(super) struct PolicyEntry(pub(super) Policy);

impl<'de> Deserialize<'de> for PolicyEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Judged inside the visitor, so the error carries the value's line.
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = PolicyEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a policy: static, utilization or wrr")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<PolicyEntry, E> {
                Policy::parse(name).map(PolicyEntry).ok_or_else(|| {
                    E::custom(format!(
                        "unknown policy {name:?}: expected static, utilization or wrr"
                    ))
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A non-zero port.
#[derive(Debug)]
pub(super) struct OrcaPortEntry(pub(super) u16);

impl<'de> Deserialize<'de> for OrcaPortEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Judged inside the visitor, so the error carries the value's line.
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = OrcaPortEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a port in 1..=65535")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OrcaPortEntry, E> {
                match u16::try_from(v) {
                    Ok(port) if port > 0 => Ok(OrcaPortEntry(port)),
                    _ => Err(E::custom(format!(
                        "orca_port {v}: expected a port in 1..=65535"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OrcaPortEntry, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "orca_port {v}: expected a port in 1..=65535"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointEntry {
    pub(super) address: Address,
    #[serde(default)]
    pub(super) weight: Weight,
    #[serde(default)]
    pub(super) region: String,
    #[serde(default)]
    pub(super) zone: String,
    #[serde(default)]
    pub(super) health: HealthEntry,
}

/// A cluster name: what clients put after `xds:///`.
#[derive(Debug)]
pub(super) struct ClusterName(pub(super) String);

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() {
            return Err(de::Error::custom("cluster name must not be empty"));
        }
        if name.len() > 253 {
            return Err(de::Error::custom(format!(
                "cluster name is {} characters long; at most 253 are allowed",
                name.len()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')))
        {
            return Err(de::Error::custom(format!(
                "cluster name {name:?} contains {bad:?}; use letters, digits and . - _ : /"
            )));
        }
        Ok(ClusterName(name))
    }
}

/// An `IP:port` address.
#[derive(Debug)]
pub(super) struct Address(pub(super) SocketAddr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let address: SocketAddr = text.parse().map_err(|_| {
            de::Error::custom(format!(
                "invalid address {text:?}: expected IP:port, e.g. 10.0.0.7:50051 or [fd00::7]:50051 \
                 (host names are not resolved)"
            ))
        })?;
        // The rule every client of ours applies too (it would NACK them).
        if let Some(why) = lookaside_proto::address::unroutable(address) {
            return Err(de::Error::custom(format!(
                "invalid address {text:?}: {why}"
            )));
        }
        Ok(Address(address))
    }
}

/// An endpoint weight in `[MIN_WEIGHT, MAX_WEIGHT]`.
#[derive(Debug)]
pub(super) struct Weight(pub(super) u32);

impl Default for Weight {
    fn default() -> Self {
        Weight(MIN_WEIGHT)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Weight;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an integer weight in {MIN_WEIGHT}..={MAX_WEIGHT}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                match u32::try_from(v) {
                    Ok(w) if (MIN_WEIGHT..=MAX_WEIGHT).contains(&w) => Ok(Weight(w)),
                    _ => Err(E::custom(format!(
                        "weight {v} is out of range: must be an integer in {MIN_WEIGHT}..={MAX_WEIGHT}"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(format!(
                        "weight {v} is out of range: must be an integer in {MIN_WEIGHT}..={MAX_WEIGHT}"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Weight, E> {
                Err(E::custom(format!(
                    "weight {v} is not an integer: must be an integer in {MIN_WEIGHT}..={MAX_WEIGHT}"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Health as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum HealthEntry {
    #[default]
    Healthy,
    Draining,
    Unhealthy,
}

impl From<HealthEntry> for Health {
    fn from(entry: HealthEntry) -> Self {
        match entry {
            HealthEntry::Healthy => Health::Healthy,
            HealthEntry::Draining => Health::Draining,
            HealthEntry::Unhealthy => Health::Unhealthy,
        }
    }
}
