//! The descriptor pool of `gateway.v1`, decoded once, for the proto3 JSON mapping.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static POOL: OnceLock<DescriptorPool> = OnceLock::new();

const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));

fn pool() -> &'static DescriptorPool {
    POOL.get_or_init(|| {
        // The bytes were produced by protox in build.rs from our own .proto files; failing to
        // decode them is a build defect, not an input error.
        DescriptorPool::decode(DESCRIPTOR_SET).expect("descriptor set compiled by build.rs")
    })
}

/// The descriptor of a message of package `gateway.v1`, by its full name.
pub(crate) fn message(full_name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("message {full_name} is defined in gateway/v1/*.proto"))
}
