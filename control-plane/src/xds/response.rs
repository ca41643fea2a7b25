//! Responses assembled from pre-encoded resources.
//!
//! `DiscoveryResponse` and `DeltaDiscoveryResponse` as gRPC messages, written
//! as a list of byte strings: a small head (gRPC frame header and the scalar
//! fields) followed by the snapshot's shared, already-framed resources. The
//! resources are never copied per stream; h2 writes them from the shared
//! allocation.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// A response that goes on the wire as a list of byte strings.
pub trait Wire {
    /// The gRPC length-prefixed message, as chunks to write in order.
    fn frames(&self) -> Vec<Bytes>;

    /// The protobuf message alone (no gRPC header), for tests and tools.
    fn encode_to_vec(&self) -> Vec<u8> {
        let frames = self.frames();
        let mut out: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        out.drain(..5);
        out
    }
}

/// A `DiscoveryResponse` (state of the world).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SotwResponse {
    /// `version_info` (1).
    pub version_info: String,
    /// Resources, each framed as field 2.
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
    /// Resources, each framed as field 2.
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

fn field_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
    }
}

fn put_field(tag: u32, value: &[u8], buf: &mut BytesMut) {
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(value.len() as u64, buf);
        buf.put_slice(value);
    }
}

/// Head (gRPC header + `fields`) followed by `resources`.
fn assemble(
    fields: &[(u32, &[u8])],
    repeated: (u32, &[String]),
    resources: &[Bytes],
) -> Vec<Bytes> {
    let (repeated_tag, repeated_values) = repeated;
    let head_len: usize = fields
        .iter()
        .map(|(tag, v)| field_len(*tag, v))
        .sum::<usize>()
        + repeated_values
            .iter()
            .map(|v| key_len(repeated_tag) + encoded_len_varint(v.len() as u64) + v.len())
            .sum::<usize>();
    let total = head_len + resources.iter().map(Bytes::len).sum::<usize>();
    let mut head = BytesMut::with_capacity(5 + head_len);
    head.put_u8(0); // not compressed
    head.put_u32(u32::try_from(total).unwrap_or(u32::MAX));
    for (tag, value) in fields {
        put_field(*tag, value, &mut head);
    }
    for value in repeated_values {
        encode_key(repeated_tag, WireType::LengthDelimited, &mut head);
        encode_varint(value.len() as u64, &mut head);
        head.put_slice(value.as_bytes());
    }
    let mut frames = Vec::with_capacity(1 + resources.len());
    frames.push(head.freeze());
    frames.extend(resources.iter().cloned());
    frames
}

impl Wire for SotwResponse {
    fn frames(&self) -> Vec<Bytes> {
        assemble(
            &[
                (1, self.version_info.as_bytes()),
                (4, self.type_url.as_bytes()),
                (5, self.nonce.as_bytes()),
                (6, &self.control_plane),
            ],
            (0, &[]),
            &self.resources,
        )
    }
}

impl Wire for DeltaResponse {
    fn frames(&self) -> Vec<Bytes> {
        assemble(
            &[
                (1, self.system_version_info.as_bytes()),
                (4, self.type_url.as_bytes()),
                (5, self.nonce.as_bytes()),
                (7, &self.control_plane),
            ],
            (6, &self.removed_resources),
            &self.resources,
        )
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

    fn grpc_length(frames: &[Bytes]) -> usize {
        let head = &frames[0];
        assert_eq!(head[0], 0, "uncompressed");
        u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize
    }

    #[test]
    fn sotw_decodes_as_a_discovery_response() -> Result<(), prost::DecodeError> {
        let resource = sample();
        let control_plane = ControlPlane {
            identifier: "lookaside".into(),
        };
        let ours = SotwResponse {
            version_info: "v1".into(),
            resources: vec![resource.any.bytes.clone(), resource.any.bytes.clone()],
            type_url: ResourceType::Listener.type_url().into(),
            nonce: "7".into(),
            control_plane: control_plane.encode_to_vec().into(),
        };
        let bytes = ours.encode_to_vec();
        assert_eq!(grpc_length(&ours.frames()), bytes.len());
        let theirs = DiscoveryResponse::decode(bytes.as_slice())?;
        assert_eq!(theirs.version_info, "v1");
        assert_eq!(theirs.resources.len(), 2);
        assert_eq!(
            theirs.resources[0].type_url,
            ResourceType::Listener.type_url()
        );
        assert_eq!(theirs.nonce, "7");
        assert_eq!(theirs.control_plane, Some(control_plane));
        // The resources are the snapshot's own bytes, not copies.
        assert_eq!(ours.frames()[1].as_ptr(), resource.any.bytes.as_ptr());
        Ok(())
    }

    #[test]
    fn delta_decodes_as_a_delta_discovery_response() -> Result<(), prost::DecodeError> {
        let resource = sample();
        let ours = DeltaResponse {
            system_version_info: "s".into(),
            resources: vec![resource.wrapped.bytes.clone()],
            type_url: ResourceType::Listener.type_url().into(),
            nonce: "3".into(),
            removed_resources: vec!["old".into(), "older".into()],
            control_plane: Bytes::new(),
        };
        let bytes = ours.encode_to_vec();
        assert_eq!(grpc_length(&ours.frames()), bytes.len());
        let theirs = DeltaDiscoveryResponse::decode(bytes.as_slice())?;
        assert_eq!(theirs.resources.len(), 1);
        assert_eq!(theirs.resources[0].name, "greeter");
        assert_eq!(theirs.resources[0].version, resource.version);
        assert_eq!(
            theirs.removed_resources,
            vec!["old".to_string(), "older".to_string()]
        );
        assert_eq!(theirs.nonce, "3");
        Ok(())
    }
}
