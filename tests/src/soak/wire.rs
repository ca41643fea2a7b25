//! The few fields of ADS responses the soak driver reads, as prost messages
//! of their own: decoding a response skips every other field, so a client
//! spends little CPU on each push (the driver shares two cores with the
//! control plane it measures). Requests use the full generated types.
//!
//! Field numbers are those of envoy's `discovery.proto` and
//! `endpoint.proto`; the tests below check them against the generated
//! types.

use bytes::Bytes;

/// A state-of-the-world `DiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SotwResponse {
    #[prost(string, tag = "1")]
    pub(crate) version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub(crate) resources: Vec<AnyValue>,
    #[prost(string, tag = "4")]
    pub(crate) type_url: String,
    #[prost(string, tag = "5")]
    pub(crate) nonce: String,
}

/// An incremental `DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeltaResponse {
    #[prost(message, repeated, tag = "2")]
    pub(crate) resources: Vec<DeltaResource>,
    #[prost(string, tag = "4")]
    pub(crate) type_url: String,
    #[prost(string, tag = "5")]
    pub(crate) nonce: String,
    #[prost(string, repeated, tag = "6")]
    pub(crate) removed_resources: Vec<String>,
}

/// A Delta `Resource`: its name and its `Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeltaResource {
    #[prost(message, optional, tag = "2")]
    pub(crate) resource: Option<AnyValue>,
    #[prost(string, tag = "3")]
    pub(crate) name: String,
}

/// A `google.protobuf.Any`'s payload (its type URL is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AnyValue {
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) value: Bytes,
}

/// A `ClusterLoadAssignment`: its name and each locality's weight.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Assignment {
    #[prost(string, tag = "1")]
    pub(crate) cluster_name: String,
    #[prost(message, repeated, tag = "2")]
    pub(crate) endpoints: Vec<LocalityWeight>,
}

/// A `LocalityLbEndpoints`' `load_balancing_weight`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LocalityWeight {
    #[prost(message, optional, tag = "3")]
    pub(crate) load_balancing_weight: Option<UInt32>,
}

/// A `google.protobuf.UInt32Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UInt32 {
    #[prost(uint32, tag = "1")]
    pub(crate) value: u32,
}

impl Assignment {
    /// The largest locality weight (0 without localities).
    pub(crate) fn max_weight(&self) -> u32 {
        self.endpoints
            .iter()
            .filter_map(|locality| locality.load_balancing_weight.as_ref())
            .map(|weight| weight.value)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use lookaside_proto::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
    };
    use lookaside_proto::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use lookaside_proto::google::protobuf::{Any, UInt32Value};
    use prost::Message;

    use super::*;

    fn assignment() -> ClusterLoadAssignment {
        let locality = |weight| LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                load_balancing_weight: Some(UInt32Value { value: weight }),
                ..Default::default()
            }],
            load_balancing_weight: Some(UInt32Value { value: weight }),
            ..Default::default()
        };
        ClusterLoadAssignment {
            cluster_name: "soak-7".into(),
            endpoints: vec![locality(5), locality(1042), locality(999)],
            ..Default::default()
        }
    }

    fn any() -> Any {
        Any {
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            value: assignment().encode_to_vec(),
        }
    }

    #[test]
    fn reads_a_sotw_response() {
        let full = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any()],
            type_url: "t".into(),
            nonce: "n1".into(),
            ..Default::default()
        };
        let mine = SotwResponse::decode(full.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(
            (
                mine.version_info.as_str(),
                mine.type_url.as_str(),
                mine.nonce.as_str()
            ),
            ("v1", "t", "n1")
        );
        let cla = Assignment::decode(mine.resources[0].value.clone()).expect("decodes");
        assert_eq!(cla.cluster_name, "soak-7");
        assert_eq!(cla.max_weight(), 1042);
    }

    #[test]
    fn reads_a_delta_response() {
        let full = DeltaDiscoveryResponse {
            resources: vec![Resource {
                name: "soak-7".into(),
                version: "x".into(),
                resource: Some(any()),
                ..Default::default()
            }],
            type_url: "t".into(),
            nonce: "n2".into(),
            removed_resources: vec!["soak-9".into()],
            ..Default::default()
        };
        let mine = DeltaResponse::decode(full.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!((mine.type_url.as_str(), mine.nonce.as_str()), ("t", "n2"));
        assert_eq!(mine.removed_resources, vec!["soak-9".to_string()]);
        assert_eq!(mine.resources[0].name, "soak-7");
        let value = mine.resources[0]
            .resource
            .as_ref()
            .expect("resource")
            .value
            .clone();
        assert_eq!(
            Assignment::decode(value).expect("decodes").max_weight(),
            1042
        );
    }
}
