//! Where the repository is and where Cargo put its binaries.
//!
//! `env!("CARGO_BIN_EXE_lookaside")` only exists inside the control-plane
//! crate, so the tests look for built binaries next to themselves: a test
//! executable lives in `<target>/<profile>/deps/`, the binaries in
//! `<target>/<profile>/`. `CARGO_TARGET_DIR` and `<repo>/target/debug` are the
//! fall-backs. Nothing here builds anything: `scripts/test.sh` runs
//! `cargo build --workspace --all-targets` first.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The repository root (the Cargo workspace).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The path of the workspace binary `name` (e.g. `lookaside`, `test-backend`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let candidates = binary_dirs();
    for dir in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| dir.join(name).display().to_string())
        .collect();
    bail!(
        "binary `{name}` is not built (looked at {}); run `cargo build --workspace --all-targets` \
         (scripts/test.sh does it before running the tests)",
        looked.join(", ")
    )
}

/// Folders that may hold the workspace's binaries, most specific first.
fn binary_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        if dir.file_name().is_some_and(|name| name == "deps") {
            if let Some(profile) = dir.parent() {
                dirs.push(profile.to_path_buf());
            }
        } else {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        let target = PathBuf::from(target);
        let target = if target.is_absolute() {
            target
        } else {
            root().join(target)
        };
        dirs.push(target.join("debug"));
    }
    dirs.push(root().join("target").join("debug"));
    dirs.dedup();
    dirs
}
