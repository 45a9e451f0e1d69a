//! Compiles `gateway/v1/*.proto` with protox (no system `protoc`), generates the prost types and
//! tonic services, and keeps the descriptor set for the proto3 JSON mapping at run time.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

const FILES: &[&str] = &[
    "gateway/v1/config.proto",
    "gateway/v1/discovery.proto",
    "gateway/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("gateway_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // Maps in name order: a resource encodes to the same bytes every time, so snapshots and
    // deltas see no change where there is none.
    // An Upstream's resilience settings and discovery are boxed: most upstreams leave them
    // out, and every resource (an enum over the kinds) would otherwise be as large as the
    // largest.
    tonic_prost_build::configure()
        .btree_map(".gateway.v1.ProtoSetSpec.files")
        .boxed(".gateway.v1.UpstreamSpec.load_balancer")
        .boxed(".gateway.v1.UpstreamSpec.health_check")
        .boxed(".gateway.v1.UpstreamSpec.circuit_breaker")
        .boxed(".gateway.v1.UpstreamSpec.discovery")
        .boxed(".gateway.v1.UpstreamSpec.idle_timeout")
        .boxed(".gateway.v1.UpstreamSpec.connect_timeout")
        .compile_fds(descriptors)?;
    Ok(())
}
