//! Compiles the test backends' service (`lookaside.test.v1.Echo`) with protox
//! (pure Rust, no `protoc` on the machine), client and server.

const INCLUDES: &[&str] = &["proto"];
const CODEGEN: &[&str] = &["lookaside/test/v1/echo.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let codegen = protox::compile(CODEGEN, INCLUDES)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(codegen)?;
    Ok(())
}
