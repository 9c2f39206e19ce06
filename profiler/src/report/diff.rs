//! A diff of two reports as text (`syscall-profiler diff A B`).
use std::fmt::Write as _;

use crate::{
    model::diff::{change, DiffReport, DiffRow, Side},
    report::text::{format_count, format_ns},
};

/// `1.23 ms/s`: a time per second.
fn per_second(ns: f64) -> String {
    format!("{}/s", format_ns(ns.round() as u64))
}

fn signed_per_second(ns: f64) -> String {
    let sign = if ns < 0.0 { "-" } else { "+" };
    format!("{sign}{}", format_ns(ns.abs().round() as u64))
}

/// The text comparison: a header, then the rows that changed most.
pub fn render_diff_text(report: &DiffReport, limit: usize) -> String {
    let mut out = String::new();
    let side = |name: &str, side: &Side| {
        format!(
            "{name} = {} ({}{}, {})",
            side.path,
            if side.host.hostname.is_empty() {
                "?"
            } else {
                &side.host.hostname
            },
            if side.host.time.is_empty() {
                String::new()
            } else {
                format!(" at {}", side.host.time)
            },
            format_ns(side.duration_ns)
        )
    };
    let _ = writeln!(
        out,
        "syscall-profiler diff: {} -> {}",
        side("A", &report.a),
        side("B", &report.b)
    );
    let _ = writeln!(
        out,
        "per second of each report; ranked by the change in syscall time per second"
    );
    let _ = writeln!(
        out,
        "\n{:<16} {:<16} {:>23} {:>27} {:>9} {:>9} {:>9} {:>9} {:>21} {:>15}",
        "GROUP",
        "SYSCALL",
        "CALLS/s A -> B",
        "TIME/s A -> B",
        "ENTRY",
        "HANDLER",
        "BLOCKED",
        "RUNQ",
        "P99 A -> B",
        "ERR/s A -> B"
    );
    for row in report.rows.iter().take(limit) {
        let (a, b) = (&row.a, &row.b);
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:>23} {:>27} {:>9} {:>9} {:>9} {:>9} {:>21} {:>15}",
            truncate(&row.group, 16),
            truncate(&format_syscall(row), 16),
            format!(
                "{} -> {} {}",
                format_count(a.calls.round() as u64),
                format_count(b.calls.round() as u64),
                change(a.calls, b.calls)
            ),
            format!(
                "{} -> {} {}",
                per_second(a.time_ns),
                per_second(b.time_ns),
                change(a.time_ns, b.time_ns)
            ),
            signed_per_second(b.entry_ns - a.entry_ns),
            signed_per_second(b.handler_ns - a.handler_ns),
            signed_per_second(b.blocked_ns - a.blocked_ns),
            signed_per_second(b.runqueue_ns - a.runqueue_ns),
            format!("{} -> {}", format_ns(a.p99_ns), format_ns(b.p99_ns)),
            format!(
                "{} -> {}",
                format_count(a.errors.round() as u64),
                format_count(b.errors.round() as u64)
            ),
        );
        for site in &row.wait_sites {
            let _ = writeln!(
                out,
                "{:<33} waits in {}: {} -> {} asleep",
                "",
                site.site,
                per_second(site.blocked_ns_a),
                per_second(site.blocked_ns_b)
            );
        }
    }
    if report.rows.len() > limit {
        let _ = writeln!(
            out,
            "... {} more rows (--limit N shows more; --format json has all)",
            report.rows.len() - limit
        );
    }
    out
}

fn format_syscall(row: &DiffRow) -> String {
    if crate::model::names::is_native(&row.abi) {
        row.syscall.clone()
    } else {
        format!("{} ({})", row.syscall, row.abi)
    }
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}
