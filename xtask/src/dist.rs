//! `cargo xtask dist`: Debian packages for amd64 and arm64 in `target/dist/`.
//!
//! Each package holds the `syscall-profiler` and `syscall-top` binaries built for its
//! architecture (arm64 cross-built with Debian's `gcc-aarch64-linux-gnu` as the linker; the
//! eBPF object is the same for both, its `bpf_target_arch` set by aya-build), the systemd
//! unit and its defaults file from `packaging/`, and man pages generated from the command
//! lines (`profiler-manpages`). `packaging/Containerfile` builds the image the DaemonSet
//! runs from the amd64 or arm64 package.
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{cargo, cargo_command, setup, step};

/// A package's architecture: Rust's target, Debian's name, the cross linker if any, and the
/// `strip` that reads its binaries.
pub struct Target {
    pub triple: &'static str,
    pub debian: &'static str,
    pub linker: Option<&'static str>,
    pub strip: &'static str,
}

pub const TARGETS: [Target; 2] = [
    Target {
        triple: "x86_64-unknown-linux-gnu",
        debian: "amd64",
        linker: None,
        strip: "strip",
    },
    Target {
        triple: "aarch64-unknown-linux-gnu",
        debian: "arm64",
        linker: Some("aarch64-linux-gnu-gcc"),
        strip: "aarch64-linux-gnu-strip",
    },
];

/// The installed programs.
const BINARIES: [&str; 2] = ["syscall-profiler", "syscall-top"];

/// Builds every package; returns their paths.
pub fn run(path: &OsString) -> Result<Vec<PathBuf>> {
    let root = std::env::current_dir()?;
    let target_dir = crate::target_dir(&root);
    let dist = target_dir.join("dist");
    fs::create_dir_all(&dist)?;
    let man = dist.join("man");
    let _ = fs::remove_dir_all(&man);
    step("writing the man pages");
    cargo(
        path,
        &[
            "build",
            "--release",
            "--package",
            "profiler",
            "--bin",
            "profiler-manpages",
        ],
    )?;
    setup::run(
        &target_dir.join("release/profiler-manpages").to_string_lossy(),
        &[&man.to_string_lossy()],
    )?;
    let version = workspace_version(&root)?;
    let mut packages = Vec::new();
    for target in &TARGETS {
        let binaries = build_for(path, target)?;
        packages.push(package(&root, &dist, &man, &version, target, &binaries)?);
    }
    for package in &packages {
        println!("{}", package.display());
    }
    Ok(packages)
}

/// Makes sure the cross target and linker are installed.
pub fn ensure_cross(target: &Target) -> Result<()> {
    let Some(linker) = target.linker else {
        return Ok(());
    };
    let installed = setup::output("rustup", &["target", "list", "--installed"])?;
    if !installed.lines().any(|line| line.trim() == target.triple) {
        step(&format!("adding the Rust target {}", target.triple));
        setup::run("rustup", &["target", "add", target.triple])?;
    }
    if !setup::have(linker) {
        step(&format!(
            "installing {linker} from Debian's packages (the {} linker)",
            target.debian
        ));
        setup::apt_install(&["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"])?;
    }
    Ok(())
}

/// `cargo` for `target`, with its cross linker.
pub fn cross_cargo(path: &OsString, target: &Target, args: &[&str]) -> Command {
    let mut command = cargo_command(path, args);
    if let Some(linker) = target.linker {
        let variable = format!("CARGO_TARGET_{}_LINKER", target.triple.to_uppercase().replace('-', "_"));
        command.env(variable, linker);
    }
    command
}

/// The host's target triple, for the architectures we package.
fn host_triple() -> Option<&'static str> {
    TARGETS
        .iter()
        .find(|target| target.triple.starts_with(std::env::consts::ARCH))
        .map(|target| target.triple)
}

/// Builds the installed programs for `target` (release); returns their paths. The host's
/// own architecture is built without `--target`, into `target/release`, where the tests'
/// build finds it done (with `--target` cargo builds everything again in a directory of its
/// own: a minute and a half on a clean checkout).
fn build_for(path: &OsString, target: &Target) -> Result<Vec<PathBuf>> {
    ensure_cross(target)?;
    step(&format!("building for {} ({})", target.debian, target.triple));
    let native = host_triple() == Some(target.triple);
    let mut args = vec!["build", "--release", "--package", "profiler"];
    if !native {
        args.extend(["--target", target.triple]);
    }
    for binary in BINARIES {
        args.extend(["--bin", binary]);
    }
    let status = cross_cargo(path, target, &args)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building for {} failed", target.triple);
    }
    let target_dir = crate::target_dir(&std::env::current_dir()?);
    let dir = if native {
        target_dir.join("release")
    } else {
        target_dir.join(target.triple).join("release")
    };
    Ok(BINARIES.iter().map(|binary| dir.join(binary)).collect())
}

/// The workspace's version, from its Cargo.toml.
fn workspace_version(root: &Path) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[workspace.package]")
        .find_map(|line| line.trim().strip_prefix("version = "))
        .map(|quoted| quoted.trim_matches('"').to_owned())
        .context("no version in [workspace.package]")
}

/// Lays out one package's tree and builds the `.deb`.
fn package(
    root: &Path,
    dist: &Path,
    man: &Path,
    version: &str,
    target: &Target,
    binaries: &[PathBuf],
) -> Result<PathBuf> {
    let stage = dist.join(format!("stage-{}", target.debian));
    let _ = fs::remove_dir_all(&stage);
    let install = |from: &Path, to: &str, mode: u32| -> Result<()> {
        let destination = stage.join(to);
        fs::create_dir_all(destination.parent().expect("a directory"))?;
        fs::copy(from, &destination).with_context(|| format!("copying {}", from.display()))?;
        set_mode(&destination, mode)
    };
    let mut glibc = (2, 17);
    for binary in binaries {
        let name = binary.file_name().expect("a file").to_string_lossy();
        install(binary, &format!("usr/bin/{name}"), 0o755)?;
        // Symbols off (the programs' object is data inside, untouched): 6.5 MB to about 4.
        setup::run(
            target.strip,
            &[
                "--strip-unneeded",
                &stage.join("usr/bin").join(&*name).to_string_lossy(),
            ],
        )?;
        glibc = glibc.max(newest_glibc(&fs::read(binary)?).unwrap_or(glibc));
    }
    let packaging = root.join("packaging");
    install(
        &packaging.join("syscall-profiler.service"),
        "lib/systemd/system/syscall-profiler.service",
        0o644,
    )?;
    install(
        &packaging.join("syscall-profiler.default"),
        "etc/default/syscall-profiler",
        0o644,
    )?;
    install(
        &packaging.join("copyright"),
        "usr/share/doc/syscall-profiler/copyright",
        0o644,
    )?;
    let pages = stage.join("usr/share/man/man1");
    fs::create_dir_all(&pages)?;
    for page in fs::read_dir(man)? {
        let page = page?.path();
        let name = page.file_name().expect("a file").to_string_lossy().into_owned();
        let gz = pages.join(format!("{name}.gz"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"gzip -9n < "$1" > "$2""#)
            .args(["sh".as_ref(), page.as_os_str(), gz.as_os_str()])
            .status()?;
        if !status.success() {
            bail!("gzip {} failed", page.display());
        }
        set_mode(&gz, 0o644)?;
    }
    let control = control_file(version, target.debian, glibc, installed_size(&stage)?);
    fs::create_dir_all(stage.join("DEBIAN"))?;
    fs::write(stage.join("DEBIAN/control"), control)?;
    fs::write(stage.join("DEBIAN/conffiles"), "/etc/default/syscall-profiler\n")?;
    let deb = dist.join(format!("syscall-profiler_{version}_{}.deb", target.debian));
    setup::run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Zxz",
            "--build",
            &stage.to_string_lossy(),
            &deb.to_string_lossy(),
        ],
    )?;
    fs::remove_dir_all(&stage)?;
    Ok(deb)
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::set_permissions(path, fs::Permissions::from_mode(mode))?)
}

/// The package's size in KiB, as `Installed-Size` wants it.
fn installed_size(stage: &Path) -> Result<u64> {
    fn walk(dir: &Path) -> Result<u64> {
        let mut bytes = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            bytes += if meta.is_dir() {
                walk(&entry.path())?
            } else {
                meta.len()
            };
        }
        Ok(bytes)
    }
    Ok(walk(stage)?.div_ceil(1024))
}

/// The newest `GLIBC_2.N` symbol version a binary asks for: the package's libc6 dependency.
fn newest_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_2.";
    binary
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .filter_map(|(at, _)| {
            let digits: String = binary[at + needle.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            Some((2, digits.parse().ok()?))
        })
        .max()
}

fn control_file(version: &str, architecture: &str, glibc: (u32, u32), installed_kib: u64) -> String {
    format!(
        "Package: syscall-profiler\n\
         Version: {version}\n\
         Architecture: {architecture}\n\
         Maintainer: syscall-profiler developers <syscall-profiler@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6 (>= {}.{})\n\
         Section: utils\n\
         Priority: optional\n\
         Description: system-wide syscall profiler on eBPF\n \
         Counts every syscall of every process in the kernel and splits its time into\n \
         entry, handler, blocked and runqueue: reports for incidents, a live terminal\n \
         view (syscall-top) and a Prometheus endpoint (the syscall-profiler service).\n \
         Needs Linux 5.12 or later with BTF.\n",
        glibc.0, glibc.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libc_dependency_is_the_newest_symbol_version_asked_for() {
        let binary = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0GLIBC_2.3.4\0";
        assert_eq!(newest_glibc(binary), Some((2, 34)));
        assert_eq!(newest_glibc(b"static"), None);
    }

    #[test]
    fn control_file_fields() {
        let control = control_file("0.1.0", "arm64", (2, 34), 9000);
        assert!(control.contains("\nArchitecture: arm64\n"), "{control}");
        assert!(control.contains("\nDepends: libc6 (>= 2.34)\n"), "{control}");
        assert!(control.ends_with(" Needs Linux 5.12 or later with BTF.\n"), "{control}");
        // Continuation lines of the description start with one space.
        assert!(control
            .lines()
            .skip_while(|l| !l.starts_with("Description:"))
            .skip(1)
            .all(|l| l.starts_with(' ')));
    }

    #[test]
    fn the_version_comes_from_the_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(workspace_version(root).unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
