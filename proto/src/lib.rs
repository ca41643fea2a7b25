//! Lookaside's protobuf types.
//!
//! Owns: the admin API (`lookaside.admin.v1`), the ORCA protos
//! (`xds.data.orca.v3`, `xds.service.orca.v3`, which envoy-types lacks), the
//! file descriptor set that server reflection serves, and re-exports of the
//! xDS/LRS/CSDS types from `envoy-types` so every crate names them one way.
//!
//! Must never: hold logic. Types and descriptors only, in [`convert`]
//! the pure conversions to and from std types, and in [`address`] the one
//! rule of which endpoint addresses no call can reach, and in [`limits`]
//! the numbers the control plane and its clients agree on.

#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod address;
pub mod convert;
pub mod limits;

/// Admin API, `lookaside.admin.v1`.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/lookaside.admin.v1.rs"));
    }
}

/// Generated ORCA code, nested by proto package so cross-package paths resolve.
mod generated {
    pub mod xds {
        pub mod data {
            pub mod orca {
                pub mod v3 {
                    include!(concat!(env!("OUT_DIR"), "/xds.data.orca.v3.rs"));
                }
            }
        }
        pub mod service {
            pub mod orca {
                pub mod v3 {
                    include!(concat!(env!("OUT_DIR"), "/xds.service.orca.v3.rs"));
                }
            }
        }
    }
}

/// ORCA protos from github.com/cncf/xds, wire-compatible.
pub mod orca {
    /// `xds.data.orca.v3`: the load report message.
    pub use crate::generated::xds::data::orca::v3 as data;
    /// `xds.service.orca.v3`: the out-of-band reporting service.
    pub use crate::generated::xds::service::orca::v3 as service;
}

/// xDS, LRS and CSDS types (from `envoy-types`).
pub use envoy_types::pb::envoy;
/// `google.rpc` and well-known types used by xDS (from `envoy-types`).
pub use envoy_types::pb::google;
/// `xds.*` types used by xDS (from `envoy-types`).
pub use envoy_types::pb::xds;

/// Serialized `FileDescriptorSet` covering the admin API, ORCA, ADS, CSDS and
/// LRS with all their imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lookaside_descriptor.bin"));
