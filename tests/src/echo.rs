//! Generated code of `lookaside.test.v1.Echo` (tests/proto), the service every
//! test backend serves: `Who` answers with the backend's name.

/// `lookaside.test.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/lookaside.test.v1.rs"));
}
