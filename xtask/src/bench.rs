//! `cargo xtask bench`: the profiler's costs, measured side by side in one run.
//!
//! - Null-syscall loop (getppid) under each configuration: nothing, empty programs on the two
//!   syscall tracepoints (the floor), syscall-profiler (every call timed, and as it runs by
//!   default), bpftrace's count and latency scripts, perf trace -s and strace -c.
//!   Configurations run round-robin, `--runs` times, so drift on a shared machine hits all of
//!   them alike; each run takes the best of 3 measurements (noise only ever adds time). The
//!   baseline, the floor and syscall-profiler's modes are switched by loaded
//!   `syscall-profiler attach control` processes (one per build and lane setting, loaded
//!   afresh every run) within milliseconds and interleaved measurement by measurement, in a
//!   new order each time: this machine's speed drifts by 20-30% over seconds, and ratios
//!   taken a second apart were mostly drift. The table shows medians over runs, of
//!   the values and of each run's own ratios. `--against REV` adds syscall-profiler as built
//!   from another revision, interleaved the same way: what a change bought.
//! - Context switches: two threads ping-ponging a byte over pipes, with and without.
//! - Per-program cost from the kernel's own run-time accounting: each build loaded in turn,
//!   `--runs` times; medians, and with `--against` the median of the per-run differences.
//! - The agent's CPU and memory while 1,000 busy processes run, polling every second.
//! - Kernel map memory at the default sizes (computed).
//!
//! Peers come from Debian's packages, installed here when missing; one that cannot run is
//! skipped with a note. Nothing here is part of CI's pass/fail.
use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{
    as_root, cargo_command,
    setup::{apt_install, have},
    step,
};

#[derive(Args)]
pub struct BenchArgs {
    /// Round-robin repetitions of every configuration.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// getppid calls per null-syscall measurement.
    #[arg(long, default_value_t = 300_000)]
    pub calls: u64,
    /// getppid calls per measurement under the ptrace-based tools (100x slower).
    #[arg(long, default_value_t = 5_000)]
    pub ptrace_calls: u64,
    /// Round trips per context-switch measurement.
    #[arg(long, default_value_t = 30_000)]
    pub rounds: u64,
    /// Busy processes for the agent measurement.
    #[arg(long, default_value_t = 1000)]
    pub processes: usize,
    /// Skip the peers (bpftrace, perf, strace).
    #[arg(long)]
    pub no_peers: bool,
    /// Also measure syscall-profiler as built from this git revision (as it runs by default),
    /// interleaved with the current build: what a change bought, free of the machine's drift.
    /// The revision needs `syscall-profiler attach control` (commit 41ac9eb or later).
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
}

const BPFTRACE_COUNT: &str = "tracepoint:raw_syscalls:sys_enter { @[pid, args->id] = count(); }";
const BPFTRACE_LATENCY: &str = "tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; } \
     tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[pid, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }";

/// Runs the workload with both ping-pong threads on CPU 0.
const ONE_CPU: &[&str] = &["taskset", "-c", "0"];

/// Sampling period syscall-profiler runs with by default (its `--sample`).
const DEFAULT_SAMPLE_EVERY: &str = "16";
/// The `attach control` state of syscall-profiler as it runs by default (`full` and
/// [`DEFAULT_SAMPLE_EVERY`]).
const DEFAULT_STATE: &str = "full 16";

/// How a configuration observes the workload.
#[derive(Clone, Copy)]
enum Observer {
    /// A state of a `syscall-profiler attach control` process loaded with this many
    /// statistics lanes: "nothing", "floor" or "full N" (N: the sampling period).
    Profiler {
        state: &'static str,
        lanes: &'static str,
        build: Build,
    },
    /// bpftrace running this script beside the workload.
    Bpftrace(&'static str),
    /// The workload runs under this command (`perf trace -s --`, `strace -c -o /dev/null`).
    Wrapper(&'static [&'static str]),
}

/// Which syscall-profiler binary a configuration runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Build {
    /// The working tree's.
    Current,
    /// The `--against` revision's.
    Against,
}

struct Config {
    name: &'static str,
    observer: Observer,
}

const CONFIGS: [Config; 9] = [
    Config {
        name: "nothing attached",
        observer: Observer::Profiler {
            state: "nothing",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "empty programs on sys_enter/sys_exit (floor)",
        observer: Observer::Profiler {
            state: "floor",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "syscall-profiler, every call timed (`--sample 1`)",
        observer: Observer::Profiler {
            state: "full 1",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "syscall-profiler as it runs by default (`--sample 16`)",
        observer: Observer::Profiler {
            state: DEFAULT_STATE,
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "the same with one statistics entry per (process, syscall), no CPU lanes",
        observer: Observer::Profiler {
            state: DEFAULT_STATE,
            lanes: "1",
            build: Build::Current,
        },
    },
    Config {
        name: "bpftrace: count per (pid, syscall)",
        observer: Observer::Bpftrace(BPFTRACE_COUNT),
    },
    Config {
        name: "bpftrace: latency histogram per (pid, syscall)",
        observer: Observer::Bpftrace(BPFTRACE_LATENCY),
    },
    Config {
        name: "perf trace -s",
        observer: Observer::Wrapper(&["perf", "trace", "-s", "-o", "/dev/null", "--"]),
    },
    Config {
        name: "strace -c",
        observer: Observer::Wrapper(&["strace", "-c", "-f", "-o", "/dev/null"]),
    },
];

/// Something running beside the workload while it is measured; stopped on drop.
struct Beside {
    child: Child,
    /// bpftrace stops on SIGINT; syscall-profiler attach when its stdin closes.
    interrupt: bool,
}

impl Beside {
    fn profiler(profiler: &Path, args: &[&str]) -> Result<Beside> {
        let mut child = as_root(profiler)
            .arg("attach")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscall-profiler attach")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
        if !line.starts_with("attached") {
            let _ = child.kill();
            bail!("syscall-profiler attach {args:?} did not attach");
        }
        Ok(Beside {
            child,
            interrupt: false,
        })
    }

    fn bpftrace(script: &str) -> Result<Beside> {
        let mut child = as_root(Path::new("bpftrace"))
            .args(["-e", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
        if !line.starts_with("Attaching") {
            let _ = child.kill();
            bail!("bpftrace did not attach");
        }
        thread::sleep(Duration::from_millis(500));
        Ok(Beside { child, interrupt: true })
    }

    /// Stops and returns what the observer printed after the workload.
    fn finish(mut self) -> String {
        self.stop();
        if self.interrupt {
            // bpftrace has been seen to miss a SIGINT that came right after it attached:
            // ask again, then insist.
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
                // SAFETY: plain kill(2) of our own child.
                unsafe { libc_kill(self.child.id() as i32, 2) };
            }
            let _ = self.child.kill();
        }
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        let _ = self.child.wait();
        out
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

impl Beside {
    fn stop(&mut self) {
        drop(self.child.stdin.take()); // EOF: syscall-profiler attach detaches and exits
        if self.interrupt {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc_kill(self.child.id() as i32, 2) };
        }
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        self.stop();
        let _ = self.child.wait();
    }
}

/// One loaded `syscall-profiler attach control`: switches between nothing attached, the
/// floor and the profiler's modes in milliseconds, without reloading.
struct Controller {
    child: Child,
    answers: BufReader<std::process::ChildStdout>,
}

impl Controller {
    fn start(profiler: &Path, lanes: &str) -> Result<Controller> {
        let mut child = as_root(profiler)
            .args(["attach", "control", "--stats-lanes", lanes])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscall-profiler attach control")?;
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line)?;
        if !line.starts_with("attached") {
            let _ = child.kill();
            bail!("syscall-profiler attach control did not start");
        }
        Ok(Controller { child, answers })
    }

    fn set(&mut self, state: &str) -> Result<()> {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{state}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.answers.read_line(&mut line)?;
        if line.trim() != "ok" {
            bail!("syscall-profiler attach control: {state}: {}", line.trim());
        }
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: detaches and exits
        let _ = self.child.wait();
    }
}

/// One run of the workload (under `wrapper`, if any): the value it prints.
fn measure_once(wrapper: &[&str], workload: &Path, args: &[&str]) -> Result<f64> {
    let mut command = match wrapper.split_first() {
        None => Command::new(workload),
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(workload);
            command
        }
    };
    let out = command
        .args(args)
        .stderr(Stdio::null())
        .output()
        .context("running the workload")?;
    if !out.status.success() {
        bail!("workload {args:?} under {wrapper:?} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("workload output")
}

/// One loaded `attach control` process per (build, lane setting) among `configs`.
fn start_controllers(
    configs: &[&Config],
    profiler: &Path,
    against: Option<&Path>,
) -> Result<std::collections::BTreeMap<(Build, &'static str), Controller>> {
    let mut controllers = std::collections::BTreeMap::new();
    for config in configs {
        if let Observer::Profiler { lanes, build, .. } = config.observer {
            if let std::collections::btree_map::Entry::Vacant(entry) = controllers.entry((build, lanes)) {
                let binary = match build {
                    Build::Current => profiler,
                    Build::Against => against.expect("built before"),
                };
                entry.insert(Controller::start(binary, lanes)?);
            }
        }
    }
    Ok(controllers)
}

/// Per-program mean run times of one build over several runs, from the lines
/// `syscall-profiler attach --run-stats` prints: `NAME RUNS runs NS ns/run`.
#[derive(Clone, Default)]
struct ProgramCosts {
    /// Program name, its run count in the last run, and its ns/run in each run.
    programs: Vec<(String, u64, Vec<f64>)>,
}

impl ProgramCosts {
    fn add_run(&mut self, printed: &str) {
        for line in printed.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [name, runs, "runs", ns, "ns/run"] = parts.as_slice() else {
                continue;
            };
            let (Ok(runs), Ok(ns)) = (runs.parse::<u64>(), ns.parse::<f64>()) else {
                continue;
            };
            match self.programs.iter_mut().find(|(known, ..)| known == name) {
                Some((_, last_runs, values)) => {
                    *last_runs = runs;
                    values.push(ns);
                }
                None => self.programs.push((name.to_string(), runs, vec![ns])),
            }
        }
    }

    fn medians(&self) -> Vec<(String, u64, f64)> {
        self.programs
            .iter()
            .filter_map(|(name, runs, values)| Some((name.clone(), *runs, median(values)?)))
            .collect()
    }

    /// ns/run of program `name`, one value per run.
    fn values(&self, name: &str) -> Option<&[f64]> {
        Some(&self.programs.iter().find(|(known, ..)| known == name)?.2)
    }

    fn median_of(&self, name: &str) -> Option<f64> {
        median(self.values(name)?)
    }

    /// Median over runs of (this build's ns/run - `other`'s ns/run in the same run).
    fn median_difference(&self, other: &ProgramCosts, name: &str) -> Option<f64> {
        let (ours, theirs) = (self.values(name)?, other.values(name)?);
        let differences: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a - b).collect();
        median(&differences)
    }
}

/// `0..len` in an order that depends on `seed` (Fisher-Yates with a xorshift generator:
/// reproducible, and no dependency for it).
fn shuffled(len: usize, seed: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9) | 1;
    for i in (1..len).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        order.swap(i, state as usize % (i + 1));
    }
    order
}

/// Best of 3 runs: noise on a shared machine only ever adds time.
fn measure(wrapper: &[&str], workload: &Path, args: &[&str]) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(measure_once(wrapper, workload, args)?);
    }
    Ok(best)
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Installs the peers from Debian's packages when missing; returns notes on what cannot run.
fn install_peers() -> Vec<String> {
    let wanted = [("bpftrace", "bpftrace"), ("perf", "linux-perf"), ("strace", "strace")];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        step(&format!("installing {} from Debian's packages", missing.join(", ")));
        // A peer that does not install is skipped with a note below, not fatal.
        let _ = apt_install(&missing);
    }
    // Classic tracepoints (bpftrace, perf trace) need tracefs.
    if !Path::new("/sys/kernel/tracing/events").exists() {
        step("mounting tracefs at /sys/kernel/tracing (bpftrace and perf trace use classic tracepoints)");
        let _ = as_root(Path::new("mount"))
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
    }
    wanted
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(tool, _)| format!("{tool}: not installed"))
        .collect()
}

struct Row {
    name: &'static str,
    null_ns: Vec<f64>,
    /// The null loop in 2 threads of one process at once.
    threads_ns: Vec<f64>,
    /// Ping-pong with the two threads free to run on any CPU (cross-CPU wakeups).
    switch_ns: Vec<f64>,
    /// Ping-pong with both threads on CPU 0: every round trip is two context switches.
    one_cpu_switch_ns: Vec<f64>,
    note: Option<String>,
}

/// Runs `run` with a peer observing (the profiler's own states are set by the controller).
fn observe<T>(config: &Config, run: impl FnOnce(&[&str]) -> Result<T>) -> Result<T> {
    match config.observer {
        Observer::Profiler { .. } => run(&[]),
        Observer::Bpftrace(script) => {
            let beside = Beside::bpftrace(script)?;
            let value = run(&[]);
            beside.finish();
            value
        }
        Observer::Wrapper(wrapper) => run(wrapper),
    }
}

/// Median over runs of `f(run's value, run's baseline, run's floor)`.
fn median_per_run(row: &[f64], base: &[f64], floor: &[f64], f: impl Fn(f64, f64, f64) -> f64) -> Option<f64> {
    let values: Vec<f64> = row
        .iter()
        .zip(base.iter().zip(floor))
        .map(|(&value, (&base, &floor))| f(value, base, floor))
        .collect();
    median(&values)
}

/// `path`: `PATH` with the tools setup installed (for building `--against`).
pub fn run(root: &Path, path: &OsString, args: &BenchArgs) -> Result<()> {
    let profiler = root.join("target/release/syscall-profiler");
    let workload = root.join("target/release/profiler-workload");
    let mut notes = if args.no_peers { Vec::new() } else { install_peers() };
    let calls = args.calls.to_string();
    let ptrace_calls = args.ptrace_calls.to_string();
    let rounds = args.rounds.to_string();
    let against = match &args.against {
        Some(rev) => Some(build_revision(root, path, rev)?),
        None => None,
    };
    let against_config = args.against.as_ref().map(|rev| Config {
        // Leaked: one short string for the life of the benchmark.
        name: Box::leak(format!("syscall-profiler at `{rev}`, as it ran by default").into_boxed_str()),
        observer: Observer::Profiler {
            state: DEFAULT_STATE,
            lanes: "8",
            build: Build::Against,
        },
    });
    let mut configs: Vec<&Config> = CONFIGS
        .iter()
        .filter(|c| !args.no_peers || matches!(c.observer, Observer::Profiler { .. }))
        .collect();
    if let Some(config) = &against_config {
        // Right below the current build's default row.
        let default_row = configs
            .iter()
            .position(|c| {
                matches!(
                    c.observer,
                    Observer::Profiler {
                        state: DEFAULT_STATE,
                        ..
                    }
                )
            })
            .expect("a default row");
        configs.insert(default_row + 1, config);
    }
    let mut rows: Vec<Row> = configs
        .iter()
        .map(|c| Row {
            name: c.name,
            null_ns: Vec::new(),
            threads_ns: Vec::new(),
            switch_ns: Vec::new(),
            one_cpu_switch_ns: Vec::new(),
            note: None,
        })
        .collect();
    let threads_args = ["time-getppid-threads", &calls, "2"];
    let ptrace_threads_args = ["time-getppid-threads", &ptrace_calls, "2"];
    for run in 0..args.runs {
        step(&format!(
            "null-syscall and ping-pong loops, run {}/{}",
            run + 1,
            args.runs
        ));
        // Loaded afresh every run: one load can be lucky or unlucky for as long as it stays
        // loaded (probably where its programs and maps land; once, the controller with lanes
        // off measured 100 ns/call below the default one through a whole benchmark, far more
        // than lanes cost), so a comparison needs many loads.
        let mut controllers = start_controllers(&configs, &profiler, against.as_deref())?;
        // The profiler's states, interleaved measurement by measurement; best of 3 each.
        let mut best = vec![[f64::INFINITY; 4]; configs.len()];
        for repetition in 0..3 {
            // A new order each time: in a fixed order each configuration follows the same
            // neighbour every time, and that neighbour's after-effects (or drift in step with
            // the order) land on it alone. A fixed order once put the default build at 1.86x
            // the floor, the next two runs, shuffled, at 1.55x and 1.60x.
            for index in shuffled(configs.len(), (run * 3 + repetition) as u32) {
                let (config, best) = (configs[index], &mut best[index]);
                let Observer::Profiler { state, lanes, build } = config.observer else {
                    continue;
                };
                for controller in controllers.values_mut() {
                    controller.set("nothing")?;
                }
                controllers
                    .get_mut(&(build, lanes))
                    .expect("started above")
                    .set(state)?;
                let values = [
                    measure_once(&[], &workload, &["time-getppid", &calls])?,
                    measure_once(&[], &workload, &threads_args)?,
                    measure_once(&[], &workload, &["time-pingpong", &rounds])?,
                    measure_once(ONE_CPU, &workload, &["time-pingpong", &rounds])?,
                ];
                for (best, value) in best.iter_mut().zip(values) {
                    *best = best.min(value);
                }
            }
        }
        drop(controllers);
        for ((config, row), [null, threads, switch, one_cpu_switch]) in configs.iter().zip(rows.iter_mut()).zip(best) {
            if matches!(config.observer, Observer::Profiler { .. }) {
                row.null_ns.push(null);
                row.threads_ns.push(threads);
                row.switch_ns.push(switch);
                row.one_cpu_switch_ns.push(one_cpu_switch);
                continue;
            }
            if row.note.is_some() {
                continue;
            }
            let ptrace = matches!(config.observer, Observer::Wrapper(_));
            let null_args = ["time-getppid", if ptrace { &ptrace_calls } else { &calls }];
            let result = observe(config, |wrapper| {
                let null = measure(wrapper, &workload, &null_args)?;
                let threads = measure(
                    wrapper,
                    &workload,
                    if ptrace { &ptrace_threads_args } else { &threads_args },
                )?;
                // Context switches only with the in-kernel observers.
                let switch = if ptrace {
                    None
                } else {
                    Some((
                        measure(wrapper, &workload, &["time-pingpong", &rounds])?,
                        measure(ONE_CPU, &workload, &["time-pingpong", &rounds])?,
                    ))
                };
                Ok((null, threads, switch))
            });
            match result {
                Ok((null, threads, switch)) => {
                    row.null_ns.push(null);
                    row.threads_ns.push(threads);
                    if let Some((switch, one_cpu_switch)) = switch {
                        row.switch_ns.push(switch);
                        row.one_cpu_switch_ns.push(one_cpu_switch);
                    }
                }
                Err(err) => row.note = Some(format!("{}: skipped ({err:#})", config.name)),
            }
        }
    }
    notes.extend(rows.iter().filter_map(|row| row.note.clone()));

    step("per-program cost from the kernel's run-time accounting");
    // Each build loaded in turn, `--runs` times, in a new order each time. The accounting
    // times the programs alone (not the tracepoints' dispatch), which makes it the finer
    // measure of a change to them.
    let mut builds = vec![profiler.as_path()];
    if let Some(against) = &against {
        builds.push(against.as_path());
    }
    let mut program_costs = vec![ProgramCosts::default(); builds.len()];
    for run in 0..args.runs {
        for index in shuffled(builds.len(), run as u32) {
            let beside = Beside::profiler(
                builds[index],
                &["full", "--run-stats", "--sample", DEFAULT_SAMPLE_EVERY],
            )?;
            measure_once(&[], &workload, &["time-getppid", &calls])?;
            measure_once(&[], &workload, &["time-pingpong", &rounds])?;
            program_costs[index].add_run(&beside.finish());
        }
    }

    step(&format!("agent CPU and memory with {} busy processes", args.processes));
    let agent = agent_cost(&profiler, &workload, args.processes)?;

    let memory: Vec<String> = [2, 64, 256]
        .iter()
        .map(|cpus| {
            let out = Command::new(&profiler)
                .args(["memory", "--cpus", &cpus.to_string()])
                .output();
            let total = out
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .last()
                        .map(|l| l.trim().to_owned())
                })
                .unwrap_or_default();
            format!("| {cpus} | {} |", total.trim_start_matches("total").trim())
        })
        .collect();

    let mut out = String::new();
    use std::fmt::Write as _;
    let (base, floor) = (&rows[0], &rows[1]);
    let _ = writeln!(
        out,
        "### Null-syscall loop and context switches (medians of {} runs)\n",
        args.runs
    );
    let _ = writeln!(
        out,
        "| configuration | getppid ns/call | added ns | x floor | 2 threads: ns/call | x floor | ping-pong across CPUs: ns/round trip | added | ping-pong on one CPU: ns/round trip | added |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let Some(null) = median(&row.null_ns) else {
            let _ = writeln!(out, "| {} | skipped | | | | | | | | |", row.name);
            continue;
        };
        // Each run's own differences and ratios, then their median.
        let added = median_per_run(&row.null_ns, &base.null_ns, &floor.null_ns, |v, b, _| v - b);
        let x_floor = median_per_run(&row.null_ns, &base.null_ns, &floor.null_ns, |v, b, f| (v - b) / (f - b));
        let threads = median(&row.threads_ns);
        let threads_x_floor = median_per_run(&row.threads_ns, &base.threads_ns, &floor.threads_ns, |v, b, f| {
            (v - b) / (f - b)
        });
        let switch_cell = |values: &[f64], base: &[f64]| -> (String, String) {
            let added = median_per_run(values, base, base, |v, b, _| v / b - 1.0);
            (
                median(values).map_or("-".into(), |s| format!("{s:.0}")),
                match (i, added) {
                    (0, _) | (_, None) => "-".into(),
                    (_, Some(a)) => format!("{:+.1}%", a * 100.0),
                },
            )
        };
        let (switch, switch_added) = switch_cell(&row.switch_ns, &base.switch_ns);
        let (one_cpu, one_cpu_added) = switch_cell(&row.one_cpu_switch_ns, &base.one_cpu_switch_ns);
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {switch} | {switch_added} | {one_cpu} | {one_cpu_added} |",
            row.name,
            null,
            match (i, added) {
                (0, _) | (_, None) => "-".into(),
                (_, Some(added)) => format!("+{added:.0}"),
            },
            match (i, x_floor) {
                (0 | 1, _) | (_, None) => "-".into(),
                (_, Some(x)) => format!("{x:.2}x"),
            },
            threads.map_or("-".into(), |t| format!("{t:.0}")),
            match (i, threads_x_floor) {
                (0 | 1, _) | (_, None) => "-".into(),
                (_, Some(x)) => format!("{x:.2}x"),
            },
        );
    }
    let _ = writeln!(
        out,
        "\n### Per-program cost (kernel run-time accounting, which itself adds two clock reads a run; medians of {} runs)\n",
        args.runs
    );
    match (&args.against, program_costs.as_slice()) {
        (Some(rev), [current, against]) => {
            let _ = writeln!(
                out,
                "| program | runs (one run) | ns/run (median) | at `{rev}` | difference (median of per-run differences) |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|");
            for (name, runs, ns) in current.medians() {
                let theirs = against.median_of(&name).map_or("-".into(), |n| format!("{n:.1}"));
                let difference = current
                    .median_difference(against, &name)
                    .map_or("-".into(), |d| format!("{d:+.1}"));
                let _ = writeln!(out, "| {name} | {runs} | {ns:.1} | {theirs} | {difference} |");
            }
        }
        _ => {
            let _ = writeln!(out, "| program | runs (one run) | ns/run (median) |");
            let _ = writeln!(out, "|---|---|---|");
            for (name, runs, ns) in program_costs[0].medians() {
                let _ = writeln!(out, "| {name} | {runs} | {ns:.1} |");
            }
        }
    }
    let _ = writeln!(
        out,
        "\n### Agent with {} busy processes, polling every second\n",
        args.processes
    );
    let _ = writeln!(out, "{agent}");
    let _ = writeln!(
        out,
        "\n### Kernel map memory at the default sizes (computed: `syscall-profiler memory --cpus N`)\n"
    );
    let _ = writeln!(out, "| CPUs | total |");
    let _ = writeln!(out, "|---|---|");
    for line in memory {
        let _ = writeln!(out, "{line}");
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    print!("{out}");
    let results = root.join("target/bench-results.md");
    std::fs::write(&results, &out)?;
    step(&format!("also written to {}", results.display()));
    Ok(())
}

/// Builds syscall-profiler as of git revision `rev` (in a worktree under `target/`, with
/// its own target directory, kept between runs for incremental builds) and returns the
/// binary.
fn build_revision(root: &Path, path: &OsString, rev: &str) -> Result<PathBuf> {
    step(&format!("building syscall-profiler at {rev}"));
    let tree = root.join("target/bench-against/tree");
    let git = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .context("running git")?
            .success())
    };
    if tree.exists() {
        git(&["worktree", "remove", "--force", &tree.to_string_lossy()])?;
    }
    git(&["worktree", "prune"])?;
    if !git(&["worktree", "add", "--detach", &tree.to_string_lossy(), rev])? {
        bail!("--against {rev}: not a revision of this repository");
    }
    let target_dir = root.join("target/bench-against/target");
    let status = cargo_command(path, &["build", "--release", "--package", "profiler"])
        .current_dir(&tree)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("--against {rev}: the build failed");
    }
    Ok(target_dir.join("release/syscall-profiler"))
}

/// CPU share and peak RSS of `syscall-profiler report` beside `count` busy processes. The
/// steady-state CPU is the difference between a long and a short run, so start-up
/// (loading, calibration) and the final report cancel out.
fn agent_cost(profiler: &Path, workload: &Path, count: usize) -> Result<String> {
    let mut busy: Vec<Child> = (0..count)
        .map(|_| {
            Command::new(workload)
                .args(["busy", "60"])
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()
        .context("starting the busy processes")?;
    thread::sleep(Duration::from_secs(2));
    let timed = |seconds: u32| -> Result<(f64, f64, u64)> {
        let out = as_root(Path::new("/usr/bin/time"))
            .args(["-f", "%e %U %S %M"])
            .arg(profiler)
            .args([
                "report",
                "--format",
                "json",
                "-o",
                "/dev/null",
                "--duration",
                &seconds.to_string(),
            ])
            .stderr(Stdio::piped())
            .output()
            .context("running /usr/bin/time syscall-profiler report")?;
        let text = String::from_utf8_lossy(&out.stderr);
        let line = text.lines().last().unwrap_or_default();
        let fields: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if fields.len() < 4 {
            bail!("unexpected /usr/bin/time output: {text}");
        }
        Ok((fields[0], fields[1] + fields[2], fields[3] as u64))
    };
    let short = timed(3);
    let long = timed(13);
    for child in &mut busy {
        let _ = child.kill();
    }
    for child in &mut busy {
        let _ = child.wait();
    }
    let ((short_wall, short_cpu, _), (long_wall, long_cpu, rss_kib)) = (short?, long?);
    let share = (long_cpu - short_cpu) / (long_wall - short_wall) * 100.0;
    Ok(format!(
        "| measure | value |\n|---|---|\n| agent CPU, steady state (13 s run - 3 s run) | {share:.2}% of one CPU |\n\
         | agent CPU, whole 13 s run incl. start-up and report | {:.2}% |\n| agent peak RSS | {:.1} MiB |",
        long_cpu / long_wall * 100.0,
        rss_kib as f64 / 1024.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_costs_are_read_from_run_stats_lines() {
        let mut current = ProgramCosts::default();
        let mut against = ProgramCosts::default();
        for (ours, theirs) in [(100.0, 110.0), (90.0, 130.0), (300.0, 305.0)] {
            current.add_run(&format!(
                "attached 7 programs\nsys_enter 1000 runs {ours:.1} ns/run\nbogus line\n"
            ));
            against.add_run(&format!(
                "sys_enter 999 runs {theirs:.1} ns/run\nsys_exit 999 runs 5.0 ns/run\n"
            ));
        }
        assert_eq!(current.medians(), vec![("sys_enter".to_string(), 1000, 100.0)]);
        assert_eq!(against.median_of("sys_exit"), Some(5.0));
        // Per-run differences -10, -40, -5: median -10 (the difference of medians would be -20).
        assert_eq!(current.median_difference(&against, "sys_enter"), Some(-10.0));
        assert_eq!(current.median_difference(&against, "sys_exit"), None);
    }

    #[test]
    fn shuffled_orders_are_permutations_and_vary() {
        let orders: Vec<Vec<usize>> = (0..33).map(|seed| shuffled(6, seed)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        }
        // Every configuration goes first at some point, and after different neighbours.
        for config in 0..6 {
            assert!(orders.iter().any(|o| o[0] == config), "{config} never first");
            let before: std::collections::BTreeSet<usize> = orders
                .iter()
                .filter_map(|o| o.iter().position(|&c| c == config).filter(|&p| p > 0).map(|p| o[p - 1]))
                .collect();
            assert!(before.len() >= 3, "{config} follows only {before:?}");
        }
    }
}
