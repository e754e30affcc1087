//! Compiles `proto/` with protox (pure Rust: no `protoc` on the machine) and
//! keeps the encoded descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("testrunner/v1/testrun.proto"),
        root.join("testrunner/v1/runner.proto"),
        root.join("testrunner/v1/content.proto"),
        root.join("testrunner/v1/admin.proto"),
    ];
    let fds = protox::compile(&files, [&root])?;

    // Reflection must be able to describe the well-known types we import, so
    // the set keeps its imports.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("testrunner_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .include_file("mod.rs")
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
