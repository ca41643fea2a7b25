//! The admin API (`lookaside.admin.v1.Admin`) and CSDS
//! (`envoy.service.status.v3`): read-only views for operators, meant for
//! grpcurl and Envoy tooling.
//!
//! Owns: translating the snapshot, the connected clients and the source
//! status into admin messages.
//! Must never: change state. It only reads what other stages publish.

mod convert;
mod csds;
mod service;

pub use csds::CsdsService;
pub use service::AdminService;
