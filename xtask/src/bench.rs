//! `cargo xtask bench`: the profiler's costs, measured side by side in one run.
//!
//! - Null-syscall loop (getppid) under each configuration: nothing, empty programs on the two
//!   syscall tracepoints (the floor), syscall-profiler, bpftrace's count and latency scripts,
//!   perf trace -s and strace -c. Configurations run round-robin, `--runs` times, so drift on a
//!   shared machine hits all of them alike; each run takes the best of 3 measurements (noise
//!   only ever adds time); the table shows medians over runs.
//! - Context switches: two threads ping-ponging a byte over pipes, with and without.
//! - Per-program cost from the kernel's own run-time accounting.
//! - The agent's CPU and memory while 1,000 busy processes run, polling every second.
//! - Kernel map memory at the default sizes (computed).
//!
//! Peers come from Debian's packages, installed here when missing; one that cannot run is
//! skipped with a note. Nothing here is part of CI's pass/fail.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{
    as_root,
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
}

const BPFTRACE_COUNT: &str = "tracepoint:raw_syscalls:sys_enter { @[pid, args->id] = count(); }";
const BPFTRACE_LATENCY: &str = "tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; } \
     tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[pid, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }";

/// How a configuration observes the workload.
#[derive(Clone, Copy)]
enum Observer {
    Nothing,
    /// `syscall-profiler attach MODE` running beside the workload.
    Profiler(&'static str),
    /// bpftrace running this script beside the workload.
    Bpftrace(&'static str),
    /// The workload runs under this command (`perf trace -s --`, `strace -c -o /dev/null`).
    Wrapper(&'static [&'static str]),
}

struct Config {
    name: &'static str,
    observer: Observer,
}

const CONFIGS: [Config; 7] = [
    Config {
        name: "nothing attached",
        observer: Observer::Nothing,
    },
    Config {
        name: "empty programs on sys_enter/sys_exit (floor)",
        observer: Observer::Profiler("floor"),
    },
    Config {
        name: "syscall-profiler (full: split, histograms, errnos)",
        observer: Observer::Profiler("full"),
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

fn measure(wrapper: &[&str], workload: &Path, args: &[&str]) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
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
        let value: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("workload output")?;
        best = best.min(value);
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
    switch_ns: Vec<f64>,
    note: Option<String>,
}

fn observe<T>(config: &Config, profiler: &Path, run: impl FnOnce(&[&str]) -> Result<T>) -> Result<T> {
    match config.observer {
        Observer::Nothing => run(&[]),
        Observer::Profiler(mode) => {
            let beside = Beside::profiler(profiler, &[mode])?;
            thread::sleep(Duration::from_millis(200));
            let value = run(&[]);
            beside.finish();
            value
        }
        Observer::Bpftrace(script) => {
            let beside = Beside::bpftrace(script)?;
            let value = run(&[]);
            beside.finish();
            value
        }
        Observer::Wrapper(wrapper) => run(wrapper),
    }
}

pub fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    let profiler = root.join("target/release/syscall-profiler");
    let workload = root.join("target/release/profiler-workload");
    let mut notes = if args.no_peers { Vec::new() } else { install_peers() };
    let calls = args.calls.to_string();
    let ptrace_calls = args.ptrace_calls.to_string();
    let rounds = args.rounds.to_string();
    let configs: Vec<&Config> = CONFIGS
        .iter()
        .filter(|c| !args.no_peers || matches!(c.observer, Observer::Nothing | Observer::Profiler(_)))
        .collect();
    let mut rows: Vec<Row> = configs
        .iter()
        .map(|c| Row {
            name: c.name,
            null_ns: Vec::new(),
            switch_ns: Vec::new(),
            note: None,
        })
        .collect();
    for run in 0..args.runs {
        step(&format!(
            "null-syscall and ping-pong loops, run {}/{}",
            run + 1,
            args.runs
        ));
        for (config, row) in configs.iter().zip(rows.iter_mut()) {
            if row.note.is_some() {
                continue;
            }
            let ptrace = matches!(config.observer, Observer::Wrapper(_));
            let null_args = ["time-getppid", if ptrace { &ptrace_calls } else { &calls }];
            let result = observe(config, &profiler, |wrapper| {
                let null = measure(wrapper, &workload, &null_args)?;
                // Context switches only with the in-kernel observers.
                let switch = if ptrace {
                    None
                } else {
                    Some(measure(wrapper, &workload, &["time-pingpong", &rounds])?)
                };
                Ok((null, switch))
            });
            match result {
                Ok((null, switch)) => {
                    row.null_ns.push(null);
                    row.switch_ns.extend(switch);
                }
                Err(err) => row.note = Some(format!("{}: skipped ({err:#})", config.name)),
            }
        }
    }
    notes.extend(rows.iter().filter_map(|row| row.note.clone()));

    step("per-program cost from the kernel's run-time accounting");
    let run_stats = {
        let beside = Beside::profiler(&profiler, &["full", "--run-stats"])?;
        measure(&[], &workload, &["time-getppid", &calls])?;
        measure(&[], &workload, &["time-pingpong", &rounds])?;
        beside.finish()
    };

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
    let base_null = median(&rows[0].null_ns).unwrap_or(f64::NAN);
    let base_switch = median(&rows[0].switch_ns).unwrap_or(f64::NAN);
    let floor_added = median(&rows[1].null_ns).unwrap_or(f64::NAN) - base_null;
    let _ = writeln!(
        out,
        "### Null-syscall loop and context switches (medians of {} runs)\n",
        args.runs
    );
    let _ = writeln!(
        out,
        "| configuration | getppid ns/call | added ns | x floor | ping-pong ns/round trip | added |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let Some(null) = median(&row.null_ns) else {
            let _ = writeln!(out, "| {} | skipped | | | | |", row.name);
            continue;
        };
        let added = null - base_null;
        let switch = median(&row.switch_ns);
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} |",
            row.name,
            null,
            if i == 0 { "-".into() } else { format!("+{added:.0}") },
            if i < 2 {
                "-".into()
            } else {
                format!("{:.2}x", added / floor_added)
            },
            switch.map_or("-".into(), |s| format!("{s:.0}")),
            match (i, switch) {
                (0, _) | (_, None) => "-".into(),
                (_, Some(s)) => format!("{:+.1}%", (s / base_switch - 1.0) * 100.0),
            }
        );
    }
    let _ = writeln!(
        out,
        "\n### Per-program cost (kernel run-time accounting, which itself adds two clock reads a run)\n"
    );
    let _ = writeln!(out, "| program | runs | ns/run |");
    let _ = writeln!(out, "|---|---|---|");
    for line in run_stats.lines().filter(|l| l.contains(" runs ")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() >= 4 {
            let _ = writeln!(out, "| {} | {} | {} |", parts[0], parts[1], parts[3]);
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
