//! The TestRunner wire contract: code generated from `proto/testrunner/v1`,
//! and the descriptor set that server reflection serves.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));

pub use testrunner::v1;

/// Encoded `FileDescriptorSet` of every TestRunner proto file and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/testrunner_descriptor.bin"));

/// Converts a millisecond Unix timestamp into the wire type.
pub fn timestamp_from_millis(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Converts a millisecond duration into the wire type.
pub fn duration_from_millis(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// Converts a wire duration into milliseconds (negative durations clamp to 0).
pub fn duration_to_millis(d: &prost_types::Duration) -> i64 {
    (d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000).max(0)
}
