//! Other builds of syscall-profiler: another git revision's, for `--against`, and the
//! working tree's with edits, for `--ablations`.
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
    let base = root.join("target/bench-against");
    let tree = worktree(root, &base, rev).with_context(|| format!("--against {rev}"))?;
    build(path, &tree, &base.join("target")).with_context(|| format!("--against {rev}"))
}

/// A fresh worktree of `rev` at `base/tree`.
pub(super) fn worktree(root: &Path, base: &Path, rev: &str) -> Result<PathBuf> {
    let tree = base.join("tree");
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
        bail!("{rev}: not a revision of this repository");
    }
    Ok(tree)
}

/// The working tree as a commit (`git stash create`, which changes nothing), or `HEAD` when
/// it has no changes: what an ablation starts from.
pub(super) fn working_tree_commit(root: &Path) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["stash", "create"])
        .output()
        .context("running git stash create")?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(if commit.is_empty() { "HEAD".into() } else { commit })
}

/// Builds the profiler in `tree` into `target_dir` and returns the binary.
pub(super) fn build(path: &OsString, tree: &Path, target_dir: &Path) -> Result<PathBuf> {
    let status = cargo_command(path, &["build", "--release", "--package", "profiler"])
        .current_dir(tree)
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("the build failed");
    }
    Ok(target_dir.join("release/syscall-profiler"))
}
