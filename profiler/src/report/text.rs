//! The report as text: a header, then per process its split as numbers and a bar, and its top
//! syscalls with calls, errors, the split, p50/p99, class, errors by errno and advice.
use std::fmt::Write;

use crate::{
    model::{
        charges::BoundarySource,
        split::{split_cells, Split},
    },
    report::Report,
};

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
    let charges = &report.charges;
    let boundary = match charges.boundary_source {
        BoundarySource::Calibrated => format!(
            "boundary cost {:.1} ns/call (±{:.1})",
            charges.boundary_ns_per_call, charges.boundary_spread_ns
        ),
        BoundarySource::Pinned => format!("boundary cost {:.1} ns/call (pinned)", charges.boundary_ns_per_call),
        BoundarySource::TooBusy => format!("boundary cost {}", charges.boundary_source.describe()),
    };
    let _ = writeln!(
        out,
        "syscall-profiler report: {} ({}), {} calls in {} processes; {boundary}, tracing {:.1} ns/call taken out of handler times",
        format_ns(report.duration_ns),
        report.scope,
        format_count(total_calls),
        report.processes.len(),
        charges.instrumentation_ns_per_call
    );
    if report.sample_every > 1 {
        let _ = writeln!(
            out,
            "times sampled: 1 in {} of the short calls that stay on the CPU (counts exact; calls that sleep always timed; --sample 1 times every call)",
            report.sample_every
        );
    }
    let cut: Vec<(u64, &str)> = report
        .processes
        .iter()
        .flat_map(|process| process.syscalls.iter())
        .filter(|syscall| syscall.sampling_cut_ns > 0)
        .map(|syscall| (syscall.sampling_cut_ns, syscall.name.as_str()))
        .collect();
    if !cut.is_empty() {
        let total: u64 = cut.iter().map(|(ns, _)| ns).sum();
        let _ = writeln!(
            out,
            "sampled estimates bounded: {} of handler time beyond what the threads could spend taken out ({} rows; an outlier sampled call, e.g. host steal)",
            format_ns(total),
            cut.len()
        );
    }
    if let Some(code) = report.command_exit_code {
        let _ = writeln!(out, "command exited with code {code}");
    }
    if report.overflow.any() {
        let lost: Vec<String> = report
            .overflow
            .by_name()
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let _ = writeln!(
            out,
            "WARNING: events lost to full maps: {} (raise the --max-* flags)",
            lost.join(", ")
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
    use super::*;
    use crate::report::tests::sample;

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
