//! Installs what building the eBPF programs needs, once; later calls only check.
use std::{ffi::OsString, fs, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::step;

/// bpf-linker release known to work with the nightly's LLVM (see shared/notes/toolchain.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed", args.join(" "));
    }
    Ok(())
}

pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/syscall-profiler")
}

/// The nightly's commit hash and LLVM major version, from `rustc +nightly -vV`.
fn nightly_facts() -> Result<(String, String)> {
    let version = output("rustc", &["+nightly", "-vV"])?;
    let field = |name: &str| {
        version
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("no {name} in rustc +nightly -vV"))
    };
    let commit = field("commit-hash:")?;
    let llvm = field("LLVM version:")?;
    let major = llvm.split('.').next().unwrap_or_default().to_owned();
    Ok((commit[..commit.len().min(12)].to_owned(), major))
}

fn ensure_nightly() -> Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"])?;
    if !toolchains.lines().any(|line| line.starts_with("nightly")) {
        step("installing the nightly toolchain (the BPF target needs -Z build-std)");
        run("rustup", &["toolchain", "install", "nightly", "--profile", "minimal"])?;
    }
    let components = output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", "nightly"],
    )?;
    if !components.lines().any(|line| line.starts_with("rust-src")) {
        step("installing rust-src for the nightly toolchain (for -Z build-std=core)");
        run("rustup", &["component", "add", "rust-src", "--toolchain", "nightly"])?;
    }
    Ok(())
}

/// Builds bpf-linker against the nightly's own libLLVM unless that exact build is cached.
fn ensure_bpf_linker() -> Result<PathBuf> {
    let (commit, llvm_major) = nightly_facts()?;
    let cache = cache_dir();
    let root = cache.join(format!("bpf-linker-{BPF_LINKER_VERSION}-llvm{llvm_major}-{commit}"));
    let binary = root.join("bin/bpf-linker");
    let bin_dir = cache.join("bin");
    if !binary.is_file()
        || Command::new(&binary)
            .arg("--version")
            .output()
            .map_or(true, |o| !o.status.success())
    {
        step(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {llvm_major} (about a minute, once)"
        ));
        let sysroot = PathBuf::from(output("rustc", &["+nightly", "--print", "sysroot"])?.trim());
        // lib/libLLVM-NN-rust-*.so is a tiny linker script; the real library is libLLVM.so.NN.*.
        let real = fs::read_dir(sysroot.join("lib"))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{llvm_major}")))
            })
            .context("the nightly ships no libLLVM.so.*: cannot build bpf-linker against it")?;
        let prefix = root.join("llvm");
        let lib = prefix.join("lib");
        fs::create_dir_all(&lib)?;
        for name in [OsString::from("libLLVM.so"), real.file_name().unwrap().to_owned()] {
            let link = lib.join(name);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&real, &link)?;
        }
        let status = Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args(["--no-default-features", "--features", &format!("llvm-{llvm_major}")])
            .arg("--root")
            .arg(&root)
            .env("LLVM_PREFIX", &prefix)
            .status()
            .context("running cargo install bpf-linker")?;
        if !status.success() {
            bail!("building bpf-linker failed");
        }
    }
    // A stable path for profiler/build.rs to find when cargo is run directly.
    fs::create_dir_all(&bin_dir)?;
    let link = bin_dir.join("bpf-linker");
    if fs::read_link(&link).ok().as_deref() != Some(binary.as_path()) {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&binary, &link)?;
    }
    Ok(bin_dir)
}

/// Makes sure everything is installed; returns the `PATH` to build with.
pub fn ensure() -> Result<OsString> {
    ensure_nightly()?;
    let bin_dir = ensure_bpf_linker()?;
    let mut paths = vec![bin_dir];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    Ok(std::env::join_paths(paths)?)
}

/// Installs Debian packages (as root, through sudo when needed).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    apt_update()?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages);
    apt(&install)
}

/// Refreshes the package lists.
pub fn apt_update() -> Result<()> {
    apt(&["update", "-qq"])
}

fn apt(args: &[&str]) -> Result<()> {
    let status = crate::as_root(std::path::Path::new("apt-get"))
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed", args.join(" "));
    }
    Ok(())
}

/// Programs the tests drive, from Debian's packages when missing: tmux for the terminal test
/// of syscall-top; prometheus (with promtool) for the metrics endpoint's tests; libseccomp's
/// Python binding to apply a report's seccomp profile; Chromium to open the HTML reports.
pub fn ensure_test_tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("command -v tmux", "tmux"),
        ("command -v promtool", "prometheus"),
        ("command -v prometheus", "prometheus"),
        ("/usr/bin/python3 -c 'import seccomp'", "python3-seccomp"),
        ("command -v chromium", "chromium"),
    ]
    .iter()
    .filter(|(check, _)| !succeeds(check))
    .map(|(_, package)| *package)
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    if !missing.is_empty() {
        step(&format!(
            "installing {} from Debian's packages (syscall-top's terminal test runs in tmux; the metrics tests use promtool and a real Prometheus; the seccomp test applies a profile with libseccomp; the HTML reports open in headless Chromium)",
            missing.join(", ")
        ));
        apt_install(&missing)?;
    }
    Ok(())
}

/// Installs the Debian package of each `(program, package)` whose program is not on PATH,
/// saying `why`.
pub fn install_missing(needed: &[(&str, &str)], why: &str) -> Result<()> {
    let mut missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        step(&format!(
            "installing {} from Debian's packages ({why})",
            missing.join(", ")
        ));
        apt_install(&missing)?;
    }
    Ok(())
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    succeeds(&format!("command -v {program}"))
}

/// Whether a shell command succeeds.
fn succeeds(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("{command} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}
