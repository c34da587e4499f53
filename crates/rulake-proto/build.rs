//! Compiles every `.proto` under the workspace's `proto/` with `protox`
//! (pure Rust), so neither developers nor CI need a `protoc` binary.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    files.sort();
    // Two checkouts of the workspace (git worktrees) that share one target
    // directory share this script's output too: Cargo fingerprints a
    // workspace crate the same way in both. Watching the protos by a path
    // relative to this package (Cargo resolves it against the package
    // root) and the directory Cargo runs in makes a build in the other
    // checkout generate its own code again, where watching absolute paths
    // took the other checkout's generated code as fresh.
    println!("cargo:rerun-if-env-changed=PWD");
    println!("cargo:rerun-if-changed=../../proto");
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        println!("cargo:rerun-if-changed=../../proto/{}", rel.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("rulake_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
