//! Compiles the test services `proto/echo.proto` and `proto/types.proto` (see `src/grpc_backend.rs`) with protox (no
//! system `protoc`, as `gateway-proto` does) into prost types and tonic client and server.

use std::error::Error;

const FILES: &[&str] = &["proto/echo.proto", "proto/types.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
