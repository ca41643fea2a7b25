//! What a Service's labels ask of Lookaside: the weight policy and the ORCA
//! port. Kubernetes copies a Service's labels onto its EndpointSlices, so the
//! same labels are read from either.
//!
//! Owns: the label names and how their values parse.
//! Must never: reject an object over a bad value; an unknown value keeps the
//! default and is logged, so a typo never stops a Service being served.

use std::collections::BTreeMap;

use crate::registry::{OrcaPort, Policy};

/// Optional Service label (copied onto its slices) choosing the weight
/// policy: `static`, `utilization` (default) or `wrr`.
pub const POLICY_LABEL: &str = "lookaside.io/policy";

/// Optional Service label (copied onto its slices): the port the pods serve
/// ORCA load reports on, when it is not the balanced port.
pub const ORCA_PORT_LABEL: &str = "lookaside.io/orca-port";

/// The balancing options of one Service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Balancing {
    /// How weights are computed.
    pub(super) policy: Policy,
    /// Where endpoints serve ORCA.
    pub(super) orca_port: OrcaPort,
}

impl Balancing {
    /// The options `labels` ask for; `object` names the labelled object in
    /// the log line of a bad value.
    pub(super) fn from_labels(labels: Option<&BTreeMap<String, String>>, object: &str) -> Self {
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        let policy = match label(POLICY_LABEL) {
            None => Policy::default(),
            Some(value) => Policy::parse(value).unwrap_or_else(|| {
                tracing::warn!(
                    object,
                    value,
                    "unknown {POLICY_LABEL}; expected static, utilization or wrr; using utilization"
                );
                Policy::default()
            }),
        };
        let orca_port = match label(ORCA_PORT_LABEL) {
            None => OrcaPort::Same,
            Some(value) => match value.parse::<u16>() {
                Ok(port) if port > 0 => OrcaPort::Port(port),
                _ => {
                    tracing::warn!(
                        object,
                        value,
                        "invalid {ORCA_PORT_LABEL}; expected a port number; using the balanced port"
                    );
                    OrcaPort::Same
                }
            },
        };
        Self { policy, orca_port }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn labels_choose_policy_and_orca_port_and_bad_values_keep_defaults() {
        assert_eq!(Balancing::from_labels(None, "s"), Balancing::default());
        let good = labels(&[(POLICY_LABEL, "wrr"), (ORCA_PORT_LABEL, "9000")]);
        assert_eq!(
            Balancing::from_labels(Some(&good), "s"),
            Balancing {
                policy: Policy::Wrr,
                orca_port: OrcaPort::Port(9000),
            }
        );
        let bad = labels(&[(POLICY_LABEL, "fastest"), (ORCA_PORT_LABEL, "0")]);
        assert_eq!(
            Balancing::from_labels(Some(&bad), "s"),
            Balancing::default()
        );
    }
}
