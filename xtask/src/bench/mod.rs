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
//! - `report`'s CPU and memory while 1,000 busy processes run.
//! - `serve` at its defaults under process churn (1,000 live processes, 100 new a second):
//!   its CPU and memory, series and scrape sizes; then 200 scrapes a second.
//! - Kernel map memory at the default sizes (computed).
//!
//! Peers come from Debian's packages, installed here when missing; one that cannot run is
//! skipped with a note. Nothing here is part of CI's pass/fail.
mod ablations;
mod agent;
mod configs;
mod measure;
mod observers;
mod revision;
mod stats;
mod table;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;
use clap::Args;

use self::{
    agent::{agent_cost, serve_under_churn},
    configs::{Build, Config, Observer, CONFIGS, DEFAULT_SAMPLE_EVERY, DEFAULT_STATE, ONE_CPU},
    measure::{measure, measure_once, observe, Row},
    observers::{start_controllers, Beside},
    revision::build_revision,
    stats::{shuffled, ProgramCosts},
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
    /// Instead of the rest: build the working tree with one piece of the kernel side taken
    /// out at a time and measure what each costs, program by program (BENCHMARKS.md, "Where
    /// the nanoseconds go").
    #[arg(long)]
    pub ablations: bool,
    /// Instead of the rest: only the agent's own cost (`report` beside busy processes, `serve`
    /// under churn) and the kernel-side memory, for changes to the agent alone.
    #[arg(long, conflicts_with_all = ["ablations", "against"])]
    pub agent_only: bool,
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

/// What one benchmark run needs to know about the binaries.
struct Binaries {
    profiler: PathBuf,
    workload: PathBuf,
    /// The `--against` revision's syscall-profiler.
    against: Option<PathBuf>,
}

/// `path`: `PATH` with the tools setup installed (for building `--against`).
pub fn run(root: &Path, path: &OsString, args: &BenchArgs) -> Result<()> {
    if args.ablations {
        let out = ablations::run(root, path, &root.join("target/release/profiler-workload"), args)?;
        return print_results(&root.join("target/bench-ablations.md"), &out);
    }
    let (profiler, workload) = (
        root.join("target/release/syscall-profiler"),
        root.join("target/release/profiler-workload"),
    );
    let results = root.join("target/bench-results.md");
    if args.agent_only {
        let (agent, serve) = measure_agent(&profiler, &workload, args)?;
        return print_results(
            &results,
            &table::render_agent(args, &agent, &serve, &memory_table(&profiler)),
        );
    }
    let binaries = Binaries {
        profiler,
        workload,
        against: match &args.against {
            Some(rev) => Some(build_revision(root, path, rev)?),
            None => None,
        },
    };
    let mut notes = if args.no_peers { Vec::new() } else { install_peers() };
    let configs = configurations(args);
    let rows = loops(&configs, &binaries, args)?;
    notes.extend(rows.iter().filter_map(|row| row.note.clone()));
    step("per-program cost from the kernel's run-time accounting");
    let program_costs = program_costs(&binaries, args)?;
    let (agent, serve) = measure_agent(&binaries.profiler, &binaries.workload, args)?;
    let memory = memory_table(&binaries.profiler);
    print_results(
        &results,
        &table::render(args, &rows, &program_costs, &agent, &serve, &memory, &notes),
    )
}

/// The agent's own cost: `report` beside busy processes, then `serve` under churn (their
/// tables).
fn measure_agent(profiler: &Path, workload: &Path, args: &BenchArgs) -> Result<(String, String)> {
    step(&format!("agent CPU and memory with {} busy processes", args.processes));
    let agent = agent_cost(profiler, workload, args.processes)?;
    step("serve under process churn (1,000 live processes, 100 new a second) and scrape load");
    let serve = serve_under_churn(profiler, workload)?;
    Ok((agent, serve))
}

/// Prints the tables and writes them to `results`.
fn print_results(results: &Path, out: &str) -> Result<()> {
    print!("{out}");
    std::fs::write(results, out)?;
    step(&format!("also written to {}", results.display()));
    Ok(())
}

/// The configurations measured, in the order of the table: the peers left out with
/// `--no-peers`, the `--against` build right below the current build's default row.
fn configurations(args: &BenchArgs) -> Vec<Config> {
    let mut configs: Vec<Config> = CONFIGS
        .iter()
        .filter(|c| !args.no_peers || matches!(c.observer, Observer::Profiler { .. }))
        .copied()
        .collect();
    if let Some(rev) = &args.against {
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
        let against = Config {
            // Leaked: one short string for the life of the benchmark.
            name: Box::leak(format!("syscall-profiler at `{rev}`, as `report` ran by default").into_boxed_str()),
            observer: Observer::Profiler {
                state: DEFAULT_STATE,
                lanes: "8",
                build: Build::Against,
            },
        };
        configs.insert(default_row + 1, against);
    }
    configs
}

/// The null-syscall and ping-pong loops under every configuration, `--runs` times: one row
/// per configuration, one value per run in each column.
fn loops(configs: &[Config], binaries: &Binaries, args: &BenchArgs) -> Result<Vec<Row>> {
    let workload = binaries.workload.as_path();
    let calls = args.calls.to_string();
    let rounds = args.rounds.to_string();
    let mut rows: Vec<Row> = configs.iter().map(|c| Row::new(c.name)).collect();
    let threads_args = ["time-getppid-threads", &calls, "2"];
    for run in 0..args.runs {
        step(&format!(
            "null-syscall and ping-pong loops, run {}/{}",
            run + 1,
            args.runs
        ));
        // Loaded afresh every run: one load can be lucky or unlucky for as long as it stays
        // loaded (BENCHMARKS.md, step 13), so a comparison needs many loads.
        let mut controllers = start_controllers(configs, &binaries.profiler, binaries.against.as_deref())?;
        // The profiler's states, interleaved measurement by measurement; best of 3 each.
        let mut best = vec![[f64::INFINITY; 4]; configs.len()];
        for repetition in 0..3 {
            // A new order each time: in a fixed order each configuration follows the same
            // neighbour every time, and that neighbour's after-effects (or drift in step with
            // the order) land on it alone.
            for index in shuffled(configs.len(), (run * 3 + repetition) as u32) {
                let (config, best) = (&configs[index], &mut best[index]);
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
                    measure_once(&[], workload, &["time-getppid", &calls])?,
                    measure_once(&[], workload, &threads_args)?,
                    measure_once(&[], workload, &["time-pingpong", &rounds])?,
                    measure_once(ONE_CPU, workload, &["time-pingpong", &rounds])?,
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
            match measure_peer(config, workload, args) {
                Ok(PeerValues { null, threads, switch }) => {
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
    Ok(rows)
}

/// What a peer's run measured: the null loop, in two threads, and the ping-pongs (across
/// CPUs, on one CPU) for the in-kernel peers.
struct PeerValues {
    null: f64,
    threads: f64,
    switch: Option<(f64, f64)>,
}

/// One run of the loops under a peer (bpftrace beside the workload, or a ptrace tool it runs
/// under); the ptrace tools get fewer calls (they are ~100x slower) and no ping-pong.
fn measure_peer(config: &Config, workload: &Path, args: &BenchArgs) -> Result<PeerValues> {
    let ptrace = matches!(config.observer, Observer::Wrapper(_));
    let calls = if ptrace { args.ptrace_calls } else { args.calls }.to_string();
    let rounds = args.rounds.to_string();
    observe(config, |wrapper| {
        let null = measure(wrapper, workload, &["time-getppid", &calls])?;
        let threads = measure(wrapper, workload, &["time-getppid-threads", &calls, "2"])?;
        let switch = if ptrace {
            None
        } else {
            Some((
                measure(wrapper, workload, &["time-pingpong", &rounds])?,
                measure(ONE_CPU, workload, &["time-pingpong", &rounds])?,
            ))
        };
        Ok(PeerValues { null, threads, switch })
    })
}

/// Per-program run times from the kernel's accounting, one [`ProgramCosts`] per
/// configuration: the current build as `report` runs, `--against`'s the same way, the current
/// build as `top` and `serve` run, and the empty floor programs (what the dispatch and the
/// accounting cost by themselves). Each is loaded in turn, `--runs` times, in a new order
/// each time. The accounting times the programs alone (not the tracepoints' dispatch), which
/// makes it the finer measure of a change to them.
fn program_costs(binaries: &Binaries, args: &BenchArgs) -> Result<ProgramTable> {
    let report = ["full", "--run-stats", "--sample", DEFAULT_SAMPLE_EVERY];
    let counting = ["counting", "--run-stats", "--sample", DEFAULT_SAMPLE_EVERY];
    let floor = ["floor", "--run-stats"];
    let mut loads: Vec<Load> = vec![(&binaries.profiler, &report, None)];
    loads.extend(binaries.against.as_deref().map(|against| (against, &report[..], None)));
    loads.push((&binaries.profiler, &counting, None));
    loads.push((&binaries.profiler, &floor, None));
    let costs = costs_of_loads(&loads, &binaries.workload, args)?;
    let mut costs = costs.into_iter();
    let current = costs.next().expect("one per load");
    let against = binaries.against.as_ref().and_then(|_| costs.next());
    let (counting, floor) = (costs.next().expect("one per load"), costs.next().expect("one per load"));
    Ok(ProgramTable {
        current,
        against,
        counting,
        floor,
    })
}

/// The per-program costs of the benchmark's configurations.
struct ProgramTable {
    current: ProgramCosts,
    against: Option<ProgramCosts>,
    counting: ProgramCosts,
    floor: ProgramCosts,
}

/// A build of syscall-profiler, the arguments of its `attach`, and a setting in its
/// environment.
type Load<'a> = (&'a Path, &'a [&'a str], Option<(&'a str, &'a str)>);

/// Loads each [`Load`] in turn, `--runs` times in a new order each time, runs the
/// null-syscall loop and the ping-pong under it, and collects the run-time accounting it
/// prints: one [`ProgramCosts`] per load.
fn costs_of_loads(loads: &[Load], workload: &Path, args: &BenchArgs) -> Result<Vec<ProgramCosts>> {
    let calls = args.calls.to_string();
    let rounds = args.rounds.to_string();
    let mut costs = vec![ProgramCosts::default(); loads.len()];
    for run in 0..args.runs {
        for index in shuffled(loads.len(), run as u32) {
            let (binary, attach_args, env) = loads[index];
            let beside = Beside::profiler(binary, attach_args, env)?;
            measure_once(&[], workload, &["time-getppid", &calls])?;
            measure_once(&[], workload, &["time-pingpong", &rounds])?;
            costs[index].add_run(&beside.finish());
        }
    }
    Ok(costs)
}

/// Table rows of the kernel-side memory at the default sizes on 2, 64 and 256 CPUs.
fn memory_table(profiler: &Path) -> Vec<String> {
    [2, 64, 256]
        .iter()
        .map(|cpus| {
            let out = Command::new(profiler)
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
        .collect()
}
