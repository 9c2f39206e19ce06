//! What an incident report says beyond the numbers, for real: what hung threads wait on,
//! where and when it was taken, the command's exit code, and waits by design kept out of the
//! headline.
mod common;

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// The hang of `pid` in a report's `in_flight`.
fn hang_of(report: &Value, pid: u32) -> &Value {
    report["in_flight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|hang| hang["pid"] == pid)
        .unwrap_or_else(|| panic!("no hang of {pid} in {}", report["in_flight"]))
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_report_names_what_hung_threads_wait_on() {
    let dir = std::env::temp_dir().join(format!("hangs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("nobody-writes");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // An open of a fifo nobody opens for writing; a read of a pipe whose writer sleeps; a sleep.
    let fifo_reader = Killed(Command::new("cat").arg(&fifo).spawn().unwrap());
    let mut pipeline = Command::new("sh")
        .args(["-c", "sleep 60 | cat"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = Killed(Command::new("sleep").arg("1000").spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let shell = pipeline.id();
    let pipe_reader = wait_for("the pipeline's cat", Duration::from_secs(5), || {
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "cat"))
    });
    let (fifo_pid, sleep_pid) = (fifo_reader.0.id(), sleeper.0.id());
    let report = report_json(&[
        "--duration",
        "1.5",
        "--pid",
        &fifo_pid.to_string(),
        "--pid",
        &pipe_reader.to_string(),
        "--pid",
        &sleep_pid.to_string(),
    ]);
    let _ = pipeline.kill();
    let _ = Command::new("pkill").args(["-P", &shell.to_string()]).status();
    let _ = pipeline.wait();
    std::fs::remove_dir_all(&dir).ok();

    // Already inside their calls when profiling began: at least the whole report.
    let open = hang_of(&report, fifo_pid);
    assert_eq!(open["syscall"], "openat", "{open}");
    assert_eq!(open["since_before_start"], true, "{open}");
    assert!(u64_of(open, "elapsed_ns") >= 1_000_000_000, "{open}");
    assert_eq!(open["state"], "asleep", "{open}");
    assert!(
        open["wait_site"]
            .as_str()
            .unwrap()
            .starts_with("wait_for_partner <- fifo_open"),
        "{open}"
    );
    assert_eq!(open["path"], fifo.to_str().unwrap(), "{open}");

    let read = hang_of(&report, pipe_reader);
    assert_eq!(read["syscall"], "read", "{read}");
    // pipe_read, anon_pipe_read since Linux 6.16.
    let site = read["wait_site"].as_str().unwrap();
    assert!(site.contains("pipe_read <- vfs_read"), "{read}");
    assert_eq!(read["fd"], 0, "{read}");
    assert!(read["target"].as_str().unwrap().starts_with("pipe:["), "{read}");
    // The other end: the sleeping writer (and the shell, which may still hold it).
    let other_end: Vec<&str> = read["other_end"]
        .as_array()
        .unwrap()
        .iter()
        .map(|holder| holder.as_str().unwrap())
        .collect();
    assert!(other_end.iter().any(|holder| holder.ends_with(" sleep")), "{read}");

    let sleep = hang_of(&report, sleep_pid);
    assert_eq!(sleep["syscall"], "clock_nanosleep", "{sleep}");
    assert!(
        sleep["wait_site"].as_str().unwrap().starts_with("hrtimer_nanosleep"),
        "{sleep}"
    );
    assert_eq!(sleep["io_wait"], false, "{sleep}");

    // The text report lists them too.
    let text = run(&["report", "--duration", "1", "--pid", &fifo_pid.to_string()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Inside one call for more than"), "{text}");
    assert!(text.contains("waiting in wait_for_partner"), "{text}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_hang_at_the_start_is_listed_even_if_it_returns_during_the_report() {
    // On the first CPU and the last: how long a thread has been off the CPU is read on the
    // clock of the CPU it last ran on (the CPUs' scheduler clocks can be seconds apart).
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let spawned = std::time::Instant::now();
    let returns = Killed(Command::new("taskset").args(["-c", "0", "sleep", "3"]).spawn().unwrap());
    let stays = Killed(
        Command::new("taskset")
            .args(["-c", &last_cpu.to_string(), "sleep", "1000"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (returns_pid, stays_pid) = (returns.0.id(), stays.0.id());
    let report = report_json(&[
        "--duration",
        "4",
        "--hang-threshold",
        "0.3",
        "--pid",
        &returns_pid.to_string(),
        "--pid",
        &stays_pid.to_string(),
    ]);
    // Read at the start, while it slept: time off the CPU then, where it slept.
    let returned: Vec<&Value> = report["returned"].as_array().unwrap().iter().collect();
    assert_eq!(returned.len(), 1, "{}", report["returned"]);
    let hang = returned[0];
    assert_eq!(hang["pid"], returns_pid, "{hang}");
    assert_eq!(hang["syscall"], "clock_nanosleep", "{hang}");
    assert!(u64_of(hang, "elapsed_ns") >= 300_000_000, "{hang}");
    assert!(u64_of(hang, "elapsed_ns") < 3_000_000_000, "{hang}");
    assert!(
        hang["wait_site"].as_str().unwrap().starts_with("hrtimer_nanosleep"),
        "{hang}"
    );
    assert!(report["in_flight"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["pid"] != returns_pid));
    // Still asleep at the end: the report's 4 s and its sleep before the start.
    let stays = hang_of(&report, stays_pid);
    assert!(u64_of(stays, "elapsed_ns") >= 4_300_000_000, "{stays}");
    let lived_ns = spawned.elapsed().as_nanos() as u64;
    assert!(
        u64_of(stays, "elapsed_ns") <= lived_ns,
        "{stays}: not longer than it lived, {lived_ns} ns"
    );

    let text = run(&[
        "report",
        "--duration",
        "0.5",
        "--hang-threshold",
        "0.3",
        "--pid",
        &stays_pid.to_string(),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Inside one call for more than 300 ms at the end"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn report_exits_with_the_commands_exit_code_and_says_where_it_ran() {
    let exited = run(&["report", "--format", "json", "--", "sh", "-c", "exit 3"]);
    assert_eq!(exited.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&exited.stdout).unwrap();
    assert_eq!(report["command_exit_code"], 3);
    assert!(report.get("command_signal").is_none(), "{report}");

    let killed = run(&["report", "--format", "json", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.status.code(), Some(128 + 9), "{:?}", killed.status.signal());
    let report: Value = serde_json::from_slice(&killed.stdout).unwrap();
    assert_eq!(report["command_exit_code"], 137);
    assert_eq!(report["command_signal"], "SIGKILL");
    let text = run(&["report", "--", "sh", "-c", "kill -9 $$"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("command killed by SIGKILL (exit code 137)"));

    // Where and when.
    let host = &report["host"];
    let release = String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap();
    assert_eq!(host["kernel_release"], release.trim());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(host["boot_id"], boot_id.trim());
    assert!(!host["hostname"].as_str().unwrap().is_empty(), "{host}");
    assert!(!host["cpu_model"].as_str().unwrap().is_empty(), "{host}");
    let time = host["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert_eq!(host["command_line"][1], "report", "{host}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn waits_by_design_are_not_the_headline() {
    // A shell waiting for its child, which sleeps a little and then works: the shell's wait4
    // and the sleep are the most time, the work is what the report puts first.
    let script = format!("sleep 0.3; {WORKLOAD} getppid 200000; exit 0");
    let report = report_json(&["--", "sh", "-c", &script]);
    let processes = report["processes"].as_array().unwrap();
    let first = &processes[0];
    assert!(
        first["comm"].as_str().unwrap().starts_with("profiler-work"),
        "{}",
        processes
            .iter()
            .map(|p| p["comm"].to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let shell = processes.iter().find(|p| p["comm"] == "sh").expect("the shell");
    let wait4 = syscall(shell, "wait4", NATIVE).expect("the shell's wait4");
    assert_eq!(wait4["class"], "child-wait", "{wait4}");
    assert!(
        u64_of(shell, "total_ns") > u64_of(first, "total_ns"),
        "the shell waited longer"
    );
    assert!(u64_of(shell, "active_ns") < u64_of(shell, "total_ns"), "{shell}");
    let sleep = processes.iter().find(|p| p["comm"] == "sleep").expect("sleep");
    let nanosleep = syscall(sleep, "clock_nanosleep", NATIVE).expect("clock_nanosleep");
    assert_eq!(nanosleep["class"], "sleep", "{nanosleep}");
    // Ranked by total time on request: the waiting shell first.
    let by_total = report_json(&["--sort", "total", "--", "sh", "-c", &script]);
    assert_eq!(by_total["processes"][0]["comm"], "sh", "{by_total}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn pid_with_children_follows_what_it_starts() {
    for children in [true, false] {
        use std::io::Write;
        // A shell that starts the workload once told to: after profiling has begun.
        let mut shell = Command::new("sh")
            .args(["-c", &format!("read go; {WORKLOAD} getppid 777; exit 0")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = shell.id().to_string();
        let mut args = vec!["--duration", "20", "--pid", &pid];
        if children {
            args.push("--children");
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let profiler = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            report_json(&args)
        });
        // Loading and calibrating take about a second.
        std::thread::sleep(Duration::from_secs(3));
        shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(shell.wait().unwrap().success());
        // The report ends when its pid has exited.
        let report = profiler.join().unwrap();
        let workload = report["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["comm"].as_str().unwrap().starts_with("profiler-work"));
        match (children, workload) {
            (true, Some(workload)) => {
                let getppid = syscall(workload, "getppid", NATIVE).expect("getppid row");
                assert_eq!(u64_of(getppid, "calls"), 777);
            }
            (false, None) => {}
            (_, workload) => panic!("--children {children}: workload {workload:?}"),
        }
    }
}

/// The wait sites of a workload process's `syscall` row.
fn sites_of<'a>(report: &'a Value, syscall_name: &str) -> Vec<&'a Value> {
    let row = syscall(only_workload(report), syscall_name, NATIVE).unwrap_or_else(|| panic!("no {syscall_name} row"));
    row["wait_sites"].as_array().unwrap().iter().collect()
}

/// A sleep ends by a timer interrupt, which runs in whatever task it finds on the CPU: with
/// a spinner on every CPU (in user mode), that is a spinner, which did not wake anyone. The
/// waker of a call woken from an interrupt is "interrupt or idle" (pid 0).
#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_timer_is_not_named_after_the_process_it_interrupted() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spinners: Vec<Killed> = (0..cpus)
        .map(|_| Killed(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap()))
        .collect();
    let spinner_pids: Vec<u32> = spinners.iter().map(|spinner| spinner.0.id()).collect();
    let report = profile_workload(&["sleep", "40", "20"]);
    drop(spinners);
    let sites = sites_of(&report, "nanosleep");
    let calls: u64 = sites.iter().map(|site| u64_of(site, "calls")).sum();
    assert!(calls > 0, "nanosleep's wait sites recorded: {sites:?}");
    for site in &sites {
        for waker in site["wakers"].as_array().unwrap() {
            let pid = waker["pid"].as_u64().unwrap() as u32;
            assert!(!spinner_pids.contains(&pid), "a spinner named as the waker: {site}");
        }
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn blocked_calls_are_named_by_where_they_slept() {
    let rounds = 10u64;
    let dir = std::env::current_dir().unwrap(); // a disk: fdatasync waits for it
    let report = profile_workload(&["waits", &rounds.to_string(), dir.to_str().unwrap()]);
    let site_text = |sites: &[&Value]| sites.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n");

    // A pipe read waiting for its writer: pipe_read (anon_pipe_read since Linux 6.16).
    let reads = sites_of(&report, "read");
    let pipe = reads
        .iter()
        .find(|site| site["site"].as_str().unwrap().contains("pipe_read <- vfs_read"))
        .unwrap_or_else(|| panic!("no pipe_read site:\n{}", site_text(&reads)));
    assert_eq!(u64_of(pipe, "calls"), rounds, "{pipe}");
    // Each read waited about the writer's 20 ms.
    let blocked = u64_of(pipe, "blocked_ns");
    assert!(blocked >= rounds * 15_000_000, "{pipe}");
    assert_eq!(pipe["io_wait"], false);
    // Woken, every time, by the writer: a process of its own.
    let writer = &pipe["wakers"][0];
    assert_eq!(writer["name"], "pipe-writer", "{pipe}");
    assert_eq!(u64_of(writer, "calls"), rounds, "{pipe}");

    // A mutex held by another thread: the futex wait queue.
    let futexes = sites_of(&report, "futex");
    let lock = futexes
        .iter()
        .find(|site| {
            site["site"].as_str().unwrap().contains("futex_wait") && u64_of(site, "blocked_ns") >= rounds * 10_000_000
        })
        .unwrap_or_else(|| panic!("no futex_wait site:\n{}", site_text(&futexes)));
    // Woken by the thread that held the lock: the workload's own process.
    let workload_pid = only_workload(&report)["pid"].clone();
    assert_eq!(lock["wakers"][0]["pid"], workload_pid, "{lock}");

    // fdatasync waits for the disk (the journal, or the data's writeback).
    let syncs = sites_of(&report, "fdatasync");
    assert!(!syncs.is_empty(), "fdatasync slept somewhere");
    assert!(
        syncs
            .iter()
            .all(|site| site["site"] != "unknown" && !site["site"].as_str().unwrap().is_empty()),
        "{}",
        site_text(&syncs)
    );
    assert_eq!(report["wait_sites_lost"], 0);

    // What they waited on: the pipe (by the inode the kernel side saw; the writer had gone
    // by the end), and the file being synced, by its path (read while the workload lived).
    let workload = only_workload(&report);
    let read_on = &syscall(workload, "read", NATIVE).unwrap()["waited_on"];
    let pipe_file = read_on
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["target"].as_str().unwrap().starts_with("pipe:["))
        .unwrap_or_else(|| panic!("no pipe in {read_on}"));
    assert_eq!(u64_of(pipe_file, "calls"), rounds, "{pipe_file}");
    assert!(u64_of(pipe_file, "blocked_ns") >= rounds * 15_000_000, "{pipe_file}");
    let synced = &syscall(workload, "fdatasync", NATIVE).unwrap()["waited_on"][0];
    let path = dir.join(format!("waits-{}", workload["pid"]));
    assert_eq!(synced["target"], path.to_str().unwrap(), "{synced}");
    assert!(u64_of(synced, "fd") > 2, "{synced}");

    // The text report shows them under their rows.
    let text = run(&["report", "--", WORKLOAD, "waits", "3", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("waits in ") && text.contains("pipe_read <- vfs_read"),
        "{text}"
    );
    assert!(text.contains(" pipe-writer (3)"), "{text}");
    assert!(text.contains(" on fd ") && text.contains(" pipe:["), "{text}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn rows_by_name_or_cgroup_add_their_processes_up() {
    // A shell loop running the workload five times: one row, not five.
    let script = format!("for i in 1 2 3 4 5; do {WORKLOAD} getppid 100; done; exit 0");
    let report = report_json(&["--group-by", "comm", "--", "sh", "-c", &script]);
    let processes = report["processes"].as_array().unwrap();
    let workloads: Vec<&Value> = processes
        .iter()
        .filter(|p| p["comm"].as_str().unwrap().starts_with("profiler-work"))
        .collect();
    assert_eq!(workloads.len(), 1, "{report}");
    let workload = workloads[0];
    assert_eq!(workload["pids"].as_array().unwrap().len(), 5, "{workload}");
    let getppid = syscall(workload, "getppid", NATIVE).expect("getppid row");
    assert_eq!(u64_of(getppid, "calls"), 500);
    let text = run(&["report", "--group-by", "comm", "--", "sh", "-c", &script]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("profiler-worklo (5 processes)"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // By cgroup: the workload runs in the test's own cgroup.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .expect("cgroup v2");
    let report = report_json(&["--group-by", "cgroup", "--", WORKLOAD, "getppid", "321"]);
    let row = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"] == path)
        .unwrap_or_else(|| panic!("no row for {path}: {report}"));
    assert_eq!(u64_of(syscall(row, "getppid", NATIVE).unwrap(), "calls"), 321);
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn rows_by_container_are_named_from_the_runtimes_state() {
    let container = FakeContainer::docker("web-test");
    let host_root = container.host_root.to_str().unwrap();
    for (group_by, name) in [
        ("container", "docker:web-test".to_owned()),
        ("cgroup", container.cgroup_path()),
    ] {
        let report = report_json(&[
            "--group-by",
            group_by,
            "--host-root",
            host_root,
            "--",
            "sh",
            "-c",
            &container.run(&format!("{WORKLOAD} getppid 321")),
        ]);
        let row = report["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["comm"] == name.as_str())
            .unwrap_or_else(|| panic!("no row for {name}: {report}"));
        assert!(
            u64_of(syscall(row, "getppid", NATIVE).unwrap(), "calls") >= 321,
            "{row}"
        );
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn threads_get_rows_of_their_own() {
    let report = report_json(&["--threads", "--", WORKLOAD, "named-threads", "1000"]);
    let workload = only_workload(&report);
    let threads = workload["threads"].as_array().expect("threads listed");
    let thread = |name: &str| {
        threads
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no thread {name}: {threads:?}"))
    };
    let row = |thread: &Value, syscall: &str| {
        thread["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == syscall)
            .cloned()
            .unwrap_or_else(|| panic!("no {syscall} in {thread}"))
    };
    // Exact counts per thread: the process's rows split between them.
    let getter = thread("getter");
    assert_eq!(u64_of(&row(getter, "getppid"), "calls"), 1000);
    let opener = thread("opener");
    let openat = row(opener, "openat");
    assert_eq!((u64_of(&openat, "calls"), u64_of(&openat, "errors")), (1000, 1000));
    let process_getppid = syscall(workload, "getppid", NATIVE).unwrap();
    assert_eq!(u64_of(process_getppid, "calls"), 1000, "no other thread called it");
    // Time asleep is the sleeper's: its five 20 ms sleeps.
    let sleeper = thread("sleeper");
    let nanosleep = row(sleeper, "nanosleep");
    assert_eq!(u64_of(&nanosleep, "calls"), 5);
    assert!(u64_of(&nanosleep, "blocked_ns") >= 95_000_000, "{nanosleep}");
    // Not the getter's calls; its thread's start and exit may sleep (under CPU emulation in
    // the kernel matrix: 17.6 ms in `exit`, 2.9 ms in `munmap`, which failed this now and then).
    assert!(u64_of(&row(getter, "getppid"), "blocked_ns") < 10_000_000, "{getter}");
    assert!(u64_of(sleeper, "total_ns") > u64_of(getter, "total_ns"), "{threads:?}");
    assert_eq!(report["threads_lost"], 0);

    let text = run(&["report", "--threads", "--", WORKLOAD, "named-threads", "100"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("threads (4):"), "{text}");
    assert!(text.contains(" sleeper ") && text.contains("nanosleep"), "{text}");
}

/// The per-thread table is read in batches of a few thousand entries (`kernel/batch.rs`):
/// 2,000 threads' rows (several each) take several, and none is missed or read twice.
#[test]
#[ignore = "needs root"]
fn thousands_of_threads_all_get_their_rows() {
    const THREADS: usize = 2_000;
    // Its timing line out of the way of the JSON.
    let command = format!("exec {WORKLOAD} time-getppid-threads 7 {THREADS} > /dev/null");
    let report = report_json(&["--threads", "--", "sh", "-c", &command]);
    let workload = only_workload(&report);
    let threads = workload["threads"].as_array().expect("threads listed");
    let getppid_calls: Vec<u64> = threads
        .iter()
        .filter_map(|thread| {
            let rows = thread["syscalls"].as_array()?;
            let getppid = rows.iter().find(|row| row["name"] == "getppid")?;
            Some(u64_of(getppid, "calls"))
        })
        .collect();
    // Each worker thread 7; the main thread's warm-up none (7 / 10), but `sh` asked for its
    // parent before it exec'd the workload.
    let workers = getppid_calls.iter().filter(|&&calls| calls == 7).count();
    assert_eq!(workers, THREADS, "{getppid_calls:?}");
    let process_getppid = syscall(workload, "getppid", NATIVE).unwrap();
    let all: u64 = getppid_calls.iter().sum();
    assert_eq!(
        all,
        u64_of(process_getppid, "calls"),
        "the thread rows add up to the process's"
    );
    let rows: usize = threads
        .iter()
        .map(|t| t["syscalls"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(rows > 4_096, "rows enough for several batches: {rows}");
    assert_eq!(report["threads_lost"], 0);
}
