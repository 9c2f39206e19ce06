//! Builds the eBPF programs (`profiler-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR`, where `src/ebpf.rs` embeds it. Needs the nightly toolchain with rust-src and a
//! `bpf-linker` matching its LLVM: `cargo xtask setup` installs both.
use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../profiler-common/src");
    println!("cargo:rerun-if-env-changed=PATH");
    let on_path = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join("bpf-linker").is_file()))
        .unwrap_or(false);
    if !on_path {
        // Fall back to where `cargo xtask setup` installs it.
        let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let bin = home.join(".cache/syscall-profiler/bin");
        if bin.join("bpf-linker").is_file() {
            let mut paths: Vec<PathBuf> = vec![bin];
            paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
            // SAFETY: build scripts are single-threaded here.
            env::set_var("PATH", env::join_paths(paths)?);
        } else {
            anyhow::bail!("bpf-linker not found: run `cargo xtask setup` (or `cargo xtask build`) first");
        }
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "profiler-ebpf",
            root_dir: "../profiler-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
