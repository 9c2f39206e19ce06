//! Incident artifacts, for real: a seccomp profile of what a command called, applied through
//! libseccomp to the same command (Debian's python3-seccomp, which `cargo xtask test`
//! installs when missing).
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use serde_json::Value;

/// Runs a command under an OCI seccomp profile (tests/support/seccomp-exec.py).
fn run_under(profile: &Path, command: &[&str]) -> Output {
    Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/seccomp-exec.py"))
        .arg(profile)
        .args(command)
        .output()
        .expect("python3")
}

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(profile: &Value, rule: usize) -> Vec<&str> {
    profile["syscalls"][rule]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect()
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_seccomp_profile_lets_the_command_run_and_nothing_it_did_not_call() {
    let dir = TempDir::new("seccomp");
    let profile_path = dir.0.join("ls.json");
    let profile_arg = profile_path.to_str().unwrap();
    let made = run(&["report", "--seccomp", profile_arg, "--", "/bin/ls", "/"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&profile_path).unwrap()).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(profile["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));
    let allowed = names(&profile, 0);
    for needed in ["execve", "getdents64", "write", "exit_group"] {
        assert!(allowed.contains(&needed), "{needed} missing: {allowed:?}");
    }
    // ls makes no network call, nor a mount.
    assert!(
        !allowed.contains(&"socket") && !allowed.contains(&"mount"),
        "{allowed:?}"
    );

    // Applied: the same command runs as it did.
    let ran = run_under(&profile_path, &["/bin/ls", "/"]);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert!(String::from_utf8_lossy(&ran.stdout).lines().any(|l| l == "usr"));

    // Without one call it needs, it fails: ls cannot read the directory.
    let mut without = profile.clone();
    let kept: Vec<&str> = allowed.iter().copied().filter(|n| *n != "getdents64").collect();
    without["syscalls"][0]["names"] = serde_json::json!(kept);
    let without_path = dir.0.join("without-getdents64.json");
    std::fs::write(&without_path, without.to_string()).unwrap();
    let failed = run_under(&without_path, &["/bin/ls", "/"]);
    assert!(!failed.status.success(), "ls ran without getdents64");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_32_bit_program_gets_its_own_architecture_in_the_profile() {
    let dir = TempDir::new("seccomp32");
    let program = dir.0.join("getpid32");
    let program_arg = program.to_str().unwrap();
    assert!(Command::new(WORKLOAD)
        .args(["write-i386", program_arg, "77"])
        .status()
        .unwrap()
        .success());
    let profile_path = dir.0.join("getpid32.json");
    let made = run(&["report", "--seccomp", profile_path.to_str().unwrap(), "--", program_arg]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&profile_path).unwrap()).unwrap();
    assert_eq!(
        profile["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    );
    // The exec of it, natively; its own calls through int 0x80, named from the i386 table.
    assert_eq!(names(&profile, 0), ["execve"]);
    assert_eq!(names(&profile, 1), ["exit", "getpid"]);
    let ran = run_under(&profile_path, &[program_arg]);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_profile_missing_calls_is_refused() {
    let dir = TempDir::new("seccomp-full");
    let profile_path = dir.0.join("never.json");
    // A statistics table of one slot: most of ls's calls find no room.
    let out = run(&[
        "report",
        "--max-syscalls",
        "1",
        "--seccomp",
        profile_path.to_str().unwrap(),
        "--",
        "/bin/ls",
        "/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not written") && stderr.contains("stats_full"),
        "{stderr}"
    );
    assert!(!profile_path.exists(), "no incomplete profile left behind");
    // And a directory that does not exist is refused before profiling.
    let out = run(&["report", "--seccomp", "/nonexistent/dir/p.json", "--", "/bin/true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

/// Headless Chromium (Debian's `chromium`, which `cargo xtask test` installs when missing) on
/// a local file: `extra` flags, then the page. Its console messages go to stderr.
fn chromium(extra: &[&str], page: &Path) -> Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium")
}

/// Errors the page's scripts raised, as Chromium logs them.
fn console_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.contains("CONSOLE") && (line.contains("Uncaught") || line.contains("Error")))
        .map(str::to_owned)
        .collect()
}

/// Width and height of a PNG (its IHDR chunk).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Loads `page` in Chromium: the DOM once its scripts ran, with no console error, and a
/// 1280x800 screenshot saved as `screenshot` (under the build's test directory).
fn open_in_browser(page: &Path, screenshot: &str) -> String {
    let loaded = chromium(&["--dump-dom"], page);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    let errors = console_errors(&loaded.stderr);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
    let _ = std::fs::remove_file(&shot);
    let taken = chromium(
        &["--window-size=1280,800", &format!("--screenshot={}", shot.display())],
        page,
    );
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    assert_eq!(png_size(&std::fs::read(&shot).unwrap()), (1280, 800));
    String::from_utf8_lossy(&loaded.stdout).into_owned()
}

#[test]
#[ignore = "needs root and Chromium: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_console_check_sees_a_script_error() {
    // The check the report pages pass must be able to fail.
    let dir = TempDir::new("console");
    let page = dir.0.join("broken.html");
    std::fs::write(&page, "<!doctype html><p>x</p><script>undefinedFunction();</script>").unwrap();
    let loaded = chromium(&["--dump-dom"], &page);
    assert!(
        !console_errors(&loaded.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

#[test]
#[ignore = "needs root and Chromium: loads eBPF programs (cargo xtask test runs it as root)"]
fn an_html_report_opens_in_a_real_browser() {
    let dir = TempDir::new("html");
    let page = dir.0.join("report.html");
    let script = format!("{WORKLOAD} waits 5 {}; {WORKLOAD} enoent 50", dir.0.display());
    let made = run(&["report", "--html", page.to_str().unwrap(), "--", "sh", "-c", &script]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "fetches nothing"
    );

    let dom = open_in_browser(&page, "report.png");
    // The script ran to its end, and the key elements are there.
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
    for element in [
        "id=\"header\"",
        "id=\"processes\"",
        "class=\"split\"",
        "class=\"histogram\"",
        "class=\"site\"",
        "pipe_read",
        "ENOENT",
        "profiler-worklo",
    ] {
        assert!(dom.contains(element), "{element} missing from the page");
    }
    // The filter box is shown by the script only.
    assert!(dom.contains("id=\"filter\" type=\"search\" placeholder=\"filter by name or pid\">"));

    // With JavaScript off the essentials are still there: they are in the markup as
    // written (the script only sorts and filters).
    for essential in [
        "profiler-worklo",
        "pipe_read",
        "class=\"split\"",
        "class=\"histogram\"",
        "ENOENT",
    ] {
        assert!(html.contains(essential), "{essential} is not in the markup");
    }
}

/// A snapshot as `report --save` writes one, of `processes` (comm, syscall, calls) over
/// `seconds`.
fn synthetic_snapshot(seconds: u64, processes: &[(&str, &str, u64)]) -> Value {
    let processes: Vec<Value> = processes
        .iter()
        .map(|(comm, name, calls)| {
            serde_json::json!({ "pid": 1, "comm": comm, "syscalls": [{
                "name": name, "abi": "x86_64", "calls": calls, "errors": 0,
                "entry_ns": calls * 100, "handler_ns": calls * 1000, "blocked_ns": 0, "runqueue_ns": 0,
                "latency_ns": { "count": calls, "p50": 1000, "p90": 1000, "p99": 2000, "max": 3000 },
                "wait_sites": [] }] })
        })
        .collect();
    serde_json::json!({ "schema_version": 4, "duration_ns": seconds * 1_000_000_000,
        "host": { "time": "2026-11-30T00:00:00Z", "hostname": "h", "kernel_release": "6.18" },
        "processes": processes })
}

#[test]
fn diff_refuses_what_is_not_a_complete_report_in_one_line() {
    let dir = TempDir::new("diff-errors");
    let good = dir.0.join("good.json");
    std::fs::write(&good, synthetic_snapshot(1, &[("web", "read", 10)]).to_string()).unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    let mut newer = synthetic_snapshot(1, &[]);
    newer["schema_version"] = 99.into();
    let cases: [(&str, String, &str); 5] = [
        ("truncated.json", text[..text.len() / 2].to_owned(), "is truncated"),
        ("garbage.json", "not json at all".to_owned(), "not JSON"),
        ("newer.json", newer.to_string(), "newer syscall-profiler"),
        ("other.json", "{\"hello\": 1}".to_owned(), "no schema_version"),
        ("partial.json", "{\"schema_version\": 4}".to_owned(), "not a complete"),
    ];
    for (name, content, expected) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, content).unwrap();
        let out = run(&["diff", good.to_str().unwrap(), path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(expected) && stderr.contains(name), "{name}: {stderr}");
    }
    let out = run(&["diff", good.to_str().unwrap(), "/nonexistent/b.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/b.json"));
}

#[test]
fn diff_compares_reports_of_different_lengths_as_rates() {
    let dir = TempDir::new("diff-rates");
    let (a, b) = (dir.0.join("a.json"), dir.0.join("b.json"));
    // A: 10 s, web reads 1,000 times. B: 2 s, web reads 1,000 times (5x the rate), db fsyncs.
    std::fs::write(&a, synthetic_snapshot(10, &[("web", "read", 1_000)]).to_string()).unwrap();
    std::fs::write(
        &b,
        synthetic_snapshot(2, &[("web", "read", 1_000), ("db", "fsync", 4)]).to_string(),
    )
    .unwrap();
    let out = run(&["diff", "--format", "json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = diff["rows"].as_array().unwrap();
    assert_eq!(rows[0]["group"], "web");
    assert_eq!(rows[0]["a"]["calls"], 100.0);
    assert_eq!(rows[0]["b"]["calls"], 500.0);
    assert_eq!(rows[1]["syscall"], "fsync");
    assert_eq!(rows[1]["a"]["calls"], 0.0);
    let text = run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("web") && text.contains("100 -> 500 +400%"), "{text}");
    assert!(text.contains("new"), "{text}");
}

#[test]
#[ignore = "needs root and Chromium: loads eBPF programs (cargo xtask test runs it as root)"]
fn snapshots_of_real_runs_diff_as_text_json_and_html() {
    let dir = TempDir::new("diff-real");
    let (a, b) = (dir.0.join("before.json"), dir.0.join("after.json"));
    let saved = |path: &Path, script: &str| {
        let out = run(&["report", "--save", path.to_str().unwrap(), "--", "sh", "-c", script]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let before = saved(&a, &format!("{WORKLOAD} getppid 2000"));
    let after = saved(&b, &format!("{WORKLOAD} getppid 8000; {WORKLOAD} enoent 300"));
    let out = run(&["diff", "--format", "json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |syscall: &str| {
        diff["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "profiler-worklo" && r["syscall"] == syscall)
            .cloned()
            .unwrap_or_else(|| panic!("no {syscall} row: {diff}"))
    };
    let seconds = |report: &Value| report["duration_ns"].as_f64().unwrap() / 1e9;
    let getppid = row("getppid");
    let close = |x: f64, y: f64| (x - y).abs() <= y * 1e-9;
    assert!(close(
        getppid["a"]["calls"].as_f64().unwrap(),
        2000.0 / seconds(&before)
    ));
    assert!(close(getppid["b"]["calls"].as_f64().unwrap(), 8000.0 / seconds(&after)));
    let openat = row("openat");
    assert!(openat["b"]["errors"].as_f64().unwrap() >= 300.0 / seconds(&after) - 1e-6);

    let page = dir.0.join("diff.html");
    let out = run(&[
        "diff",
        "--html",
        page.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("GROUP"));
    let dom = open_in_browser(&page, "diff.png");
    assert!(dom.contains("data-ready=\"1\"") && dom.contains("id=\"rows\"") && dom.contains("getppid"));
}
