//! Compiles the .proto files with protox (pure Rust): no system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    let mut files = vec![
        root.join("causeway/tunnel/v1/tunnel.proto"),
        root.join("causeway/controller/v1/gateway.proto"),
        root.join("causeway/controller/v1/admin.proto"),
        root.join("causeway/federation/v1/federation.proto"),
    ];
    // The test service, for the end-to-end tests only (feature `testing`).
    if std::env::var_os("CARGO_FEATURE_TESTING").is_some() {
        files.push(root.join("causeway/testing/v1/echo.proto"));
    }
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        // Header values slice the received buffer instead of copying it.
        .bytes(".causeway.tunnel.v1.HeaderField.value")
        .compile_fds(fds)?;
    Ok(())
}
