//! The kernel side's bookkeeping, read straight from the maps: threads that die or exec
//! inside a syscall leave no in-flight slot behind, and full maps are counted. Needs root.
mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use profiler::kernel::{MapSizes, Probe, Scope};

const NR_NANOSLEEP: u32 = libc::SYS_nanosleep as u32;
const NR_EXECVE: u32 = libc::SYS_execve as u32;

fn attached_probe() -> Probe {
    let mut probe = Probe::load_default(MapSizes::default(), Scope::SystemWide).expect("load");
    probe.attach().expect("attach");
    probe
}

fn slots_of(probe: &Probe, tgid: u32) -> Vec<profiler_common::InFlight> {
    probe
        .in_flight()
        .into_iter()
        .filter(|slot| slot.stats_key().tgid == tgid)
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn killed_inside_a_blocking_call_leaves_no_slot() {
    let probe = attached_probe();
    let mut sleeper = Command::new(WORKLOAD).args(["sleep", "1", "100000"]).spawn().unwrap();
    let pid = sleeper.id();
    wait_for("the sleeper to be inside nanosleep", || {
        slots_of(&probe, pid)
            .iter()
            .any(|slot| slot.stats_key().nr == NR_NANOSLEEP)
    });
    sleeper.kill().unwrap(); // SIGKILL
    sleeper.wait().unwrap();
    assert!(slots_of(&probe, pid).is_empty(), "{:?}", slots_of(&probe, pid));
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn exit_group_never_returns_and_leaves_no_slot() {
    let probe = attached_probe();
    let status = Command::new(WORKLOAD).args(["sleep", "3", "1"]).status().unwrap();
    assert!(status.success());
    // The process is gone; its exit_group (and its threads' exit) never reached sys_exit.
    let stats: Vec<_> = probe.stats().collect();
    let pids: std::collections::HashSet<u32> = stats
        .iter()
        .map(|(_, slot)| profiler_common::StatsKey::unpack(slot.key).tgid)
        .collect();
    for pid in pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(slots_of(&probe, pid).is_empty(), "dead process {pid} still has slots");
        }
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn exec_from_a_thread_moves_the_call_to_the_new_tid() {
    let probe = attached_probe();
    let status = Command::new(WORKLOAD)
        .args(["exec-thread", "/bin/true"])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(WORKLOAD)
        .args(["exec-thread", "/bin/sleep"])
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait().unwrap();
    // The execve ran in a non-leader thread, returned in the leader's tid, and was counted.
    let key = profiler_common::StatsKey {
        tgid: pid,
        nr: NR_EXECVE,
    };
    let execs = probe.stats_of(key).map_or(0, |(calls, _)| calls);
    assert_eq!(execs, 2, "the workload's own execve and the thread's");
    assert!(slots_of(&probe, pid).is_empty());
}

/// A slot freed before a key's own on its probe sequence is not taken by that key: it is
/// looked for past freed slots first. (Claiming the first freed slot put live keys in two
/// slots each under churn, and filled three quarters of the table.)
#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_key_keeps_its_slot_when_slots_before_it_are_freed() {
    const NR_GETPPID: u32 = libc::SYS_getppid as u32;
    const SLOTS: u32 = 64;
    let sizes = MapSizes {
        syscalls: SLOTS,
        ..MapSizes::default()
    };
    let mut probe = Probe::load_default(sizes, Scope::SystemWide).expect("load");
    probe.attach().expect("attach");
    // Needs a getppid slot past the start of its probe sequence: a small table shared with
    // the whole machine gives one within a few tries.
    for _attempt in 0..40 {
        // No agent reads this table and frees what is final: the machine's own new processes
        // (a VM's watchdog starts a few every 30 s) would fill its 64 slots, and the caller's
        // getppid would find none. Each attempt starts from an emptied table.
        let used: Vec<u32> = probe.stats().map(|(index, _)| index).collect();
        probe.free_stats(&used);
        let mut caller = Command::new(WORKLOAD).args(["steady", "200000", "4"]).spawn().unwrap();
        let pid = caller.id();
        let mut found = None;
        wait_for("the caller's getppid slot", || {
            found = probe.stats().find(|(_, slot)| {
                profiler_common::StatsKey::unpack(slot.key)
                    == profiler_common::StatsKey {
                        tgid: pid,
                        nr: NR_GETPPID,
                    }
            });
            found.is_some()
        });
        let (index, slot) = found.unwrap();
        let start = profiler_common::stats_hash(slot.key, SLOTS - 1);
        if index == start {
            caller.kill().unwrap();
            caller.wait().unwrap();
            continue;
        }
        let before: Vec<u32> = (0..SLOTS)
            .map(|probe| (start + probe) & (SLOTS - 1))
            .take_while(|&at| at != index)
            .collect();
        probe.free_stats(&before);
        std::thread::sleep(Duration::from_millis(400));
        let slots: Vec<u32> = probe
            .stats()
            .filter(|(_, other)| other.key == slot.key)
            .map(|(at, _)| at)
            .collect();
        caller.kill().unwrap();
        caller.wait().unwrap();
        assert_eq!(slots, vec![index], "freed before it: {before:?}");
        return;
    }
    panic!("no getppid slot past the start of its probe sequence in 40 tries");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn full_maps_are_counted_and_reported() {
    let report = report_json(&["--max-syscalls", "3", "--", WORKLOAD, "getppid", "10"]);
    assert!(
        report["overflow"]["stats_full"].as_u64().unwrap() > 0,
        "{}",
        report["overflow"]
    );
    let output = run(&["report", "--max-syscalls", "3", "--", WORKLOAD, "getppid", "10"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("WARNING: calls not counted: "), "{text}");
}
