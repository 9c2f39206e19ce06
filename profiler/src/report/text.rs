//! The report as text: a header, then per process its split as numbers and a bar, and its top
//! syscalls with calls, errors, the split, p50/p99, class, errors by errno and advice.
use std::fmt::Write;

use profiler_common::counter;

use crate::{
    model::{
        charges::BoundarySource,
        split::{split_cells, Split},
        threads::Hang,
        wait::WaitSite,
    },
    report::{ProcessReport, Report},
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
    let host = &report.host;
    if !host.hostname.is_empty() {
        let _ = writeln!(
            out,
            "host {}, kernel {}, {}, started {}",
            host.hostname, host.kernel_release, host.cpu_model, host.time
        );
    }
    let cost = &report.agent_cost;
    let _ = writeln!(
        out,
        "profiler's own cost: {} to start ({} of CPU: loading, checking and calibrating), then {:.2}% of one CPU while profiling",
        format_ns(cost.startup_ns),
        format_ns(cost.startup_cpu_ns),
        cost.profiling_cpu_percent()
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
    if let Some(lost) = report.threads_lost.filter(|&lost| lost > 0) {
        let _ = writeln!(
            out,
            "note: {} calls found no room in the per-thread table: counted in their processes, missing from their threads",
            format_count(lost)
        );
    }
    if report.wait_sites_lost > 0 {
        let _ = writeln!(
            out,
            "note: the wait sites of {} blocked calls were not recorded (a table full): the sites shown are short of them",
            format_count(report.wait_sites_lost)
        );
    }
    match (report.command_exit_code, &report.command_signal) {
        (Some(code), Some(signal)) => {
            let _ = writeln!(out, "command killed by {signal} (exit code {code})");
        }
        (Some(code), None) => {
            let _ = writeln!(out, "command exited with code {code}");
        }
        _ => {}
    }
    if report.overflow.any() {
        let lost: Vec<String> = report
            .overflow
            .by_name()
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let unseen = report.overflow.0[counter::EXIT_UNSEEN as usize];
        let advice = if report.overflow.total() > unseen {
            " (full maps: raise the --max-* flags)"
        } else {
            " (calls whose exit was not matched to them: a profiler bug, please report it)"
        };
        let _ = writeln!(out, "WARNING: calls not counted: {}{advice}", lost.join(", "));
    }
    let _ = writeln!(out, "split bar: E entry (boundary crossing)  H handler (on-CPU in kernel)  B blocked (asleep)  R runqueue (waiting for a CPU)");
    if report.processes.is_empty() {
        let _ = writeln!(out, "\nno syscalls were recorded");
    }
    for process in report.processes.iter().take(options.processes) {
        let s = &process.split;
        let t = process.total_ns;
        let waiting = if process.active_ns < t {
            format!(" ({} waiting by design)", format_ns(t - process.active_ns))
        } else {
            String::new()
        };
        let who = match process.pids.len() {
            1 => format!("PID {} {}", process.pid, process.comm),
            n => format!("{} ({n} processes)", process.comm),
        };
        let _ = writeln!(
            out,
            "\n{who}  calls {}  errors {}  syscall time {}{waiting}  [{}]  {}",
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
            let name = if crate::model::names::is_native(&syscall.abi) {
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
            for site in syscall.wait_sites.iter().take(SITES_SHOWN) {
                let io = if site.io_wait { ", I/O" } else { "" };
                let _ = writeln!(
                    out,
                    "  {:<18} waits in {}: {} calls, {} asleep{io}; woken by {}",
                    "",
                    site.site,
                    format_count(site.calls),
                    format_ns(site.blocked_ns),
                    wakers_text(site)
                );
            }
            for file in syscall.waited_on.iter().take(SITES_SHOWN) {
                let other_end = if file.other_end.is_empty() {
                    String::new()
                } else {
                    format!(" (also open in {})", file.other_end.join(", "))
                };
                let _ = writeln!(
                    out,
                    "  {:<18} on fd {} {}{other_end}: {} calls, {} asleep",
                    "",
                    file.fd,
                    file.target,
                    format_count(file.calls),
                    format_ns(file.blocked_ns)
                );
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
        render_threads(&mut out, process, options);
    }
    if report.processes.len() > options.processes {
        let _ = writeln!(
            out,
            "\n... {} more processes (--limit N shows more; --format json has all)",
            report.processes.len() - options.processes
        );
    }
    render_hangs(&mut out, report);
    out
}

/// Who woke a site's calls: `4242 pipe-writer (10), interrupt or idle (2)`.
pub fn wakers_text(site: &WaitSite) -> String {
    let wakers: Vec<String> = site
        .wakers
        .iter()
        .map(|waker| match waker.pid {
            0 => format!("{} ({})", waker.name, format_count(waker.calls)),
            pid => format!("{pid} {} ({})", waker.name, format_count(waker.calls)),
        })
        .collect();
    wakers.join(", ")
}

/// A process's threads (`--threads`): each with its split and its top syscalls.
fn render_threads(out: &mut String, process: &ProcessReport, options: &TextOptions) {
    if process.threads.is_empty() {
        return;
    }
    let _ = writeln!(out, "  threads ({}):", process.threads.len());
    for thread in process.threads.iter().take(options.syscalls) {
        let top: Vec<String> = thread
            .syscalls
            .iter()
            .take(THREAD_SYSCALLS_SHOWN)
            .map(|syscall| format!("{} {}", syscall.name, format_ns(syscall.total_ns)))
            .collect();
        let _ = writeln!(
            out,
            "    TID {:<8} {:<16} calls {:>9}  errors {:>7}  {:>9} [{}]  {}",
            thread.tid,
            thread.name,
            format_count(thread.calls),
            format_count(thread.errors),
            format_ns(thread.total_ns),
            split_bar(&thread.split, 20),
            top.join(", ")
        );
    }
    if process.threads.len() > options.syscalls {
        let _ = writeln!(out, "    ... {} more threads", process.threads.len() - options.syscalls);
    }
}

/// Syscalls named per thread in the text report.
const THREAD_SYSCALLS_SHOWN: usize = 3;

/// The threads inside one call for longer than the threshold at the end, and what each waits
/// on.
fn render_hangs(out: &mut String, report: &Report) {
    if !report.in_flight.is_empty() {
        let _ = writeln!(
            out,
            "\nInside one call for more than {} at the end:",
            format_ns(report.hang_threshold_ns)
        );
        render_hang_list(out, &report.in_flight, report.in_flight_total);
    }
    if !report.returned.is_empty() {
        let _ = writeln!(
            out,
            "\nAsleep in one call for more than {} at the start, returned during the report (as read then):",
            format_ns(report.hang_threshold_ns)
        );
        render_hang_list(out, &report.returned, report.returned.len());
    }
}

/// `hangs`, the first [`HANGS_SHOWN`] of `total`.
fn render_hang_list(out: &mut String, hangs: &[Hang], total: usize) {
    for hang in hangs.iter().take(HANGS_SHOWN) {
        let name = if hang.thread.is_empty() || hang.thread == hang.comm {
            hang.comm.clone()
        } else {
            format!("{}/{}", hang.comm, hang.thread)
        };
        let since = if hang.since_before_start {
            format!(">= {} (since before the start)", format_ns(hang.elapsed_ns))
        } else {
            format_ns(hang.elapsed_ns)
        };
        let io = if hang.io_wait { ", I/O wait" } else { "" };
        let _ = writeln!(
            out,
            "  TID {} (PID {} {name})  {}  {since}  {}{io}",
            hang.tid, hang.pid, hang.syscall, hang.state
        );
        if !hang.wait_site.is_empty() {
            let _ = writeln!(out, "    waiting in {}", hang.wait_site);
        }
        let on = match (&hang.fd, &hang.target, &hang.path) {
            (Some(fd), Some(target), _) => Some(format!("fd {fd}: {target}")),
            (_, _, Some(path)) => Some(format!("path {path}")),
            _ => None,
        };
        if let Some(on) = on {
            let other_end = if hang.other_end.is_empty() {
                String::new()
            } else {
                format!(" (also open in {})", hang.other_end.join(", "))
            };
            let _ = writeln!(out, "    on {on}{other_end}");
        }
    }
    let shown = hangs.len().min(HANGS_SHOWN);
    if total > shown {
        let _ = writeln!(
            out,
            "  ... {} more (--format json lists up to {})",
            total - shown,
            crate::report::HANGS_LISTED
        );
    }
}

/// Wait sites the text report shows per syscall (JSON: up to `WAIT_SITES_LISTED`).
const SITES_SHOWN: usize = 3;

/// Hangs the text report shows.
const HANGS_SHOWN: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::threads::Hang, report::tests::sample};

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
        assert!(
            text.contains("profiler's own cost: 2.50 s to start (800 ms of CPU: loading, checking and calibrating), then 0.41% of one CPU while profiling"),
            "{text}"
        );
        let limited = render_text(
            &sample(),
            &TextOptions {
                processes: 1,
                syscalls: 1,
            },
        );
        assert!(limited.contains("... 3 more processes"), "{limited}");
        // Waiting by design is said, and the waiting process comes last.
        assert!(
            text.contains("syscall time 5.00 s (5.00 s waiting by design)"),
            "{text}"
        );
        assert!(text.find("PID 400").unwrap() > text.find("PID 300").unwrap(), "{text}");
    }

    #[test]
    fn hangs_are_listed_with_what_they_wait_on() {
        let mut report = sample();
        assert!(!render_text(&report, &options()).contains("Inside one call"));
        report.in_flight = vec![Hang {
            tid: 42,
            pid: 41,
            comm: "cat".into(),
            thread: "cat".into(),
            syscall: "read".into(),
            abi: "x86_64".into(),
            elapsed_ns: 12_000_000_000,
            since_before_start: true,
            state: "asleep".into(),
            wait_site: "pipe_read <- vfs_read <- ksys_read".into(),
            io_wait: false,
            fd: Some(0),
            target: Some("pipe:[1234]".into()),
            path: None,
            other_end: vec!["40 sleep".into()],
        }];
        report.in_flight_total = 25;
        let text = render_text(&report, &options());
        assert!(
            text.contains("Inside one call for more than 1.00 s at the end:"),
            "{text}"
        );
        assert!(
            text.contains("TID 42 (PID 41 cat)  read  >= 12.0 s (since before the start)  asleep"),
            "{text}"
        );
        assert!(
            text.contains("    waiting in pipe_read <- vfs_read <- ksys_read"),
            "{text}"
        );
        assert!(
            text.contains("    on fd 0: pipe:[1234] (also open in 40 sleep)"),
            "{text}"
        );
        assert!(text.contains("... 24 more (--format json lists up to 200)"), "{text}");
    }

    fn options() -> TextOptions {
        TextOptions {
            processes: 20,
            syscalls: 10,
        }
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
