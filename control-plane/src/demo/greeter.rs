//! The service the demo backends serve: `helloworld.Greeter` from
//! client-lib's examples (compiled by this crate's build script). Each
//! reply's `server` field names the backend that answered.
//!
//! Owns: the generated client and server code.
//! Must never: hold logic; generated code only.

/// `helloworld`: `Greeter/SayHello`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}
