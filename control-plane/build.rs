//! Compiles the greeter service that `lookaside demo`'s backends serve: the
//! `helloworld.Greeter` of client-lib's examples, so the demo and the
//! examples speak one proto (pure Rust protox, no `protoc` on the machine).

const INCLUDES: &[&str] = &["../client-lib/examples/proto"];
const CODEGEN: &[&str] = &["helloworld.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../client-lib/examples/proto");
    let descriptors = protox::compile(CODEGEN, INCLUDES)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
