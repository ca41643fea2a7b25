//! Compiles the examples' greeter proto (pure Rust protox, no protoc). The
//! library itself uses no generated code of its own.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=examples/proto");
    let descriptors = protox::compile(["helloworld.proto"], ["examples/proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
