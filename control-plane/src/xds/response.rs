//! Responses assembled from pre-encoded resources.
//!
//! `DiscoveryResponse` and `DeltaDiscoveryResponse` as prost would encode
//! them, except that each resource is a shared, already-encoded byte string
//! from the snapshot: building a response for a stream copies no resource and
//! encodes nothing twice. They are only ever encoded, never decoded.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};

/// A `DiscoveryResponse` (state of the world).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SotwResponse {
    /// `version_info` (1).
    pub version_info: String,
    /// Encoded `google.protobuf.Any` resources (2).
    pub resources: Vec<Bytes>,
    /// `type_url` (4).
    pub type_url: String,
    /// `nonce` (5).
    pub nonce: String,
    /// Encoded `ControlPlane` (6), empty for none.
    pub control_plane: Bytes,
}

/// A `DeltaDiscoveryResponse`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeltaResponse {
    /// `system_version_info` (1).
    pub system_version_info: String,
    /// Encoded `envoy.service.discovery.v3.Resource`s (2).
    pub resources: Vec<Bytes>,
    /// `type_url` (4).
    pub type_url: String,
    /// `nonce` (5).
    pub nonce: String,
    /// `removed_resources` (6).
    pub removed_resources: Vec<String>,
    /// Encoded `ControlPlane` (7), empty for none.
    pub control_plane: Bytes,
}

fn put_bytes(tag: u32, value: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

fn bytes_len(tag: u32, value: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

fn put_optional(tag: u32, value: &[u8], buf: &mut impl BufMut) {
    if !value.is_empty() {
        put_bytes(tag, value, buf);
    }
}

fn optional_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        bytes_len(tag, value)
    }
}

impl prost::Message for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_optional(1, self.version_info.as_bytes(), buf);
        for resource in &self.resources {
            put_bytes(2, resource, buf);
        }
        put_optional(4, self.type_url.as_bytes(), buf);
        put_optional(5, self.nonce.as_bytes(), buf);
        put_optional(6, &self.control_plane, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        optional_len(1, self.version_info.as_bytes())
            + self
                .resources
                .iter()
                .map(|r| bytes_len(2, r))
                .sum::<usize>()
            + optional_len(4, self.type_url.as_bytes())
            + optional_len(5, self.nonce.as_bytes())
            + optional_len(6, &self.control_plane)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl prost::Message for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_optional(1, self.system_version_info.as_bytes(), buf);
        for resource in &self.resources {
            put_bytes(2, resource, buf);
        }
        put_optional(4, self.type_url.as_bytes(), buf);
        put_optional(5, self.nonce.as_bytes(), buf);
        for name in &self.removed_resources {
            put_bytes(6, name.as_bytes(), buf);
        }
        put_optional(7, &self.control_plane, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        optional_len(1, self.system_version_info.as_bytes())
            + self
                .resources
                .iter()
                .map(|r| bytes_len(2, r))
                .sum::<usize>()
            + optional_len(4, self.type_url.as_bytes())
            + optional_len(5, self.nonce.as_bytes())
            + self
                .removed_resources
                .iter()
                .map(|n| bytes_len(6, n.as_bytes()))
                .sum::<usize>()
            + optional_len(7, &self.control_plane)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Resource, ResourceType};
    use lookaside_proto::envoy::config::core::v3::ControlPlane;
    use lookaside_proto::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse,
    };
    use prost::Message;

    fn sample() -> Resource {
        Resource::encode(
            ResourceType::Listener,
            "greeter",
            &crate::snapshot::resources::listener("greeter"),
        )
    }

    #[test]
    fn sotw_decodes_as_a_discovery_response() -> Result<(), prost::DecodeError> {
        let resource = sample();
        let control_plane = ControlPlane {
            identifier: "lookaside".into(),
        };
        let ours = SotwResponse {
            version_info: "v1".into(),
            resources: vec![resource.any.clone(), resource.any.clone()],
            type_url: ResourceType::Listener.type_url().into(),
            nonce: "7".into(),
            control_plane: control_plane.encode_to_vec().into(),
        };
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes.len(), ours.encoded_len());
        let theirs = DiscoveryResponse::decode(bytes.as_slice())?;
        assert_eq!(theirs.version_info, "v1");
        assert_eq!(theirs.resources.len(), 2);
        assert_eq!(
            theirs.resources[0].type_url,
            ResourceType::Listener.type_url()
        );
        assert_eq!(theirs.nonce, "7");
        assert_eq!(theirs.control_plane, Some(control_plane));
        Ok(())
    }

    #[test]
    fn delta_decodes_as_a_delta_discovery_response() -> Result<(), prost::DecodeError> {
        let resource = sample();
        let ours = DeltaResponse {
            system_version_info: "s".into(),
            resources: vec![resource.wrapped.clone()],
            type_url: ResourceType::Listener.type_url().into(),
            nonce: "3".into(),
            removed_resources: vec!["old".into()],
            control_plane: Bytes::new(),
        };
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes.len(), ours.encoded_len());
        let theirs = DeltaDiscoveryResponse::decode(bytes.as_slice())?;
        assert_eq!(theirs.resources.len(), 1);
        assert_eq!(theirs.resources[0].name, "greeter");
        assert_eq!(theirs.resources[0].version, resource.version);
        assert_eq!(theirs.removed_resources, vec!["old".to_string()]);
        assert_eq!(theirs.nonce, "3");
        Ok(())
    }
}
