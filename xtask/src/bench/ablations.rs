//! `cargo xtask bench --ablations`: where the programs' nanoseconds go. Each ablation is the
//! working tree with one piece of the kernel side taken out (or done another way), built in a
//! worktree under `target/bench-ablations`; the kernel's run-time accounting of each is set
//! against the unchanged build's, loaded in turn in the same run. An ablation is a measuring
//! device, not a product: several of them count or time wrongly.
//!
//! The edits are exact text replacements in `profiler-ebpf/src/main.rs`: one that no longer
//! matches the source stops the benchmark and says which.
use std::{ffi::OsString, fmt::Write as _, path::Path};

use anyhow::{bail, Context, Result};

use super::{
    costs_of_loads,
    revision::{build, working_tree_commit, worktree},
    stats::ProgramCosts,
    BenchArgs, Load,
};
use crate::step;

const SOURCE: &str = "profiler-ebpf/src/main.rs";

/// Loads of the unchanged build per run and sampling period; each run's reference is their
/// median.
const REFERENCE_LOADS: usize = 3;

struct Ablation {
    name: &'static str,
    /// What it takes out, for the table.
    what: &'static str,
    /// `(text, replacement)`, each text found exactly once in [`SOURCE`].
    edits: &'static [(&'static str, &'static str)],
    /// An environment setting for the agent instead of (or besides) edits.
    env: Option<(&'static str, &'static str)>,
    /// The sampling period it runs with; it is set against the unchanged build's at the same
    /// period.
    sample: &'static str,
}

const ABLATIONS: &[Ablation] = &[
    Ablation {
        name: "empty-bodies",
        what: "every program returns at once: what the dispatch and the accounting cost by themselves",
        edits: &[
            (
                "pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {",
                "pub fn sys_enter(ctx: BtfTracePointContext) -> i32 { if core::hint::black_box(true) { return 0; }",
            ),
            (
                "pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {",
                "pub fn sys_exit(ctx: BtfTracePointContext) -> i32 { if core::hint::black_box(true) { return 0; }",
            ),
            (
                "pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {",
                "pub fn sched_switch(ctx: BtfTracePointContext) -> i32 { if core::hint::black_box(true) { return 0; }",
            ),
        ],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "no-call-timed",
        what: "no call timed: the clock reads and time accounting of the sampled calls (1 in 16) and of each entry's first 64",
        edits: &[(
            "    if calls < TIMED_FIRST_CALLS {\n        return flight::IN_FLIGHT | flight::TIMED | flight::FIRST_CALLS;\n    }",
            "    if core::hint::black_box(calls) != u64::MAX {\n        return flight::IN_FLIGHT;\n    }",
        )],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "sample-64",
        what: "`--sample 64` instead of 16 (no edit)",
        edits: &[],
        env: None,
        sample: "64",
    },
    Ablation {
        name: "no-clock-reads",
        what: "every call timed, with a stored number for a clock: the two `bpf_ktime_get_ns` calls",
        edits: &[
            (
                "        slot.enter_ns = unsafe { bpf_ktime_get_ns() };",
                "        slot.enter_ns = core::hint::black_box(0u64);",
            ),
            (
                "    let now_ns = if flags & flight::TIMED != 0 {\n        unsafe { bpf_ktime_get_ns() }",
                "    let now_ns = if flags & flight::TIMED != 0 {\n        core::hint::black_box(1000u64)",
            ),
        ],
        env: None,
        sample: "1",
    },
    Ablation {
        name: "no-histogram",
        what: "every call timed, no latency histogram (its bucket and its atomic add)",
        edits: &[(
            "    let bucket = core::hint::black_box(hist_bucket(wall_ns));",
            "    let bucket = core::hint::black_box(HIST_BUCKETS);",
        )],
        env: None,
        sample: "1",
    },
    Ablation {
        name: "plain-call-count",
        what: "the call count added with a plain add instead of an atomic one (not exact across CPUs)",
        edits: &[("    atomic_add(&mut stats.calls, 1u64);", "    stats.calls += 1;")],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "exit-tid-from-records",
        what: "`sys_exit` finds the thread in its CPU's caller records, not with a helper call (SYSCALL_PROFILER_EXIT_TID=records)",
        edits: &[],
        env: Some(("SYSCALL_PROFILER_EXIT_TID", "records")),
        sample: "16",
    },
    Ablation {
        name: "enter-asks-kernel",
        what: "`sys_enter` ignores its caller records: a helper call and a process-table search every call",
        edits: &[(
            "    if let Some(caller) = known.caller_of(regs_key, epochs) {",
            "    if let Some(caller) = known.caller_of(regs_key, epochs).filter(|_| core::hint::black_box(false)) {",
        )],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "no-way-out-wait",
        what: "no reschedule check at `sys_exit`: the wait for a CPU on the way out of a call untimed",
        edits: &[(
            "    record(slot, ret, must_reschedule().then_some(regs));",
            "    record(slot, ret, None.filter(|_| must_reschedule()).map(|()| regs));",
        )],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "regs-by-probe-read",
        what: "`sched_switch` reads a task's registers with `bpf_probe_read_kernel` (as before Linux 5.15), not `bpf_task_pt_regs`",
        edits: &[(
            "    let number = if HAS_TASK_PT_REGS.load() != 0 {",
            "    let number = if HAS_TASK_PT_REGS.load() != 0 && core::hint::black_box(false) {",
        )],
        env: None,
        sample: "16",
    },
    Ablation {
        name: "no-compat-check",
        what: "`sys_enter` does not look at the caller's mode register (32-bit compat tasks go unnamed)",
        edits: &[(
            "    let mode_offset = REGS_MODE_OFFSET.load();",
            "    let mode_offset = core::hint::black_box(0u32);",
        )],
        env: None,
        sample: "16",
    },
];

/// `source` with `ablation`'s edits.
fn edited(source: &str, ablation: &Ablation) -> Result<String> {
    let mut text = source.to_owned();
    for (old, new) in ablation.edits {
        if text.matches(old).count() != 1 {
            bail!(
                "ablation {}: {SOURCE} no longer has exactly one {old:?}; update xtask/src/bench/ablations.rs",
                ablation.name
            );
        }
        text = text.replacen(old, new, 1);
    }
    Ok(text)
}

/// Builds every ablation, measures them against the unchanged build and renders the table.
pub(super) fn run(root: &Path, path: &OsString, workload: &Path, args: &BenchArgs) -> Result<String> {
    let base = root.join("target/bench-ablations");
    let commit = working_tree_commit(root)?;
    step(&format!("building the ablations from the working tree ({commit})"));
    let tree = worktree(root, &base, &commit)?;
    let target_dir = base.join("target");
    let source_path = tree.join(SOURCE);
    let source = std::fs::read_to_string(&source_path).with_context(|| format!("reading {SOURCE}"))?;
    // Every edit is checked before the first (slow) build.
    let sources: Vec<String> = ABLATIONS.iter().map(|a| edited(&source, a)).collect::<Result<_>>()?;
    let unchanged = base.join("unchanged");
    std::fs::copy(build(path, &tree, &target_dir)?, &unchanged)?;
    let mut binaries = Vec::new();
    for (ablation, text) in ABLATIONS.iter().zip(&sources) {
        step(&format!("building ablation {}", ablation.name));
        std::fs::write(&source_path, text)?;
        let binary = base.join(ablation.name);
        std::fs::copy(build(path, &tree, &target_dir)?, &binary)?;
        binaries.push(binary);
    }
    std::fs::write(&source_path, &source)?;
    // The unchanged build at each sampling period the ablations use, loaded
    // `REFERENCE_LOADS` times a run (one load's luck lasts as long as the load, and moved
    // every row's difference by up to 10 ns in `sched_switch`), then each ablation.
    let periods: Vec<&str> = {
        let mut periods: Vec<&str> = ABLATIONS.iter().map(|a| a.sample).collect();
        periods.sort();
        periods.dedup();
        periods
    };
    let reference_samples: Vec<&str> = periods
        .iter()
        .flat_map(|sample| std::iter::repeat_n(*sample, REFERENCE_LOADS))
        .collect();
    let attach_args: Vec<Vec<&str>> = reference_samples
        .iter()
        .chain(ABLATIONS.iter().map(|a| &a.sample))
        .map(|sample| vec!["counting", "--run-stats", "--sample", sample])
        .collect();
    let mut loads: Vec<Load> = attach_args[..reference_samples.len()]
        .iter()
        .map(|attach| (unchanged.as_path(), &attach[..], None))
        .collect();
    for ((ablation, binary), attach) in ABLATIONS
        .iter()
        .zip(&binaries)
        .zip(&attach_args[reference_samples.len()..])
    {
        loads.push((binary.as_path(), &attach[..], ablation.env));
    }
    step(&format!(
        "per-program cost of {} loads, {} runs",
        loads.len(),
        args.runs
    ));
    let costs = costs_of_loads(&loads, workload, args)?;
    let (reference_costs, ablation_costs) = costs.split_at(reference_samples.len());
    let references: Vec<ProgramCosts> = reference_costs
        .chunks(REFERENCE_LOADS)
        .map(ProgramCosts::median_per_run)
        .collect();
    let reference = |sample: &str| &references[periods.iter().position(|p| *p == sample).expect("measured")];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Ablations: ns/run of each program, and its difference from the unchanged build at the same `--sample` (medians of {} runs, the unchanged build loaded {REFERENCE_LOADS} times a run; as `top` and `serve` run)\n",
        args.runs
    );
    let programs = ["sys_enter", "sys_exit", "sched_switch"];
    let _ = writeln!(
        out,
        "| ablation | what it takes out | --sample | {} |",
        programs.join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for sample in &periods {
        let cells: Vec<String> = programs
            .iter()
            .map(|p| {
                reference(sample)
                    .median_of(p)
                    .map_or("-".into(), |ns| format!("{ns:.1}"))
            })
            .collect();
        let _ = writeln!(out, "| (unchanged) | | {sample} | {} |", cells.join(" | "));
    }
    for (ablation, costs) in ABLATIONS.iter().zip(ablation_costs) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            ablation.name,
            ablation.what,
            ablation.sample,
            cells(costs, reference(ablation.sample), &programs).join(" | ")
        );
    }
    Ok(out)
}

/// `ns/run (difference)` of each program.
fn cells(costs: &ProgramCosts, reference: &ProgramCosts, programs: &[&str]) -> Vec<String> {
    programs
        .iter()
        .map(
            |program| match (costs.median_of(program), costs.median_difference(reference, program)) {
                (Some(ns), Some(difference)) => format!("{ns:.1} ({difference:+.1})"),
                _ => "-".into(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ablation_applies_to_the_programs_source() {
        let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(SOURCE)).unwrap();
        for ablation in ABLATIONS {
            let text = edited(&source, ablation).unwrap();
            assert_eq!(text == source, ablation.edits.is_empty(), "{}", ablation.name);
        }
    }
}
