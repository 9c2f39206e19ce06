//! The Debian packages `cargo xtask dist` puts in `target/dist/` (`cargo xtask test` builds
//! them before the tests): the amd64 one installs with dpkg, its systemd unit passes
//! `systemd-analyze verify`, the installed programs report their version, and `serve` runs
//! with exactly the unit's privileges (a uid of its own and its two capabilities); the arm64
//! one holds arm64 programs. And the DaemonSet's capabilities are enough for its arguments.
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

fn package(architecture: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is `tmp` in the target directory, whichever it is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let path = target.join(format!(
        "dist/syscall-profiler_{}_{architecture}.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.is_file(),
        "{} missing: run `cargo xtask dist` first",
        path.display()
    );
    path
}

fn output_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Removes the installed package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "syscall-profiler"]).output();
    }
}

/// The unit's `Key=` value.
fn unit_setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
#[ignore = "needs root: installs the package with dpkg (cargo xtask test runs it as root)"]
fn the_amd64_package_installs_and_serves_with_the_units_privileges() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let deb = package("amd64");
    let _installed = Installed;
    output_of("dpkg", &["-i", deb.to_str().unwrap()]);

    let version = format!("{}\n", env!("CARGO_PKG_VERSION"));
    assert!(output_of("/usr/bin/syscall-profiler", &["--version"]).ends_with(&version));
    assert!(output_of("/usr/bin/syscall-top", &["--version"]).ends_with(&version));
    let files = output_of("dpkg", &["-L", "syscall-profiler"]);
    for page in [
        "syscall-profiler.1.gz",
        "syscall-profiler-serve.1.gz",
        "syscall-profiler-report.1.gz",
        "syscall-top.1.gz",
    ] {
        assert!(
            files.contains(&format!("/usr/share/man/man1/{page}")),
            "{page} in {files}"
        );
    }
    let unit_path = "/lib/systemd/system/syscall-profiler.service";
    let verify = Command::new("systemd-analyze")
        .args(["verify", unit_path])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // serve as the unit runs it: not root, no capability but the unit's, no_new_privs.
    let unit = std::fs::read_to_string(unit_path).unwrap();
    assert_eq!(unit_setting(&unit, "DynamicUser"), "yes");
    assert_eq!(unit_setting(&unit, "NoNewPrivileges"), "yes");
    let capabilities = unit_setting(&unit, "AmbientCapabilities");
    assert_eq!(capabilities, unit_setting(&unit, "CapabilityBoundingSet"));
    let caps: Vec<String> = capabilities
        .split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    let port = free_port();
    let uid = "61234"; // no such user: as a DynamicUser's, it owns nothing
    let _serve = Killed(
        Command::new("setpriv")
            .args(["--reuid", uid, "--regid", uid, "--clear-groups"])
            .args(["--inh-caps", &caps, "--ambient-caps", &caps])
            .args(["--bounding-set", &format!("-all,{caps}"), "--no-new-privs"])
            .args([
                "/usr/bin/syscall-profiler",
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = wait_for("the packaged serve's /metrics", Duration::from_secs(30), || {
        let (status, response) = http(port, "GET", "/metrics", None)?;
        (status.contains("200") && response.contains("syscall_profiler_calls_total{")).then_some(response)
    });
    assert!(metrics.contains("syscall_profiler_overflow_drops_total"), "{metrics}");
}

#[test]
fn the_arm64_package_holds_arm64_programs() {
    let deb = package("arm64");
    let info = output_of(
        "dpkg-deb",
        &["--field", deb.to_str().unwrap(), "Architecture", "Depends"],
    );
    assert!(info.contains("Architecture: arm64"), "{info}");
    assert!(info.contains("Depends: libc6 (>= 2."), "{info}");
    let dir = std::env::temp_dir().join(format!("arm64-deb-{}", std::process::id()));
    output_of("dpkg-deb", &["-x", deb.to_str().unwrap(), dir.to_str().unwrap()]);
    for program in ["syscall-profiler", "syscall-top"] {
        let elf = std::fs::read(dir.join("usr/bin").join(program)).unwrap();
        // ELF, 64-bit, e_machine EM_AARCH64 (183).
        assert_eq!(&elf[..5], b"\x7fELF\x02", "{program}");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "{program}");
    }
    assert!(dir.join("lib/systemd/system/syscall-profiler.service").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `capabilities: add:` list and the `args` of the DaemonSet's container.
fn daemonset() -> (Vec<String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let yaml = std::fs::read_to_string(path).unwrap();
    let items_after = |key: &str| -> Vec<String> {
        let mut lines = yaml.lines().skip_while(|line| line.trim() != key).skip(1);
        let mut items = Vec::new();
        for line in lines.by_ref() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            match line.strip_prefix("- ") {
                Some(item) => items.push(item.trim().to_owned()),
                None => break,
            }
        }
        items
    };
    (items_after("add:"), items_after("args:"))
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_daemonsets_capabilities_are_enough_for_its_arguments() {
    let (added, args) = daemonset();
    assert!(
        added.contains(&"BPF".to_owned()) && args[0] == "serve",
        "{added:?} {args:?}"
    );
    let caps: Vec<String> = added.iter().map(|cap| format!("+{}", cap.to_lowercase())).collect();
    let port = free_port();
    // Root, as the pod starts, with no capability but the list's (what `drop: [ALL]` and
    // `add:` leave); the pod's own address is loopback here.
    let mut command = Command::new("setpriv");
    command
        .args([
            "--bounding-set",
            &format!("-all,{}", caps.join(",")),
            "--inh-caps",
            "-all",
        ])
        .arg(PROFILER);
    for arg in &args {
        match arg.strip_prefix("--listen=") {
            Some(_) => command.arg(format!("--listen=127.0.0.1:{port}")),
            None => command.arg(arg),
        };
    }
    let mut serve = Killed(command.stderr(Stdio::piped()).spawn().unwrap());
    let scraped = wait_for("the DaemonSet's serve", Duration::from_secs(30), || {
        if let Ok(Some(_)) = serve.0.try_wait() {
            return Some(false);
        }
        let (status, _) = http(port, "GET", "/metrics", None)?;
        Some(status.contains("200"))
    });
    if !scraped {
        let mut stderr = String::new();
        std::io::Read::read_to_string(serve.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        panic!("serve with the DaemonSet's capabilities {added:?} ended: {stderr}");
    }
}
