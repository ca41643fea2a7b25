//! One encoded resource.
//!
//! Each form is stored already framed as field 2 of its response message
//! (`DiscoveryResponse.resources` and `DeltaDiscoveryResponse.resources` are
//! both field 2), so a stream's response is a list of shared byte strings
//! that go to the socket as they are: no per-stream copy or re-encoding.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::ResourceType;
use lookaside_proto::envoy::service::discovery::v3 as discovery;
use lookaside_proto::google::protobuf::Any;

/// Type URL of the `Resource` wrapper used by Delta and by SotW clients that
/// advertise `xds.config.resource-in-sotw`.
pub(crate) const RESOURCE_WRAPPER_TYPE_URL: &str =
    "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The field number of `resources` in both response messages.
pub(crate) const RESOURCES_FIELD: u32 = 2;

/// A message framed as one length-delimited protobuf field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// Field key, length and message.
    pub bytes: Bytes,
    header: usize,
}

impl Framed {
    /// Frames `message` as field `tag`.
    pub fn new(tag: u32, message: &[u8]) -> Self {
        let mut bytes = BytesMut::with_capacity(message.len() + 8);
        encode_key(tag, WireType::LengthDelimited, &mut bytes);
        encode_varint(message.len() as u64, &mut bytes);
        let header = bytes.len();
        bytes.put_slice(message);
        Self {
            bytes: bytes.freeze(),
            header,
        }
    }

    /// The message without its field header (shares the same allocation).
    pub fn message(&self) -> Bytes {
        self.bytes.slice(self.header..)
    }
}

/// A resource encoded once, in every form a stream may send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Content hash of the encoded resource.
    pub version: String,
    /// Its type.
    pub kind: ResourceType,
    /// `google.protobuf.Any` holding the resource (SotW).
    pub any: Framed,
    /// `envoy.service.discovery.v3.Resource{name, version, resource}` (Delta).
    pub wrapped: Framed,
    /// `google.protobuf.Any` holding `wrapped` (SotW with
    /// `xds.config.resource-in-sotw`).
    pub wrapped_any: Framed,
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
            any: Framed::new(RESOURCES_FIELD, &any.encode_to_vec()),
            wrapped: Framed::new(RESOURCES_FIELD, &wrapped_bytes),
            wrapped_any: Framed::new(RESOURCES_FIELD, &wrapped_any.encode_to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_forms_hold_the_messages() {
        let resource = Resource::encode(
            ResourceType::Route,
            "g",
            &super::super::resources::route("g"),
        );
        let any = Any::decode(resource.any.message()).expect("Any");
        assert_eq!(any.type_url, ResourceType::Route.type_url());
        let wrapped = discovery::Resource::decode(resource.wrapped.message()).expect("Resource");
        assert_eq!(
            (wrapped.name.as_str(), wrapped.version.as_str()),
            ("g", resource.version.as_str())
        );
        let outer = Any::decode(resource.wrapped_any.message()).expect("Any");
        assert_eq!(outer.type_url, RESOURCE_WRAPPER_TYPE_URL);
        assert_eq!(resource.any.bytes[0], 0x12, "field 2, length-delimited");
    }
}
