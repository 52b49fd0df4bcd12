//! Compiles the gateway's protobuf subset in `proto/` (the `LLBBridge` service BuildKit serves
//! a frontend, its capabilities, worker records and the gRPC error model) without a system
//! `protoc`: protox parses the files, tonic-prost-build generates the messages and the client.
//! LLB messages (package `pb`, imported from llb-graph's `proto/`) are llb-graph's types.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto");
    let llb = PathBuf::from("../llb-graph/proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=../llb-graph/proto");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&dir, &llb])?;
    tonic_prost_build::configure()
        .build_server(false)
        .btree_map(".")
        .extern_path(".pb", "::llb_graph::pb")
        .compile_fds(fds)?;
    Ok(())
}
