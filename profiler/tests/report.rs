//! `syscall-profiler report` against the repo's workload program, for real: these tests
//! load the eBPF programs and need root (CI runs them as root).
mod common;

use common::*;

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn exact_number_of_trivial_syscalls() {
    let report = profile_workload(&["getppid", "123457"]);
    assert_eq!(report["schema_version"], 5);
    assert_eq!(report["scope"], "command");
    assert_eq!(report["command_exit_code"], 0);
    let process = only_workload(&report);
    let getppid = syscall(process, "getppid", NATIVE).expect("getppid row");
    assert_eq!(u64_of(getppid, "calls"), 123_457);
    assert_eq!(u64_of(getppid, "errors"), 0);
    assert_eq!(u64_of(getppid, "nr"), libc::SYS_getppid as u64); // 110 on x86_64, 173 on arm64
                                                                 // The call that never returns is counted too.
    assert_eq!(
        u64_of(syscall(process, "exit_group", NATIVE).expect("exit_group row"), "calls"),
        1
    );
    // Every row's parts add up to its total, exactly.
    for row in process["syscalls"].as_array().unwrap().iter().chain([process]) {
        let parts: u64 = ["entry_ns", "handler_ns", "blocked_ns", "runqueue_ns"]
            .iter()
            .map(|f| u64_of(row, f))
            .sum();
        assert_eq!(parts, u64_of(row, "total_ns"), "{row}");
    }
    let boundary_ns = report["boundary_ns_per_call"].as_f64().expect("boundary cost");
    assert!(
        boundary_ns.is_finite() && boundary_ns >= 0.0,
        "boundary cost {boundary_ns}"
    );
    // Under emulation the calibration's timings mean nothing: it may find the machine too
    // busy (nothing charged) or every call's handler as long as its round trip (entry 0).
    if timing_is_real() {
        assert_eq!(report["boundary_source"], "calibrated");
        assert!(boundary_ns > 0.0, "calibrated boundary cost");
        assert_eq!(getppid["class"], "tiny-frequent", "{getppid}");
    }
}

fn enoent_openat(report: &serde_json::Value) -> (u64, u64) {
    let process = only_workload(report);
    let openat = syscall(process, "openat", NATIVE).expect("openat row");
    (
        u64_of(openat, "errors"),
        openat["errno"]["ENOENT"].as_u64().unwrap_or(0),
    )
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn exact_number_of_failing_openat_under_enoent() {
    // The dynamic loader has its own (constant) failed opens; count ours on top of them.
    let (base_errors, base_enoent) = enoent_openat(&profile_workload(&["enoent", "0"]));
    let (errors, enoent) = enoent_openat(&profile_workload(&["enoent", "2500"]));
    assert_eq!(enoent - base_enoent, 2500);
    assert_eq!(errors - base_errors, 2500);
    assert_eq!(errors, enoent, "every failed openat was ENOENT");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn sleeping_thread_is_blocked_for_the_time_it_slept() {
    let (sleeps, ms) = (20u64, 50u64);
    let report = profile_workload(&["sleep", &sleeps.to_string(), &ms.to_string()]);
    let process = only_workload(&report);
    let nanosleep = syscall(process, "nanosleep", NATIVE).expect("nanosleep row");
    assert_eq!(u64_of(nanosleep, "calls"), sleeps);
    let expected = (sleeps * ms * 1_000_000) as f64;
    let blocked = u64_of(nanosleep, "blocked_ns") as f64;
    assert!(
        (blocked - expected).abs() / expected <= 0.05,
        "blocked {blocked} ns vs {expected} ns slept"
    );
    // Asleep for its whole time, by design.
    assert_eq!(nanosleep["class"], "sleep");
    let p50 = nanosleep["latency_ns"]["p50"].as_u64().unwrap() as f64;
    assert!(
        (p50 - (ms * 1_000_000) as f64).abs() / ((ms * 1_000_000) as f64) <= 0.25,
        "p50 {p50}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn large_reads_from_dev_zero_are_handler_heavy() {
    // 3000 reads (~0.2 s in all): a preemption of a few ms, which a busy machine's other
    // tasks can cause, does not make them look CPU-bound.
    let report = profile_workload(&["zero-read", "3000", "1048576"]);
    let read = syscall(only_workload(&report), "read", NATIVE)
        .expect("read row")
        .clone();
    assert!(u64_of(&read, "calls") >= 3000);
    assert_eq!(read["class"], "handler-heavy", "{read}");
    assert!(u64_of(&read, "handler_ns") > u64_of(&read, "total_ns") / 2);
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn counts_are_exact_whichever_way_sys_exit_finds_the_thread() {
    // `sys_exit` asks the kernel for the thread id, or where returns are costly looks it up
    // in its CPU's records of recent callers; SYSCALL_PROFILER_EXIT_TID picks one. Calls that
    // sleep and wake up on the other CPU (the ping-pong, with a spinner) miss the records.
    for way in ["helper", "records"] {
        let calls = |rounds: &str, name: &str| {
            let report = profile_workload_env(&["pingpong", rounds, "1"], "SYSCALL_PROFILER_EXIT_TID", way);
            let row = syscall(only_workload(&report), name, NATIVE).unwrap_or_else(|| panic!("{way}: {name} row"));
            u64_of(row, "calls")
        };
        // Each of the two threads reads and writes once a round (the loader's own reads and
        // writes cancel out).
        for name in ["read", "write"] {
            assert_eq!(calls("30000", name) - calls("10000", name), 40_000, "{way}: {name}");
        }
        let getppid = profile_workload_env(&["getppid", "54321"], "SYSCALL_PROFILER_EXIT_TID", way);
        let getppid = syscall(only_workload(&getppid), "getppid", NATIVE).expect("getppid row");
        assert_eq!(u64_of(getppid, "calls"), 54_321, "{way}");
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn pipe_ping_pong_with_too_many_runnable_threads_waits_for_cpus() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners = (2 * cpus).to_string();
    let report = profile_workload(&["pingpong", "20000", &spinners]);
    let process = only_workload(&report);
    let read = syscall(process, "read", NATIVE).expect("read row");
    assert!(u64_of(read, "calls") >= 40_000);
    // Woken readers queue behind the spinners: well over a millisecond in total.
    assert!(u64_of(read, "runqueue_ns") > 1_000_000, "{read}");
    assert!(u64_of(process, "runqueue_ns") >= u64_of(read, "runqueue_ns"));
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn ia32_calls_are_named_from_the_i386_table() {
    // A real 32-bit program: 777 getpid calls through int 0x80, then exit.
    let program = std::env::temp_dir().join(format!("getpid32-{}", std::process::id()));
    let status = std::process::Command::new(WORKLOAD)
        .args(["write-i386", program.to_str().unwrap(), "777"])
        .status()
        .unwrap();
    assert!(status.success());
    let report = report_json(&["--", program.to_str().unwrap()]);
    std::fs::remove_file(&program).ok();
    let process = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"].as_str().is_some_and(|c| c.starts_with("getpid32")))
        .expect("the 32-bit process");
    let getpid32 = syscall(process, "getpid", "ia32").expect("ia32 getpid row");
    assert_eq!(u64_of(getpid32, "calls"), 777);
    assert_eq!(u64_of(getpid32, "nr"), 20);
    // i386 exit (1) never returns: counted at process exit, named from the i386 table.
    assert_eq!(
        u64_of(syscall(process, "exit", "ia32").expect("ia32 exit row"), "calls"),
        1
    );
    // On x86_64, 20 is writev and 1 is write: neither may appear.
    assert!(syscall(process, "writev", NATIVE).is_none(), "{process}");
    assert!(syscall(process, "write", NATIVE).is_none(), "{process}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn command_descendants_are_profiled() {
    // `true` last: a shell may exec its last command in place (busybox's does), and then the
    // shell's own calls (its getppid for $PPID) would be counted as the workload's.
    let script = format!("{WORKLOAD} getppid 1111; {WORKLOAD} getppid 2222; true");
    let report = report_json(&["--", "sh", "-c", &script]);
    let mut counts: Vec<u64> = workload_processes(&report)
        .iter()
        .map(|p| syscall(p, "getppid", NATIVE).map_or(0, |s| u64_of(s, "calls")))
        .collect();
    counts.sort();
    assert_eq!(counts, vec![1111, 2222], "{report}");
    assert!(report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["comm"] == "sh"));
}

/// A report of `--pid`s ends once they have all exited, not at its `--duration`: it looks
/// every second (its tables it reads less often), and reads them once more at the end.
#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_pid_report_ends_soon_after_its_processes_exit() {
    let mut steady = std::process::Command::new(WORKLOAD)
        .args(["steady", "3000", "6"]) // outlives the report's start-up
        .spawn()
        .unwrap();
    let pid = steady.id();
    let started = std::time::Instant::now();
    let reporter = std::process::Command::new(PROFILER)
        .args([
            "report",
            "--format",
            "json",
            "--duration",
            "300",
            "--pid",
            &pid.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    steady.wait().unwrap();
    let exited = std::time::Instant::now();
    let output = reporter.wait_with_output().unwrap();
    let took = exited.elapsed();
    assert!(output.status.success());
    // Seconds, not the 300 asked (start-up may still be going on when the workload exits
    // on a loaded machine: counted from the exit, generously).
    assert!(
        took < std::time::Duration::from_secs(30),
        "ended {took:?} after the exit"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let process = only_workload(&report);
    let getppid = u64_of(syscall(process, "getppid", NATIVE).expect("getppid row"), "calls");
    assert!(
        getppid > 0 && getppid <= 3000,
        "{getppid} of 3000 after {:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn system_wide_and_pid_modes_see_a_running_process() {
    let mut busy = std::process::Command::new(WORKLOAD)
        .args(["spin", "120"]) // outlives both reports on a loaded machine; killed below
        .spawn()
        .unwrap();
    let pid = busy.id();
    let system_wide = report_json(&["--duration", "1.5"]);
    let by_pid = report_json(&["--duration", "1.5", "--pid", &pid.to_string()]);
    busy.kill().ok();
    busy.wait().ok();
    assert_eq!(system_wide["scope"], "system-wide");
    let process = system_wide["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .expect("busy pid");
    assert!(u64_of(syscall(process, "getppid", NATIVE).unwrap(), "calls") > 1000);
    // The profiler does not report itself.
    let agent = &system_wide["agent_pid"];
    assert!(agent.as_u64().unwrap() > 0);
    assert!(
        system_wide["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| &p["pid"] != agent),
        "the agent's own calls are left out"
    );
    let pids: Vec<u64> = by_pid["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| u64_of(p, "pid"))
        .collect();
    assert_eq!(pids, vec![u64::from(pid)], "{by_pid}");
    assert!(by_pid["duration_ns"].as_u64().unwrap() >= 1_400_000_000);
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_report_accounts_for_its_own_cost() {
    // The oracle: the kernel's account of the profiler process's CPU (wait4's rusage).
    let path = std::env::temp_dir().join(format!("own-cost-{}.json", std::process::id()));
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
    let child = std::process::Command::new(PROFILER)
        .args([
            "report",
            "--format",
            "json",
            "--duration",
            "2",
            "-o",
            path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it for the child it reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    let whole_cpu_ns = ns(usage.ru_utime) + ns(usage.ru_stime);
    let cost = &report["agent_cost"];
    let (startup_ns, startup_cpu_ns) = (u64_of(cost, "startup_ns"), u64_of(cost, "startup_cpu_ns"));
    let (profiling_ns, profiling_cpu_ns) = (u64_of(cost, "profiling_ns"), u64_of(cost, "profiling_cpu_ns"));
    // Loading and checking the programs takes CPU; the window is the duration (and its final
    // read); the parts are within the whole (rusage counts in microseconds).
    assert!(startup_cpu_ns > 0 && startup_ns > 0, "{cost}");
    assert!((2_000_000_000..3_000_000_000).contains(&profiling_ns), "{cost}");
    assert!(
        startup_cpu_ns + profiling_cpu_ns <= whole_cpu_ns + 1_000_000,
        "{cost} whole {whole_cpu_ns}"
    );
    // What comes after the window (the hangs, detaching, the report) is the smaller part.
    assert!(
        startup_cpu_ns + profiling_cpu_ns >= whole_cpu_ns / 2,
        "{cost} whole {whole_cpu_ns}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn text_report_to_a_file() {
    let path = std::env::temp_dir().join(format!("report-{}.txt", std::process::id()));
    let output = run(&["report", "-o", path.to_str().unwrap(), "--", WORKLOAD, "enoent", "10"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(text.contains("syscall-profiler report"), "{text}");
    assert!(text.contains("openat"), "{text}");
    assert!(text.contains("ENOENT"), "{text}");
    assert!(text.contains("split bar: E entry"), "{text}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn calibrate_explains_the_boundary_cost() {
    let output = run(&["calibrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("boundary cost: "), "{text}");
    assert!(text.contains("getppid"), "{text}");
    assert!(text.contains("/sys/devices/system/cpu/vulnerabilities"), "{text}");
    let cost: f64 = text["boundary cost: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cost > 0.0 && cost < 100_000.0, "{cost}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn sampled_timing_keeps_counts_exact_and_estimates_the_rest() {
    let calls = 200_000u64;
    let report = report_json(&["--sample", "16", "--", WORKLOAD, "getppid", &calls.to_string()]);
    assert_eq!(report["sample_every"], 16);
    let getppid = syscall(only_workload(&report), "getppid", NATIVE).expect("getppid row");
    assert_eq!(u64_of(getppid, "calls"), calls);
    // About 12,500 calls timed, each standing for 16: the histogram's estimate of the number
    // of calls is within a few tenths of a percent (one standard deviation); 5% is > 5 sigma.
    let estimated = getppid["latency_ns"]["count"].as_u64().unwrap() as f64;
    assert!(
        (estimated - calls as f64).abs() / (calls as f64) < 0.05,
        "histogram stands for {estimated} calls of {calls}"
    );
    assert!(u64_of(getppid, "handler_ns") > 0, "{getppid}");
    if timing_is_real() {
        assert_eq!(getppid["class"], "tiny-frequent", "{getppid}");
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn calls_that_sleep_are_all_timed_whatever_the_sampling() {
    // Far more sleeps than the first calls that are always timed, at the sparsest sampling:
    // almost all of them are untimed at sys_enter, and measured because they leave the CPU.
    let (sleeps, ms) = (300u64, 2u64);
    let report = report_json(&[
        "--sample",
        "1024",
        "--",
        WORKLOAD,
        "sleep",
        &sleeps.to_string(),
        &ms.to_string(),
    ]);
    let nanosleep = syscall(only_workload(&report), "nanosleep", NATIVE).expect("nanosleep row");
    assert_eq!(u64_of(nanosleep, "calls"), sleeps);
    // Each one stands for itself: the distribution holds the calls (untimed calls that stayed
    // on the CPU would each stand for 1024). A sleep whose timer expired before it got to
    // sleep (the hypervisor took the CPU for 2 ms) never left the CPU; allow one in a hundred.
    let timed = nanosleep["latency_ns"]["count"].as_u64().unwrap();
    assert!((sleeps - sleeps / 100..=sleeps).contains(&timed), "{nanosleep}");
    let expected = (sleeps * ms * 1_000_000) as f64;
    let blocked = u64_of(nanosleep, "blocked_ns") as f64;
    // Timer slack and wakeup latency only ever add.
    assert!(
        blocked >= expected * 0.98 && blocked <= expected * 1.25,
        "blocked {blocked} ns vs {expected} ns slept"
    );
    let p50 = nanosleep["latency_ns"]["p50"].as_u64().unwrap() as f64;
    assert!((p50 / (ms * 1_000_000) as f64 - 1.0).abs() <= 0.25, "p50 {p50}");
    // Asleep for its whole time, by design.
    assert_eq!(nanosleep["class"], "sleep");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn counts_stay_exact_on_a_busy_machine() {
    // Context switches and syscalls on every CPU around the measured process, and a second
    // profiler (system-wide) whose programs run on every call too. An earlier hot path, which
    // learnt who is calling from a per-CPU record kept by sched_switch, lost thousands of
    // calls in about one run in ten under this kind of load (it does not trigger reliably:
    // a smoke test, not a proof).
    let command = |program: &str, args: &[&str]| std::process::Command::new(program).args(args).spawn().unwrap();
    let load = [
        command(WORKLOAD, &["pingpong", "100000000", "0"]),
        command(WORKLOAD, &["spin", "120"]),
        command(PROFILER, &["report", "--duration", "120", "-o", "/dev/null"]),
    ];
    let mut counts = Vec::new();
    for _ in 0..8 {
        let report = profile_workload(&["getppid", "123457"]);
        let getppid = syscall(only_workload(&report), "getppid", NATIVE).expect("getppid row");
        counts.push(u64_of(getppid, "calls"));
    }
    for mut child in load {
        child.kill().ok();
        child.wait().ok();
    }
    assert!(counts.iter().all(|&c| c == 123_457), "{counts:?}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn new_tasks_on_reused_kernel_stacks_are_told_apart() {
    // Each CPU remembers its recent callers by the address of their registers on the kernel
    // stack; a new task soon gets the stack of one that just exited. A thread and a child
    // process, one after another, 200 times: the leader makes no getppid calls itself.
    let (rounds, calls) = (200u64, 1000u64);
    let report = profile_workload(&["churn", &rounds.to_string(), &calls.to_string()]);
    let mut counts: Vec<u64> = workload_processes(&report)
        .iter()
        .map(|p| syscall(p, "getppid", NATIVE).map_or(0, |s| u64_of(s, "calls")))
        .collect();
    counts.sort();
    let mut expected = vec![calls; rounds as usize];
    expected.push(rounds * calls);
    if counts != expected {
        // What would tell where the missing calls went: the losses the kernel side counted,
        // and every process with getppid calls (its pid, name and count).
        let getppid_rows: Vec<String> = report["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter_map(|p| {
                let made = syscall(p, "getppid", NATIVE).map(|s| u64_of(s, "calls"))?;
                (made != calls && made != rounds * calls).then(|| format!("{} {} {made}", p["pid"], p["comm"]))
            })
            .collect();
        panic!(
            "getppid counts {counts:?}\noverflow {}\nrows off the expected counts: {getppid_rows:?}",
            report["overflow"]
        );
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_fork_storm_loses_no_call() {
    // 20,000 processes as fast as the machine forks them (64 alive at once), 5 getppid each,
    // with the default table sizes: the tables are read as fast as the storm fills them.
    let report = profile_workload(&["fork-storm", "20000", "5"]);
    let processes = workload_processes(&report);
    let getppid: u64 = processes
        .iter()
        .filter_map(|process| syscall(process, "getppid", NATIVE))
        .map(|row| u64_of(row, "calls"))
        .sum();
    assert_eq!(getppid, 100_000);
    assert_eq!(processes.len(), 20_001, "the storm and its children");
    for (reason, count) in report["overflow"].as_object().unwrap() {
        assert_eq!(count, 0, "{reason}");
    }
}
