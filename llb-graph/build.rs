//! Compiles the LLB protobuf subset in `proto/` without a system `protoc`: protox parses the
//! files into a descriptor set, prost-build generates the messages from it. Maps become
//! `BTreeMap` so that encoding is deterministic (sorted keys), which LLB digests need.
//! (The gateway's gRPC service lives with the frontend, which alone talks to BuildKit.)

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&dir])?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
