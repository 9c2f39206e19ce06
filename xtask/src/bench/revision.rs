//! Another git revision's build, for `--against`.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{cargo_command, step};

/// Builds syscall-profiler as of git revision `rev` (in a worktree under `target/`, with
/// its own target directory, kept between runs for incremental builds) and returns the
/// binary.
pub(super) fn build_revision(root: &Path, path: &OsString, rev: &str) -> Result<PathBuf> {
    step(&format!("building syscall-profiler at {rev}"));
    let tree = root.join("target/bench-against/tree");
    let git = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .context("running git")?
            .success())
    };
    if tree.exists() {
        git(&["worktree", "remove", "--force", &tree.to_string_lossy()])?;
    }
    git(&["worktree", "prune"])?;
    if !git(&["worktree", "add", "--detach", &tree.to_string_lossy(), rev])? {
        bail!("--against {rev}: not a revision of this repository");
    }
    let target_dir = root.join("target/bench-against/target");
    let status = cargo_command(path, &["build", "--release", "--package", "profiler"])
        .current_dir(&tree)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("--against {rev}: the build failed");
    }
    Ok(target_dir.join("release/syscall-profiler"))
}
