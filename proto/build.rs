//! Compiles the project's own protos (admin API, ORCA) with protox (pure Rust,
//! no `protoc` on the machine) and writes one file descriptor set that server
//! reflection uses to describe the admin API, ADS, CSDS, LRS and ORCA.

use std::path::PathBuf;

const INCLUDES: &[&str] = &["protos", "protos/vendor"];

/// Files we generate Rust code for.
const CODEGEN: &[&str] = &[
    "lookaside/admin/v1/admin.proto",
    "xds/data/orca/v3/orca_load_report.proto",
    "xds/service/orca/v3/orca.proto",
];

/// Extra files that only go into the reflection descriptor set (their Rust
/// types come from envoy-types).
const REFLECTION_ONLY: &[&str] = &[
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/status/v3/csds.proto",
    "envoy/service/load_stats/v3/lrs.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let codegen = protox::compile(CODEGEN, INCLUDES)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(codegen)?;

    let all: Vec<&str> = CODEGEN.iter().chain(REFLECTION_ONLY).copied().collect();
    let reflection = protox::compile(all, INCLUDES)?;
    let bytes = prost::Message::encode_to_vec(&reflection);
    std::fs::write(out_dir.join("lookaside_descriptor.bin"), bytes)?;
    Ok(())
}
