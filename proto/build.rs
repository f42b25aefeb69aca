//! Compiles every `.proto` under `vanna/v1` with protox (pure Rust), so a fresh
//! machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("vanna/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=vanna/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, ["."])?;
    // For gRPC server reflection: generic tools discover the services from it.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(out.join("vanna_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        // Peer frames carry `Bytes`, so a broadcast shares one buffer among all peers.
        .bytes(".vanna.v1.PeerFrame")
        .compile_fds(descriptors)?;
    Ok(())
}
