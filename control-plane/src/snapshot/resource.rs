//! One encoded resource.

use bytes::Bytes;
use prost::Message;

use super::ResourceType;
use lookaside_proto::envoy::service::discovery::v3 as discovery;
use lookaside_proto::google::protobuf::Any;

/// Type URL of the `Resource` wrapper used by Delta and by SotW clients that
/// advertise `xds.config.resource-in-sotw`.
pub(crate) const RESOURCE_WRAPPER_TYPE_URL: &str =
    "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// A resource encoded once, in every form a stream may send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Content hash of the encoded resource.
    pub version: String,
    /// Its type.
    pub kind: ResourceType,
    /// Encoded `google.protobuf.Any` holding the resource (SotW).
    pub any: Bytes,
    /// Encoded `envoy.service.discovery.v3.Resource{name, version, resource}`
    /// (Delta).
    pub wrapped: Bytes,
    /// Encoded `google.protobuf.Any` holding `wrapped` (SotW with
    /// `xds.config.resource-in-sotw`).
    pub wrapped_any: Bytes,
}

impl Resource {
    /// Encodes `message` as resource `name` of type `kind`.
    pub fn encode<M: Message>(kind: ResourceType, name: &str, message: &M) -> Self {
        let value = message.encode_to_vec();
        let version = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&value));
        let any = Any {
            type_url: kind.type_url().to_string(),
            value,
        };
        let wrapped = discovery::Resource {
            name: name.to_string(),
            version: version.clone(),
            resource: Some(any.clone()),
            ..Default::default()
        };
        let wrapped_bytes = wrapped.encode_to_vec();
        let wrapped_any = Any {
            type_url: RESOURCE_WRAPPER_TYPE_URL.to_string(),
            value: wrapped_bytes.clone(),
        };
        Self {
            name: name.to_string(),
            version,
            kind,
            any: Bytes::from(any.encode_to_vec()),
            wrapped: Bytes::from(wrapped_bytes),
            wrapped_any: Bytes::from(wrapped_any.encode_to_vec()),
        }
    }
}
