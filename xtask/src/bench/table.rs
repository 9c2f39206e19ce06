//! The benchmark's results as markdown tables (BENCHMARKS.md takes them as printed).
use std::fmt::Write as _;

use super::{
    measure::Row,
    stats::{median, median_per_run},
    BenchArgs, ProgramTable,
};

/// The tables: the loops (medians of per-run values and ratios), the per-program costs, the
/// agent (`report`, then `serve` under churn), the kernel-side memory, then notes on what was
/// skipped.
pub(super) fn render(
    args: &BenchArgs,
    rows: &[Row],
    program_costs: &ProgramTable,
    agent: &str,
    serve: &str,
    memory: &[String],
    notes: &[String],
) -> String {
    let mut out = String::new();
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
    let ProgramTable {
        current,
        against,
        counting,
        floor,
    } = program_costs;
    let cell = |value: Option<f64>, sign: bool| match value {
        Some(v) if sign => format!("{v:+.1}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    };
    let rev = args.against.as_deref().unwrap_or("REV");
    let _ = writeln!(
        out,
        "| program | runs (one run) | ns/run as `report` runs | as `top`/`serve` run | empty program (floor) | at `{rev}`, as `report` ran | difference (median of per-run differences) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (name, runs, ns) in current.medians() {
        // The floor's programs are `floor_sys_enter` and `floor_sys_exit`.
        let empty = floor.median_of(&format!("floor_{name}"));
        let (theirs, difference) = match against {
            Some(against) => (against.median_of(&name), current.median_difference(against, &name)),
            None => (None, None),
        };
        let _ = writeln!(
            out,
            "| {name} | {runs} | {ns:.1} | {} | {} | {} | {} |",
            cell(counting.median_of(&name), false),
            cell(empty, false),
            cell(theirs, false),
            cell(difference, true),
        );
    }
    out.push_str(&render_agent(args, agent, serve, memory));
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// The agent's tables (`report` beside busy processes, `serve` under churn) and the kernel-side
/// memory: the end of [`render`], and all of `--agent-only`.
pub(super) fn render_agent(args: &BenchArgs, agent: &str, serve: &str, memory: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### `report` beside {} busy processes\n", args.processes);
    let _ = writeln!(out, "{agent}");
    let _ = writeln!(
        out,
        "\n### `serve` at its defaults under process churn (1,000 live processes, 100 new a second)\n"
    );
    let _ = writeln!(out, "{serve}");
    let _ = writeln!(
        out,
        "\n### Kernel map memory at the default sizes (computed: `syscall-profiler memory --cpus N`)\n"
    );
    let _ = writeln!(out, "| CPUs | total |");
    let _ = writeln!(out, "|---|---|");
    for line in memory {
        let _ = writeln!(out, "{line}");
    }
    out
}
