//! The admin API (`lookaside.admin.v1.Admin`): read-only views for
//! operators, meant for grpcurl.
//!
//! Owns: translating the snapshot, the connected clients and the source
//! status into admin messages.
//! Must never: change state. It only reads what other stages publish.

mod convert;
mod service;

pub use service::AdminService;
