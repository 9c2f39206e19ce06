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
mod agent;
mod configs;
mod measure;
mod observers;
mod revision;
mod stats;

use std::{ffi::OsString, path::Path, process::Command};

use anyhow::Result;
use clap::Args;

use self::{
    agent::agent_cost,
    configs::{Build, Config, Observer, CONFIGS, DEFAULT_SAMPLE_EVERY, DEFAULT_STATE, ONE_CPU},
    measure::{measure, measure_once, observe, Row},
    observers::{start_controllers, Beside},
    revision::build_revision,
    stats::{median, median_per_run, shuffled, ProgramCosts},
};
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
    /// Also measure syscall-profiler as built from this git revision (as it runs by default),
    /// interleaved with the current build: what a change bought, free of the machine's drift.
    /// The revision needs `syscall-profiler attach control` (commit 41ac9eb or later).
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
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
