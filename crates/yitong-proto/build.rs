//! Compiles every proto under `proto/` into Rust, and writes the descriptor set for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos: Vec<PathBuf> = ["identity", "catalog", "settlement", "ledger", "audit"]
        .iter()
        .map(|service| root.join(format!("yitong/{service}/v1/{service}.proto")))
        .collect();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // An RPC whose behaviour is not built yet answers UNIMPLEMENTED, never fake success.
        .generate_default_stubs(true)
        .file_descriptor_set_path(out_dir.join("yitong_descriptor.bin"))
        .compile_with_config(config, &protos, std::slice::from_ref(&root))?;

    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
