//! The time split checked against oracles that do not come from the profiler, on a machine
//! with a spinner on every CPU: the caller's own clock around each call (vDSO, no syscall)
//! and its run delay from `/proc/thread-self/schedstat`.
mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// Relative difference of a measured figure from its oracle.
fn off_by(measured: u64, oracle: u64) -> f64 {
    (measured as f64 - oracle as f64).abs() / oracle.max(1) as f64
}

/// `report` of `profiler-workload MODE CALLS OUT`, and the workload's own oracle figures it
/// wrote to OUT.
fn profile_with_oracle(mode: &str, calls: u64) -> (Value, Value) {
    let out = std::env::temp_dir().join(format!("{mode}-{}.json", std::process::id()));
    let report = profile_workload(&[mode, &calls.to_string(), out.to_str().unwrap()]);
    let oracle = serde_json::from_str(&std::fs::read_to_string(&out).expect("oracle file")).unwrap();
    std::fs::remove_file(&out).ok();
    (report, oracle)
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_wait_for_a_cpu_on_the_way_out_of_a_call_is_its_runqueue_time() {
    // Each write wakes a SCHED_FIFO reader on the writer's CPU, which runs 1 ms: the kernel
    // switches to it after sys_exit, on the writer's way back to user mode.
    let writes = 300u64;
    let (report, oracle) = profile_with_oracle("exit-wait", writes);
    let (wall_ns, run_delay_ns) = (u64_of(&oracle, "wall_ns"), u64_of(&oracle, "run_delay_ns"));
    // The setup works: the writer waited about 1 ms per write, nearly all of it for a CPU.
    assert!(run_delay_ns > writes * 800_000, "oracle {oracle}");
    let write = syscall(only_workload(&report), "write", NATIVE)
        .expect("write row")
        .clone();
    assert_eq!(u64_of(&write, "calls"), writes);
    let runqueue_ns = u64_of(&write, "runqueue_ns");
    assert!(
        off_by(runqueue_ns, run_delay_ns) <= 0.10,
        "runqueue {runqueue_ns} ns, the writer's run delay {run_delay_ns} ns: {write}"
    );
    let total_ns = u64_of(&write, "total_ns");
    assert!(
        off_by(total_ns, wall_ns) <= 0.10,
        "total {total_ns} ns, the writer's clock {wall_ns} ns: {write}"
    );
    assert_eq!(write["class"], "cpu-contention", "{write}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_read_loop_sharing_its_cpu_with_a_spinner_waits_on_its_way_out() {
    // The tick preempts the reader wherever it is, and it is in a 64 KiB read most of the
    // time; on a kernel without in-kernel preemption, a tick during a read takes effect
    // after sys_exit. About a second, so some hundred waits of a time slice each.
    let reads = 200_000u64;
    let (report, oracle) = profile_with_oracle("read-spin", reads);
    let wall_ns = u64_of(&oracle, "wall_ns");
    let read = syscall(only_workload(&report), "read", NATIVE)
        .expect("read row")
        .clone();
    // And a few of the runtime's own (counting CPUs reads cgroup files).
    assert!((reads..reads + 64).contains(&u64_of(&read, "calls")), "{read}");
    let (total_ns, runqueue_ns) = (u64_of(&read, "total_ns"), u64_of(&read, "runqueue_ns"));
    // The reader's clock also holds the clock reads around each call, and the waits that
    // land between them and the call: a little more than the calls themselves.
    assert!(
        total_ns <= wall_ns + wall_ns / 20 && total_ns * 10 >= wall_ns * 8,
        "total {total_ns} ns, the reader's clock {wall_ns} ns: {read}"
    );
    // Nearly all of the loop's run delay is in its reads (before the way out was timed,
    // runqueue was 0 here). Not all: a preemption in user mode, or on the kernel's way in
    // before sys_enter, is no call's wait. 24 runs of three builds here: 85-97% of the run
    // delay, median 90% (the bound was 15%, and failed now and then).
    let run_delay_ns = u64_of(&oracle, "run_delay_ns");
    assert!(
        off_by(runqueue_ns, run_delay_ns) <= 0.20,
        "runqueue {runqueue_ns} ns, the loop's run delay {run_delay_ns} ns: {read}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_sampled_outlier_never_pushes_a_row_past_its_threads_wall_time() {
    // A reader inside a read nearly all the time, 1 read in 16 a long one: the sampling
    // (1 in 16, at random) weights each long read it picks 16 times, and the estimate for a
    // read interval often comes out above the interval (by 8% over a whole run before the
    // bound). No spinner: the long reads stay on the CPU, which is what sampling extrapolates.
    let mut cut_ns = 0;
    for run in 0..16 {
        // Four runs at least; up to sixteen until the bound acted (see below).
        if run >= 4 && cut_ns > 0 {
            break;
        }
        let (report, oracle) = profile_with_oracle("heavy-tail", 4000);
        let wall_ns = u64_of(&oracle, "wall_ns");
        let read = syscall(only_workload(&report), "read", NATIVE)
            .expect("read row")
            .clone();
        let total_ns = u64_of(&read, "total_ns");
        // At most the reader's own clock (and the boundary cost charged on top); and the
        // estimate is still that: not cut far below it.
        assert!(
            total_ns <= wall_ns + wall_ns / 50 && total_ns * 4 >= wall_ns * 3,
            "total {total_ns} ns, the reader's clock {wall_ns} ns: {read}"
        );
        cut_ns += u64_of(&read, "sampling_cut_ns");
    }
    // The bound did act. Not in every run: report reads every 5 s, a run of ~2 s is one read
    // interval, and its estimate went past the bound in 4 of 12 runs here (none in four runs
    // failed a full test run). None in sixteen: 0.2% of the time.
    assert!(cut_ns > 0, "no sampled estimate went past its bound in sixteen runs");
}

/// The boundary cost `syscall-profiler calibrate` prints, and its ±.
fn calibrated_boundary() -> (f64, f64) {
    let output = run(&["calibrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text.lines().next().unwrap_or_default();
    let figures: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| word.parse().ok())
        .collect();
    assert!(line.starts_with("boundary cost: ") && figures.len() == 2, "{text}");
    (figures[0], figures[1])
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_boundary_cost_holds_still_on_a_busy_machine() {
    let quiet: Vec<(f64, f64)> = (0..3).map(|_| calibrated_boundary()).collect();
    let spinners = spinner_on_every_cpu();
    let busy: Vec<(f64, f64)> = (0..3).map(|_| calibrated_boundary()).collect();
    drop(spinners);
    let all: Vec<f64> = quiet.iter().chain(&busy).map(|(boundary, _)| *boundary).collect();
    let (low, high) = all.iter().fold((f64::MAX, 0f64), |(lo, hi), &b| (lo.min(b), hi.max(b)));
    // It swung 3x between runs before (483-1484 ns), and 2000 ns under load. Quiet runs
    // alone spread 1.23x on the AMD machine (nested KVM, BENCHMARKS.md): 145-179 ns; and
    // 1.34x (116.6-156.5) in another run, which failed a 1.35x bound. That machine flips
    // between two speeds every second or so, with nothing of ours loaded (a getppid takes
    // 165 or 210 ns), and its boundary cost with them (~115 and ~170 ns, 1.4x apart): each
    // calibration (~0.25 s a CPU) catches one, or the faster where it sees both.
    assert!(low > 0.0 && high <= low * 1.75, "quiet {quiet:?}, busy {busy:?}");
    // Its ± up to 16% there (155-179 ns, quiet), under 10% on the Intel machine.
    for (boundary, spread) in quiet.iter().chain(&busy) {
        assert!(*spread <= boundary * 0.2, "quiet {quiet:?}, busy {busy:?}");
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_boundary_cost_is_measured_beside_hundreds_of_busy_processes() {
    if !timing_is_real() {
        return;
    }
    // The quiet figure as the median of three: one calibration alone varies (129.7 ns once
    // where 150-180 is usual on the AMD machine, and a busy 196 came out 1.51x of it).
    let mut quiet_runs: Vec<f64> = (0..3).map(|_| calibrated_boundary().0).collect();
    quiet_runs.sort_by(f64::total_cmp);
    let quiet = quiet_runs[1];
    // In the agent's own scheduling group (children of this test, as a load started from the
    // same session), each waking 100 times a second (the bench's busy processes), at nice
    // -20 like the agent's start-up: at normal priority most calibration batches were
    // preempted beside 500 a CPU, three attempts came out too busy, and start-up took
    // minutes. At nice 0 they preempt a nice -20 calibration less once all are started
    // (32-39 of 72 batches clean: enough, no real-time priority needed; it came out that
    // way in 2 runs of 3 here); during their thousand execs, more. (At 100 a CPU, 28-38 of
    // 72 were clean. CPU-bound spinners preempt far less.)
    let busy = busy_processes(500);
    let output = run(&["calibrate"]);
    let report = report_json(&["--duration", "1"]);
    drop(busy);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Each CPU's row: CPU, clean/all batches, figures.
    let batches: Vec<(u32, u32)> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.next()?.parse::<u32>().ok()?;
            let (clean, all) = words.next()?.split_once('/')?;
            Some((clean.parse().ok()?, all.parse().ok()?))
        })
        .collect();
    assert_eq!(batches.len(), cpus(), "{text}");
    // Only a real-time task or an interrupt storm preempts them now.
    for (clean, all) in &batches {
        assert!(*clean as f64 >= *all as f64 * 0.8, "{text}");
    }
    assert!(text.contains("ran at real-time priority"), "{text}");
    let startup_s = u64_of(&report["agent_cost"], "startup_ns") as f64 / 1e9;
    let profiling_s = u64_of(&report["agent_cost"], "profiling_ns") as f64 / 1e9;
    eprintln!(
        "beside {} busy processes: start-up {startup_s:.1} s, a report of 1 s profiled {profiling_s:.1} s",
        500 * cpus()
    );
    assert_eq!(report["boundary_source"], "calibrated", "{:#}", report["agent_cost"]);
    let boundary = report["boundary_ns_per_call"].as_f64().unwrap();
    // Within 1.75x: the AMD machine flips between two speeds every second or so, loaded or
    // not, and its boundary cost with them (~115 and ~170 ns, 1.4x apart; see
    // `serve_refreshes_the_boundary_cost_under_load_and_loses_no_call_to_it`); a quiet 142
    // and a busy 90 failed a 1.5x bound. The swings this guards against were 3x and more.
    assert!(
        boundary > quiet / 1.75 && boundary < quiet * 1.75,
        "busy {boundary}, quiet {quiet}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_command_does_not_inherit_the_agents_start_up_priority() {
    let out = std::env::temp_dir().join(format!("priority-{}.json", std::process::id()));
    // Fields 19 and 41 of /proc/PID/stat: the nice value and the scheduling policy (0: normal).
    let output = run(&[
        "report",
        "-o",
        out.to_str().unwrap(),
        "--",
        "awk",
        "{ print \"nice\", $19, \"policy\", $41 }",
        "/proc/self/stat",
    ]);
    std::fs::remove_file(&out).ok();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "nice 0 policy 0");
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A spinner on every CPU (a shell loop: no syscalls of its own).
fn spinner_on_every_cpu() -> AllKilled {
    let spinners = (0..cpus()).map(|_| {
        std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap()
    });
    AllKilled(spinners.collect())
}

/// Processes all killed (then reaped) when dropped: one by one took 20 s with hundreds of
/// them busy, each waiting for a CPU to die on.
struct AllKilled(Vec<std::process::Child>);

impl Drop for AllKilled {
    fn drop(&mut self) {
        for spinner in &mut self.0 {
            let _ = spinner.kill();
        }
        for spinner in &mut self.0 {
            let _ = spinner.wait();
        }
    }
}

/// `per_cpu` busy processes on every CPU (`profiler-workload busy`: a few syscalls, then 10 ms
/// asleep, over and over), at nice -20. Each waits on its input until all are started:
/// starting a thousand while the first ones run took a shell ~70 s.
fn busy_processes(per_cpu: usize) -> AllKilled {
    let command = format!("read -r go; exec nice -n -20 {WORKLOAD} busy 300");
    let mut busy: Vec<std::process::Child> = (0..per_cpu * cpus())
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", &command])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for process in &mut busy {
        drop(process.stdin.take()); // end of input: go
    }
    // Busy, not still starting: a calibration during the thousand execs came out at normal
    // priority with half its batches clean, beside a load that was not yet there.
    let pids: Vec<u32> = busy.iter().map(std::process::Child::id).collect();
    let busy = AllKilled(busy);
    wait_for("the busy processes to start", Duration::from_secs(60), || {
        pids.iter()
            .all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.starts_with("profiler-work"))
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    busy
}

/// The value of `series` (name and labels, as exposed) in a text exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn serve_refreshes_the_boundary_cost_under_load_and_loses_no_call_to_it() {
    const BOUNDARY: &str = "syscall_profiler_boundary_seconds";
    const MOVED: &str = r#"syscall_profiler_boundary_refreshes_total{result="moved"}"#;
    const TOO_BUSY: &str = r#"syscall_profiler_boundary_refreshes_total{result="too-busy"}"#;
    const GETPPID: &str = r#"syscall_profiler_calls_total{syscall="getppid",abi="x86_64"}"#;
    let port = free_port();
    // Every syscall with a series of its own: with the default 12, getppid had to outrank by
    // time the machine's other calls (blocking waits among them) to get one, and whether it
    // did depended on what else ran.
    let _serve = spawn_serve(
        port,
        &[
            "--boundary-refresh",
            "1",
            "--group-by",
            "none",
            "--top-syscalls",
            "1000",
        ],
    );
    let scrape = || http(port, "GET", "/metrics", None).map(|(_, response)| body_of(&response).to_owned());
    let first = wait_for("serve's first snapshot", Duration::from_secs(30), || {
        scrape().filter(|body| sample(body, BOUNDARY).is_some_and(|boundary| boundary > 0.0))
    });
    let calibrated = sample(&first, BOUNDARY).unwrap();
    let getppid = |calls: u32| {
        let made = std::process::Command::new(WORKLOAD)
            .args(["getppid", &calls.to_string()])
            .status()
            .unwrap();
        assert!(made.success());
    };
    // A syscall gets a series of its own at its first read; then its count settles.
    wait_for("a getppid series", Duration::from_secs(30), || {
        getppid(1000);
        scrape().and_then(|body| sample(&body, GETPPID))
    });
    let getppid_before = wait_for("the getppid count to settle", Duration::from_secs(10), || {
        let before = scrape().and_then(|body| sample(&body, GETPPID))?;
        std::thread::sleep(Duration::from_millis(1500));
        scrape()
            .and_then(|body| sample(&body, GETPPID))
            .filter(|&after| after == before)
    });
    let spinners = spinner_on_every_cpu();
    // Exactly counted calls made while the agent measures itself again and again.
    let (runs, calls_per_run) = (8u32, 25_000u32);
    let mut figures = Vec::new();
    for _ in 0..runs {
        getppid(calls_per_run);
        std::thread::sleep(Duration::from_millis(600));
        figures.extend(scrape().and_then(|body| sample(&body, BOUNDARY)));
    }
    let last = wait_for("five refreshes under load", Duration::from_secs(30), || {
        scrape().filter(|body| sample(body, MOVED).unwrap_or(0.0) + sample(body, TOO_BUSY).unwrap_or(0.0) >= 5.0)
    });
    drop(spinners);
    let moved = sample(&last, MOVED).unwrap();
    assert!(moved >= 3.0, "most refreshes measured under load:\n{last}");
    // Every call counted (shells elsewhere on the machine may add a few getppid).
    let expected = getppid_before + f64::from(runs * calls_per_run);
    let counted = wait_for("the workload's calls", Duration::from_secs(15), || {
        scrape()
            .and_then(|body| sample(&body, GETPPID))
            .filter(|&n| n >= expected)
    });
    assert!(
        counted <= expected + 100.0,
        "{counted} getppid counted, {expected} made"
    );
    // The figure stays near where the calibration put it (it swung 3x between runs before),
    // and the refreshes under load agree with each other. Not closer than 2x: this machine
    // (AMD, nested KVM) flips between two speeds every second or so, loaded or not (a
    // detached getppid takes 165 or 210 ns), and its boundary cost with them (~115 or ~170
    // ns): a calibration and a refresh can each catch either. A CPU is charged the median of
    // its last five refreshes, which keeps the figure from flipping at every refresh, not
    // from following the machine. Before the refresh took the machine's speed into account,
    // single refreshes came out at 43 and at 211 ns in one run, and failed here at 2.15x.
    figures.sort_by(f64::total_cmp);
    for figure in &figures {
        assert!(
            (figure / calibrated).max(calibrated / figure) <= 2.0,
            "calibrated {calibrated}, refreshed {figures:?}"
        );
    }
    // Among the refreshed figures: a scrape before the first refresh under load still shows
    // the quiet calibration, which the bounds above compare.
    let refreshed: Vec<f64> = figures.iter().copied().filter(|&figure| figure != calibrated).collect();
    assert!(!refreshed.is_empty(), "no refreshed figure scraped: {figures:?}");
    let (lowest, highest) = (refreshed[0], refreshed[refreshed.len() - 1]);
    assert!(
        highest / lowest <= 2.0,
        "the refreshes under load disagree: calibrated {calibrated}, refreshed {figures:?}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_pinned_boundary_cost_is_charged_as_given() {
    let report = report_json(&["--boundary-ns", "123", "--", WORKLOAD, "getppid", "1000"]);
    assert_eq!(report["boundary_ns_per_call"], 123.0);
    assert_eq!(report["boundary_source"], "pinned");
    let getppid = syscall(only_workload(&report), "getppid", NATIVE).expect("getppid row");
    assert_eq!(u64_of(getppid, "calls"), 1000);
    assert_eq!(u64_of(getppid, "entry_ns"), 123_000);
    let refused = run(&["report", "--boundary-ns", "1e9", "--", "true"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--boundary-ns") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn processes_are_shown_under_their_current_names() {
    let report = profile_workload(&["renames", "11"]);
    let processes = report["processes"].as_array().expect("processes");
    let named = |prefix: &str| -> Vec<&Value> {
        processes
            .iter()
            .filter(|p| p["comm"].as_str().is_some_and(|c| c.starts_with(prefix)))
            .collect()
    };
    assert!(named("old-name-").is_empty(), "{report}");
    let renamed = named("new-name-");
    assert_eq!(renamed.len(), 11, "{report}");
    for process in renamed {
        // The calls made under the old name count for the process, whatever its name now.
        let getppid = syscall(process, "getppid", NATIVE).expect("getppid row");
        assert_eq!(u64_of(getppid, "calls"), 20, "{process}");
    }
}
