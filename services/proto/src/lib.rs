//! The TestRunner wire contract: code generated from `proto/testrunner/v1`,
//! and the descriptor set that server reflection serves.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));

pub use testrunner::v1;

/// Encoded `FileDescriptorSet` of every TestRunner proto file and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/testrunner_descriptor.bin"));

/// A millisecond count as a wire duration (negative counts as zero), by
/// prost-types' own conversion.
pub fn millis(ms: i64) -> prost_types::Duration {
    std::time::Duration::from_millis(ms.max(0) as u64)
        .try_into()
        .expect("a u64 of milliseconds fits a wire duration")
}
