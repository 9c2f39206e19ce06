//! Helpers shared by the integration tests: run the real binaries and read their JSON.
#![allow(dead_code)]
use std::process::{Command, Output};

use serde_json::Value;

pub const PROFILER: &str = env!("CARGO_BIN_EXE_syscall-profiler");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_profiler-workload");

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn run(args: &[&str]) -> Output {
    Command::new(PROFILER)
        .args(args)
        .output()
        .expect("run syscall-profiler")
}

/// `syscall-profiler report --format json ARGS`, which must succeed.
pub fn report_json(args: &[&str]) -> Value {
    let mut full = vec!["report", "--format", "json"];
    full.extend_from_slice(args);
    let output = run(&full);
    assert!(
        output.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("report is JSON")
}

/// `report -- profiler-workload ARGS` as JSON.
pub fn profile_workload(args: &[&str]) -> Value {
    let mut full = vec!["--", WORKLOAD];
    full.extend_from_slice(args);
    report_json(&full)
}

/// The processes whose comm is the workload's (the kernel truncates it to 15 bytes).
pub fn workload_processes(report: &Value) -> Vec<&Value> {
    report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| {
            p["comm"]
                .as_str()
                .is_some_and(|c| "profiler-workload".starts_with(c) && c.len() >= 8)
        })
        .collect()
}

/// The row of syscall `name` (native ABI unless `abi` says otherwise) of a process.
pub fn syscall<'a>(process: &'a Value, name: &str, abi: &str) -> Option<&'a Value> {
    process["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .find(|s| s["name"] == name && s["abi"] == abi)
}

pub fn u64_of(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
}

/// The one workload process of a report.
pub fn only_workload(report: &Value) -> &Value {
    let found = workload_processes(report);
    assert_eq!(found.len(), 1, "one workload process in {report}");
    found[0]
}
