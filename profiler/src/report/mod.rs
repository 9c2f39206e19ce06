//! The one-shot incident report: processes ranked by syscall time, each with its top
//! syscalls, the four-part split, percentiles, errors by name, class and advice.
//! Built from the store's totals as plain data, then rendered as text or JSON.
use std::{collections::BTreeMap, fmt::Write};

use profiler_common::StatsKey;
use serde::Serialize;

use crate::{
    kernel::Overflow,
    model::{
        histogram::Percentiles,
        names::{decode_nr, errno_name, syscall_name},
        split::{classify, Split},
        store::SyscallTotals,
    },
    session::calibrate::latency_offset_ns,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub duration_ns: u64,
    pub boundary_ns_per_call: f64,
    /// Tracing time inside the window between the tracepoints, per call, already taken out
    /// of every handler time (see `syscall-profiler calibrate`).
    pub instrumentation_ns_per_call: f64,
    /// `system-wide`, `pids` or `command`.
    pub scope: String,
    /// Timing was sampled 1 in this many of the calls that stayed on the CPU (1: every call
    /// timed). Counts and errors are exact; times, percentiles and the split are estimates
    /// when it is above 1.
    pub sample_every: u32,
    /// The profiler's own pid: its calls are never in the report.
    pub agent_pid: u32,
    /// Exit code of the profiled command (`-- COMMAND`), if it exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_exit_code: Option<i32>,
    /// Events the kernel side could not record; all zero on a healthy run.
    pub overflow: Overflow,
    pub processes: Vec<ProcessReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    #[serde(flatten)]
    pub split: Split,
    pub class: String,
    pub syscalls: Vec<SyscallReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyscallReport {
    pub name: String,
    pub nr: u32,
    pub abi: String,
    pub calls: u64,
    pub errors: u64,
    pub errno: BTreeMap<String, u64>,
    pub total_ns: u64,
    #[serde(flatten)]
    pub split: Split,
    pub latency_ns: Percentiles,
    pub class: String,
    pub advice: String,
}

/// What the report is built from.
pub struct Inputs<'a> {
    pub totals: &'a BTreeMap<StatsKey, SyscallTotals>,
    pub comm: &'a dyn Fn(u32) -> String,
    pub duration_ns: u64,
    pub boundary_ns_per_call: f64,
    pub instrumentation_ns_per_call: f64,
    pub scope: &'a str,
    pub sample_every: u32,
    pub command_exit_code: Option<i32>,
    pub overflow: Overflow,
}

fn per_second(calls: u64, duration_ns: u64) -> f64 {
    calls as f64 * 1e9 / duration_ns.max(1) as f64
}

fn syscall_report(key: &StatsKey, totals: &SyscallTotals, inputs: &Inputs) -> SyscallReport {
    let (abi, nr) = decode_nr(key.nr);
    let split = totals.split(inputs.boundary_ns_per_call, inputs.instrumentation_ns_per_call);
    let class = classify(&split, per_second(totals.calls, inputs.duration_ns));
    SyscallReport {
        name: syscall_name(abi, nr).into_owned(),
        nr,
        abi: abi.as_str().to_owned(),
        calls: totals.calls,
        errors: totals.errors,
        errno: totals
            .errnos
            .iter()
            .map(|(errno, count)| (errno_name(*errno).into_owned(), *count))
            .collect(),
        total_ns: split.total_ns(),
        split,
        latency_ns: totals.latency.percentiles(latency_offset_ns(
            inputs.boundary_ns_per_call,
            inputs.instrumentation_ns_per_call,
        )),
        class: class.as_str().to_owned(),
        advice: class.advice().to_owned(),
    }
}

/// Builds the report: processes by total syscall time (descending), their syscalls likewise.
pub fn build(inputs: &Inputs) -> Report {
    let mut by_process: BTreeMap<u32, Vec<SyscallReport>> = BTreeMap::new();
    for (key, totals) in inputs.totals {
        if totals.calls > 0 {
            by_process
                .entry(key.tgid)
                .or_default()
                .push(syscall_report(key, totals, inputs));
        }
    }
    let mut processes: Vec<ProcessReport> = by_process
        .into_iter()
        .map(|(pid, mut syscalls)| {
            syscalls.sort_by(|a, b| {
                b.total_ns
                    .cmp(&a.total_ns)
                    .then(b.calls.cmp(&a.calls))
                    .then(a.name.cmp(&b.name))
            });
            let mut split = Split::default();
            for syscall in &syscalls {
                split.add(&syscall.split);
            }
            let calls = syscalls.iter().map(|s| s.calls).sum();
            ProcessReport {
                pid,
                comm: (inputs.comm)(pid),
                calls,
                errors: syscalls.iter().map(|s| s.errors).sum(),
                total_ns: split.total_ns(),
                split,
                class: classify(&split, per_second(calls, inputs.duration_ns))
                    .as_str()
                    .to_owned(),
                syscalls,
            }
        })
        .collect();
    processes.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.pid.cmp(&b.pid)));
    Report {
        schema_version: SCHEMA_VERSION,
        duration_ns: inputs.duration_ns,
        boundary_ns_per_call: inputs.boundary_ns_per_call,
        instrumentation_ns_per_call: inputs.instrumentation_ns_per_call,
        scope: inputs.scope.to_owned(),
        sample_every: inputs.sample_every,
        agent_pid: std::process::id(),
        command_exit_code: inputs.command_exit_code,
        overflow: inputs.overflow,
        processes,
    }
}

/// `1.23 s`, `45.6 ms`, `789 µs`, `12 ns`: three significant figures, fixed units.
pub fn format_ns(ns: u64) -> String {
    let ns_f = ns as f64;
    let (value, unit) = if ns >= 1_000_000_000 {
        (ns_f / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns_f / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns_f / 1e3, "µs")
    } else {
        return format!("{ns} ns");
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// `1,234,567`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many of `width` cells each part of the split gets (entry, handler, blocked,
/// runqueue), proportionally, summing to exactly `width` (largest remainders round up).
pub fn split_cells(split: &Split, width: usize) -> [usize; 4] {
    if split.total_ns() == 0 {
        return [0; 4];
    }
    let exact: Vec<f64> = split.fractions().iter().map(|f| f * width as f64).collect();
    let mut cells = [0usize; 4];
    for (cell, x) in cells.iter_mut().zip(&exact) {
        *cell = x.floor() as usize;
    }
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut missing = width - cells.iter().sum::<usize>();
    for i in order {
        if missing == 0 {
            break;
        }
        cells[i] += 1;
        missing -= 1;
    }
    cells
}

/// The split as a bar of `width` characters: `E` entry, `H` handler, `B` blocked,
/// `R` runqueue; blank when there is no time.
pub fn split_bar(split: &Split, width: usize) -> String {
    if split.total_ns() == 0 {
        return " ".repeat(width);
    }
    ['E', 'H', 'B', 'R']
        .iter()
        .zip(split_cells(split, width))
        .map(|(c, n)| c.to_string().repeat(n))
        .collect()
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Options of the text rendering.
pub struct TextOptions {
    /// Processes shown (the JSON has all of them).
    pub processes: usize,
    /// Syscalls shown per process.
    pub syscalls: usize,
}

pub fn render_text(report: &Report, options: &TextOptions) -> String {
    let mut out = String::new();
    let total_calls: u64 = report.processes.iter().map(|p| p.calls).sum();
    let _ = writeln!(
        out,
        "syscall-profiler report: {} ({}), {} calls in {} processes; boundary cost {:.1} ns/call, tracing {:.1} ns/call taken out of handler times",
        format_ns(report.duration_ns),
        report.scope,
        format_count(total_calls),
        report.processes.len(),
        report.boundary_ns_per_call,
        report.instrumentation_ns_per_call
    );
    if report.sample_every > 1 {
        let _ = writeln!(
            out,
            "times sampled: 1 in {} of the short calls that stay on the CPU (counts exact; calls that sleep always timed; --sample 1 times every call)",
            report.sample_every
        );
    }
    if let Some(code) = report.command_exit_code {
        let _ = writeln!(out, "command exited with code {code}");
    }
    let o = &report.overflow;
    if o.any() {
        let _ = writeln!(
            out,
            "WARNING: events lost to full maps: {} slot collisions, {} stats-map full, {} errno-map full, {} process-map full, {} follow-map full (raise the --max-* flags)",
            o.slot_collisions, o.stats_full, o.errno_full, o.process_full, o.follow_full
        );
    }
    let _ = writeln!(out, "split bar: E entry (boundary crossing)  H handler (on-CPU in kernel)  B blocked (asleep)  R runqueue (waiting for a CPU)");
    if report.processes.is_empty() {
        let _ = writeln!(out, "\nno syscalls were recorded");
    }
    for process in report.processes.iter().take(options.processes) {
        let s = &process.split;
        let t = process.total_ns;
        let _ = writeln!(
            out,
            "\nPID {} {}  calls {}  errors {}  syscall time {}  [{}]  {}",
            process.pid,
            process.comm,
            format_count(process.calls),
            format_count(process.errors),
            format_ns(t),
            split_bar(s, 20),
            process.class
        );
        let _ = writeln!(
            out,
            "  entry {} ({:.0}%)  handler {} ({:.0}%)  blocked {} ({:.0}%)  runqueue {} ({:.0}%)",
            format_ns(s.entry_ns),
            percent(s.entry_ns, t),
            format_ns(s.handler_ns),
            percent(s.handler_ns, t),
            format_ns(s.blocked_ns),
            percent(s.blocked_ns, t),
            format_ns(s.runqueue_ns),
            percent(s.runqueue_ns, t)
        );
        let _ = writeln!(
            out,
            "  {:<18} {:>11} {:>8} {:>10} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  CLASS",
            "SYSCALL", "CALLS", "ERRORS", "TOTAL", "SPLIT", "ENTRY", "HANDLER", "BLOCKED", "RUNQ", "P50", "P99",
        );
        for syscall in process.syscalls.iter().take(options.syscalls) {
            let name = if syscall.abi == "x86_64" {
                syscall.name.clone()
            } else {
                format!("{} ({})", syscall.name, syscall.abi)
            };
            let s = &syscall.split;
            let _ = writeln!(
                out,
                "  {:<18} {:>11} {:>8} {:>10} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                name,
                format_count(syscall.calls),
                format_count(syscall.errors),
                format_ns(syscall.total_ns),
                split_bar(s, 20),
                format_ns(s.entry_ns),
                format_ns(s.handler_ns),
                format_ns(s.blocked_ns),
                format_ns(s.runqueue_ns),
                format_ns(syscall.latency_ns.p50),
                format_ns(syscall.latency_ns.p99),
                syscall.class
            );
            if !syscall.errno.is_empty() {
                let mut errnos: Vec<(&String, &u64)> = syscall.errno.iter().collect();
                errnos.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let list: Vec<String> = errnos
                    .iter()
                    .map(|(name, count)| format!("{name} {}", format_count(**count)))
                    .collect();
                let _ = writeln!(out, "  {:<18} errors: {}", "", list.join(", "));
            }
        }
        let mut advised = Vec::new();
        for syscall in process.syscalls.iter().take(options.syscalls) {
            if syscall.class != "mixed" && !advised.contains(&syscall.class) {
                let _ = writeln!(out, "  -> {} ({}): {}", syscall.class, syscall.name, syscall.advice);
                advised.push(syscall.class.clone());
            }
        }
        if process.syscalls.len() > options.syscalls {
            let _ = writeln!(out, "  ... {} more syscalls", process.syscalls.len() - options.syscalls);
        }
    }
    if report.processes.len() > options.processes {
        let _ = writeln!(
            out,
            "\n... {} more processes (--limit N shows more; --format json has all)",
            report.processes.len() - options.processes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use profiler_common::{hist_bucket, NR_IA32_FLAG};

    use super::*;

    fn totals(calls: u64, handler_ns: u64, blocked_ns: u64, runqueue_ns: u64, latency_ns: u64) -> SyscallTotals {
        let mut t = SyscallTotals {
            calls,
            handler_ns,
            blocked_ns,
            runqueue_ns,
            ..Default::default()
        };
        t.latency.buckets[hist_bucket(latency_ns)] = calls;
        t.latency.max_ns = latency_ns;
        t
    }

    fn sample() -> Report {
        let mut map = BTreeMap::new();
        map.insert(StatsKey { tgid: 100, nr: 110 }, totals(1_000_000, 30_000_000, 0, 0, 30));
        let mut openat = totals(10, 20_000, 0, 0, 2_000);
        openat.errors = 10;
        openat.errnos.insert(2, 10);
        map.insert(StatsKey { tgid: 100, nr: 257 }, openat);
        map.insert(
            StatsKey { tgid: 200, nr: 35 },
            totals(10, 1_000, 1_000_000_000, 0, 100_000_000),
        );
        map.insert(
            StatsKey {
                tgid: 300,
                nr: 3 | NR_IA32_FLAG,
            },
            totals(5, 500, 0, 0, 100),
        );
        map.insert(StatsKey { tgid: 300, nr: 0 }, totals(0, 0, 0, 0, 0));
        let comm = |pid: u32| format!("proc{pid}");
        build(&Inputs {
            totals: &map,
            comm: &comm,
            duration_ns: 1_000_000_000,
            boundary_ns_per_call: 50.0,
            instrumentation_ns_per_call: 0.0,
            scope: "system-wide",
            sample_every: 1,
            command_exit_code: None,
            overflow: Overflow::default(),
        })
    }

    #[test]
    fn processes_are_ranked_by_total_time_and_rows_add_up() {
        let report = sample();
        let pids: Vec<u32> = report.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![200, 100, 300]);
        for process in &report.processes {
            let s = process.split;
            assert_eq!(
                process.total_ns,
                s.entry_ns + s.handler_ns + s.blocked_ns + s.runqueue_ns
            );
            for syscall in &process.syscalls {
                let s = syscall.split;
                assert_eq!(
                    syscall.total_ns,
                    s.entry_ns + s.handler_ns + s.blocked_ns + s.runqueue_ns
                );
            }
            assert_eq!(process.calls, process.syscalls.iter().map(|s| s.calls).sum::<u64>());
        }
    }

    #[test]
    fn rows_carry_names_errnos_classes_and_entry_cost() {
        let report = sample();
        let p100 = &report.processes[1];
        assert_eq!(p100.comm, "proc100");
        let getppid = &p100.syscalls[0];
        assert_eq!(getppid.name, "getppid");
        assert_eq!(getppid.split.entry_ns, 50_000_000);
        assert_eq!(getppid.class, "tiny-frequent");
        // The boundary cost is part of every call's latency.
        assert!(
            getppid.latency_ns.p50 >= 50 + 26 && getppid.latency_ns.p50 <= 50 + 30,
            "{:?}",
            getppid.latency_ns
        );
        let openat = &p100.syscalls[1];
        assert_eq!(openat.errno.get("ENOENT"), Some(&10));
        let nanosleep = &report.processes[0].syscalls[0];
        assert_eq!(nanosleep.name, "nanosleep");
        assert_eq!(nanosleep.class, "blocked");
        let ia32 = &report.processes[2];
        assert_eq!(ia32.syscalls.len(), 1, "zero-call rows are dropped");
        assert_eq!(
            (ia32.syscalls[0].name.as_str(), ia32.syscalls[0].abi.as_str()),
            ("read", "ia32")
        );
    }

    #[test]
    fn json_has_the_schema_fields() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(value["schema_version"], 1);
        for field in ["duration_ns", "boundary_ns_per_call", "processes"] {
            assert!(!value[field].is_null(), "{field}");
        }
        let process = &value["processes"][1];
        for field in [
            "pid",
            "comm",
            "calls",
            "errors",
            "total_ns",
            "entry_ns",
            "handler_ns",
            "blocked_ns",
            "runqueue_ns",
            "syscalls",
        ] {
            assert!(!process[field].is_null(), "process.{field}");
        }
        let syscall = &process["syscalls"][1];
        for field in [
            "name",
            "nr",
            "abi",
            "calls",
            "errors",
            "errno",
            "total_ns",
            "entry_ns",
            "handler_ns",
            "blocked_ns",
            "runqueue_ns",
            "latency_ns",
            "class",
            "advice",
        ] {
            assert!(!syscall[field].is_null(), "syscall.{field}");
        }
        for field in ["p50", "p90", "p99", "max"] {
            assert!(syscall["latency_ns"][field].is_u64(), "latency_ns.{field}");
        }
        assert_eq!(syscall["errno"]["ENOENT"], 10);
        assert_eq!(syscall["nr"], 257);
        assert_eq!(syscall["abi"], "x86_64");
    }

    #[test]
    fn text_shows_split_errors_and_advice() {
        let text = render_text(
            &sample(),
            &TextOptions {
                processes: 10,
                syscalls: 10,
            },
        );
        assert!(text.contains("PID 100 proc100"), "{text}");
        assert!(text.contains("errors: ENOENT 10"), "{text}");
        assert!(
            text.contains("-> tiny-frequent (getppid): boundary cost dominates"),
            "{text}"
        );
        assert!(text.contains("read (ia32)"), "{text}");
        let limited = render_text(
            &sample(),
            &TextOptions {
                processes: 1,
                syscalls: 1,
            },
        );
        assert!(limited.contains("... 2 more processes"), "{limited}");
    }

    #[test]
    fn number_formats() {
        assert_eq!(format_ns(12), "12 ns");
        assert_eq!(format_ns(1_234), "1.23 µs");
        assert_eq!(format_ns(45_600_000), "45.6 ms");
        assert_eq!(format_ns(123_000_000_000), "123 s");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(format_count(100), "100");
    }

    #[test]
    fn bar_is_exactly_as_wide_as_asked_and_proportional() {
        let split = Split {
            entry_ns: 10,
            handler_ns: 40,
            blocked_ns: 50,
            runqueue_ns: 0,
        };
        let bar = split_bar(&split, 20);
        assert_eq!(bar, "EEHHHHHHHHBBBBBBBBBB");
        let odd = Split {
            entry_ns: 1,
            handler_ns: 1,
            blocked_ns: 1,
            runqueue_ns: 0,
        };
        assert_eq!(split_bar(&odd, 10).len(), 10);
        assert_eq!(split_bar(&Split::default(), 5), "     ");
    }
}
