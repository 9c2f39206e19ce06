//! Reports as one self-contained HTML file a responder attaches to a ticket (`report --html`,
//! `diff --html`): no network to open it (inline CSS, SVG and a little JavaScript, no
//! fonts or images), and everything readable with JavaScript off; the script only sorts the
//! tables by a click on a column and filters the processes.
use std::fmt::Write as _;

use crate::{
    model::{
        diff::{change, DiffReport},
        split::Split,
        thread_rows::ThreadReport,
        threads::Hang,
    },
    report::{
        text::{format_count, format_ns, wakers_text},
        ProcessReport, Report, SyscallReport,
    },
};

/// Colours of entry, handler, blocked, runqueue (as `syscall-top` draws them).
const PART_COLORS: [&str; 4] = ["#d4a000", "#2e8b57", "#3b6fd6", "#b03aa0"];
const PART_NAMES: [&str; 4] = ["entry", "handler", "blocked", "runqueue"];

/// Processes whose syscalls are detailed (the table lists them all).
const PROCESSES_DETAILED: usize = 50;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#1d1d1d;max-width:1400px}
h1{font-size:1.4em;margin:0 0 .4em}h2{font-size:1.15em;margin:1.4em 0 .5em}h3{font-size:1em;margin:.8em 0 .3em}
dl.header{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dl.header dt{color:#666}dl.header dd{margin:0}
table{border-collapse:collapse;margin:.3em 0}th,td{padding:3px 9px;text-align:right;border-bottom:1px solid #e6e6e6;white-space:nowrap}
th{background:#f3f3f3;font-weight:600}table.sortable th[data-type]{cursor:pointer}th[data-sorted=desc]::after{content:' \\25BC'}th[data-sorted=asc]::after{content:' \\25B2'}
.name{text-align:left}.legend span{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;vertical-align:-1px}
details{margin:.4em 0;border-left:3px solid #ddd;padding-left:10px}summary{cursor:pointer;font-weight:600}
.syscall{margin:.6em 0 1em}.note{color:#555;font-size:13px}ul.sites{margin:.2em 0;padding-left:1.2em;font-size:13px}
#filter{margin:.3em 0;padding:3px 6px;width:18em}.warning{color:#b00000;font-weight:600}
";

const SCRIPT: &str = "
(function () {
  function value(cell) {
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent.trim().toLowerCase() : parseFloat(v);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      if (!th.hasAttribute('data-type')) return;
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var descending = th.getAttribute('data-sorted') !== 'desc';
        rows.sort(function (a, b) {
          var x = value(a.cells[column]), y = value(b.cells[column]);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-sorted'); });
        th.setAttribute('data-sorted', descending ? 'desc' : 'asc');
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var filter = document.getElementById('filter');
  if (filter) {
    filter.hidden = false;
    filter.addEventListener('input', function () {
      var query = filter.value.trim().toLowerCase();
      document.querySelectorAll('table.filtered tbody tr').forEach(function (row) {
        var text = (row.getAttribute('data-search') || '').toLowerCase();
        row.hidden = query !== '' && text.indexOf(query) < 0;
      });
    });
  }
  document.body.setAttribute('data-ready', '1');
})();
";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    );
}

fn page_end(out: &mut String) {
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
}

/// A stacked bar of the four parts, `width` pixels for the whole.
fn split_svg(split: &Split, width: u32) -> String {
    let fractions = split.fractions();
    let mut svg = format!(
        "<svg class=\"split\" width=\"{width}\" height=\"12\" role=\"img\" aria-label=\"split\"><rect width=\"{width}\" height=\"12\" fill=\"#eee\"/>"
    );
    let mut x = 0.0;
    for ((fraction, color), name) in fractions.iter().zip(PART_COLORS).zip(PART_NAMES) {
        let w = fraction * f64::from(width);
        if w > 0.0 {
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" width=\"{w:.1}\" height=\"12\" fill=\"{color}\"><title>{name} {:.0}%</title></rect>",
                fraction * 100.0
            );
        }
        x += w;
    }
    svg.push_str("</svg>");
    svg
}

fn legend() -> String {
    let mut html = String::from("<p class=\"legend\">split:");
    for (name, color) in PART_NAMES.iter().zip(PART_COLORS) {
        let _ = write!(html, "<span style=\"background:{color}\"></span>{name}");
    }
    html.push_str("</p>\n");
    html
}

/// A numeric cell, sortable by its value.
fn num(value: u64, text: &str) -> String {
    format!("<td data-v=\"{value}\">{}</td>", esc(text))
}

fn ns_cell(ns: u64) -> String {
    num(ns, &format_ns(ns))
}

fn count_cell(n: u64) -> String {
    num(n, &format_count(n))
}

/// The self-contained HTML page of a report.
pub fn render_report_html(report: &Report) -> String {
    let mut out = String::new();
    let host = &report.host;
    page_start(
        &mut out,
        &format!("syscall-profiler report: {} at {}", host.hostname, host.time),
    );
    let _ = writeln!(
        out,
        "<header id=\"header\">\n<h1>syscall-profiler report</h1>\n<dl class=\"header\">"
    );
    let command = host.command_line.join(" ");
    let exit = match (report.command_exit_code, &report.command_signal) {
        (Some(code), Some(signal)) => format!("killed by {signal} (exit code {code})"),
        (Some(code), None) => format!("exited with code {code}"),
        _ => String::new(),
    };
    for (term, text) in [
        ("host", host.hostname.clone()),
        ("kernel", host.kernel_release.clone()),
        ("CPU", host.cpu_model.clone()),
        ("started", host.time.clone()),
        ("duration", format_ns(report.duration_ns)),
        ("scope", report.scope.clone()),
        ("command line", command),
        ("command", exit),
        (
            "boundary cost",
            format!(
                "{:.1} ns per call; tracing {:.1} ns per call taken out of handler times",
                report.charges.boundary_ns_per_call, report.charges.instrumentation_ns_per_call
            ),
        ),
        (
            "timing",
            if report.sample_every > 1 {
                format!("1 in {} short calls timed (counts exact)", report.sample_every)
            } else {
                "every call timed".to_owned()
            },
        ),
    ] {
        if !text.is_empty() {
            let _ = writeln!(out, "<dt>{term}</dt><dd>{}</dd>", esc(&text));
        }
    }
    let _ = writeln!(out, "</dl>\n</header>");
    if report.overflow.any() {
        let _ = writeln!(
            out,
            "<p class=\"warning\">{} calls were not counted (tables full, or see <code>overflow</code> in the JSON report): counts are short of them.</p>",
            report.overflow.total()
        );
    }
    out.push_str(&legend());
    render_process_table(&mut out, report);
    render_hangs_html(&mut out, report);
    let _ = writeln!(out, "<section id=\"details\">\n<h2>Syscalls by process</h2>");
    for (index, process) in report.processes.iter().take(PROCESSES_DETAILED).enumerate() {
        render_process_details(&mut out, process, index < 3);
    }
    if report.processes.len() > PROCESSES_DETAILED {
        let _ = writeln!(
            out,
            "<p class=\"note\">The first {PROCESSES_DETAILED} processes are detailed; the JSON report has them all.</p>"
        );
    }
    let _ = writeln!(out, "</section>");
    page_end(&mut out);
    out
}

fn render_process_table(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "<section id=\"summary\">\n<h2>Processes ({})</h2>\n<input id=\"filter\" type=\"search\" placeholder=\"filter by name or pid\" hidden>\n<table id=\"processes\" class=\"sortable filtered\">\n<thead><tr><th class=\"name\" data-type=\"text\">process</th><th data-type=\"num\">pid</th><th data-type=\"num\">calls</th><th data-type=\"num\">errors</th><th data-type=\"num\">syscall time</th><th data-type=\"num\">holding work up</th><th class=\"name\">split</th><th class=\"name\" data-type=\"text\">class</th></tr></thead>\n<tbody>",
        report.processes.len()
    );
    for process in &report.processes {
        let _ = writeln!(
            out,
            "<tr data-search=\"{} {}\"><td class=\"name\"><a href=\"#p{}\">{}</a>{}</td>{}{}{}{}{}<td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
            esc(&process.comm),
            process.pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
            process.pid,
            esc(&process.comm),
            if process.pids.len() > 1 {
                format!(" ({} processes)", process.pids.len())
            } else {
                String::new()
            },
            num(u64::from(process.pid), &process.pid.to_string()),
            count_cell(process.calls),
            count_cell(process.errors),
            ns_cell(process.total_ns),
            ns_cell(process.active_ns),
            split_svg(&process.split, 160),
            esc(&process.class)
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</section>");
}

fn render_process_details(out: &mut String, process: &ProcessReport, open: bool) {
    let _ = writeln!(
        out,
        "<details id=\"p{}\"{}><summary>PID {} {} - {} in {} calls, {}</summary>",
        process.pid,
        if open { " open" } else { "" },
        process.pid,
        esc(&process.comm),
        format_ns(process.total_ns),
        format_count(process.calls),
        esc(&process.class)
    );
    let _ = writeln!(
        out,
        "<table class=\"syscalls sortable\">\n<thead><tr><th class=\"name\" data-type=\"text\">syscall</th><th data-type=\"num\">calls</th><th data-type=\"num\">errors</th><th data-type=\"num\">total</th><th data-type=\"num\">entry</th><th data-type=\"num\">handler</th><th data-type=\"num\">blocked</th><th data-type=\"num\">runqueue</th><th class=\"name\">split</th><th data-type=\"num\">p50</th><th data-type=\"num\">p99</th><th class=\"name\" data-type=\"text\">class</th></tr></thead>\n<tbody>"
    );
    for syscall in &process.syscalls {
        let _ = writeln!(
            out,
            "<tr><td class=\"name\"><a href=\"#p{}-{}-{}\">{}</a></td>{}{}{}{}{}{}{}<td class=\"name\">{}</td>{}{}<td class=\"name\">{}</td></tr>",
            process.pid,
            esc(&syscall.name),
            esc(&syscall.abi),
            syscall_label(syscall),
            count_cell(syscall.calls),
            count_cell(syscall.errors),
            ns_cell(syscall.total_ns),
            ns_cell(syscall.split.entry_ns),
            ns_cell(syscall.split.handler_ns),
            ns_cell(syscall.split.blocked_ns),
            ns_cell(syscall.split.runqueue_ns),
            split_svg(&syscall.split, 120),
            ns_cell(syscall.latency_ns.p50),
            ns_cell(syscall.latency_ns.p99),
            esc(&syscall.class)
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    for syscall in process.syscalls.iter().filter(|s| s.calls > 0) {
        render_syscall_detail(out, process.pid, syscall);
    }
    if !process.threads.is_empty() {
        render_threads_html(out, &process.threads);
    }
    let _ = writeln!(out, "</details>");
}

fn syscall_label(syscall: &SyscallReport) -> String {
    if crate::model::names::is_native(&syscall.abi) {
        esc(&syscall.name)
    } else {
        format!("{} ({})", esc(&syscall.name), esc(&syscall.abi))
    }
}

fn render_syscall_detail(out: &mut String, pid: u32, syscall: &SyscallReport) {
    let _ = writeln!(
        out,
        "<div class=\"syscall\" id=\"p{pid}-{}-{}\">\n<h3>{}: {} calls, p50 {}, p99 {}, max {}</h3>",
        esc(&syscall.name),
        esc(&syscall.abi),
        syscall_label(syscall),
        format_count(syscall.calls),
        format_ns(syscall.latency_ns.p50),
        format_ns(syscall.latency_ns.p99),
        format_ns(syscall.latency_ns.max)
    );
    out.push_str(&histogram_svg(&syscall.latency_histogram));
    let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&syscall.advice));
    if !syscall.errno.is_empty() {
        let mut errnos: Vec<(&String, &u64)> = syscall.errno.iter().collect();
        errnos.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = errnos
            .iter()
            .map(|(name, count)| format!("{} {}", esc(name), format_count(**count)))
            .collect();
        let _ = writeln!(out, "<p class=\"errors\">errors: {}</p>", list.join(", "));
    }
    if !syscall.wait_sites.is_empty() || !syscall.waited_on.is_empty() {
        let _ = writeln!(out, "<ul class=\"sites\">");
        for site in &syscall.wait_sites {
            let _ = writeln!(
                out,
                "<li class=\"site\">waits in <code>{}</code>: {} calls, {} asleep{}; woken by {}</li>",
                esc(&site.site),
                format_count(site.calls),
                format_ns(site.blocked_ns),
                if site.io_wait { ", I/O" } else { "" },
                esc(&wakers_text(site))
            );
        }
        for file in &syscall.waited_on {
            let _ = writeln!(
                out,
                "<li class=\"file\">on fd {} <code>{}</code>{}: {} calls, {} asleep</li>",
                file.fd,
                esc(&file.target),
                if file.other_end.is_empty() {
                    String::new()
                } else {
                    format!(" (also open in {})", esc(&file.other_end.join(", ")))
                },
                format_count(file.calls),
                format_ns(file.blocked_ns)
            );
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "</div>");
}

/// The latency histogram of a syscall as bars, one per range (`[low, high, count]`).
fn histogram_svg(buckets: &[[u64; 3]]) -> String {
    if buckets.is_empty() {
        return "<p class=\"note\">no latency recorded</p>\n".to_owned();
    }
    let bar = 22u32;
    let width = bar * buckets.len() as u32;
    let height = 70u32;
    let most = buckets.iter().map(|b| b[2]).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        "<svg class=\"histogram\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"latency histogram\">",
        width + 80,
        height + 16
    );
    for (i, [low, high, count]) in buckets.iter().enumerate() {
        let h = ((*count as f64 / most) * f64::from(height)).max(1.0);
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\" fill=\"#3b6fd6\"><title>{} - {}: {}</title></rect>",
            i as u32 * bar,
            f64::from(height) - h,
            bar - 2,
            format_ns(*low),
            format_ns(*high),
            format_count(*count)
        );
    }
    let (first, last) = (buckets[0][0], buckets[buckets.len() - 1][1]);
    let _ = writeln!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        height + 13,
        format_ns(first),
        width,
        height + 13,
        format_ns(last)
    );
    svg
}

fn render_threads_html(out: &mut String, threads: &[ThreadReport]) {
    let _ = writeln!(
        out,
        "<h3>Threads ({})</h3>\n<table class=\"threads sortable\">\n<thead><tr><th data-type=\"num\">tid</th><th class=\"name\" data-type=\"text\">name</th><th data-type=\"num\">calls</th><th data-type=\"num\">errors</th><th data-type=\"num\">total</th><th class=\"name\">split</th><th class=\"name\">top syscalls</th></tr></thead>\n<tbody>",
        threads.len()
    );
    for thread in threads {
        let top: Vec<String> = thread
            .syscalls
            .iter()
            .take(3)
            .map(|s| format!("{} {}", esc(&s.name), format_ns(s.total_ns)))
            .collect();
        let _ = writeln!(
            out,
            "<tr>{}<td class=\"name\">{}</td>{}{}{}<td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
            num(u64::from(thread.tid), &thread.tid.to_string()),
            esc(&thread.name),
            count_cell(thread.calls),
            count_cell(thread.errors),
            ns_cell(thread.total_ns),
            split_svg(&thread.split, 120),
            top.join(", ")
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
}

fn render_hangs_html(out: &mut String, report: &Report) {
    if report.in_flight.is_empty() && report.returned.is_empty() {
        return;
    }
    let _ = writeln!(out, "<section id=\"hangs\">\n<h2>Hangs</h2>");
    for (title, hangs) in [
        (
            format!(
                "Inside one call for more than {} at the end",
                format_ns(report.hang_threshold_ns)
            ),
            &report.in_flight,
        ),
        (
            format!(
                "Asleep in one call for more than {} at the start, returned during the report",
                format_ns(report.hang_threshold_ns)
            ),
            &report.returned,
        ),
    ] {
        if hangs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<h3>{}</h3>\n<ul class=\"hangs\">", esc(&title));
        for hang in hangs.iter() {
            let _ = writeln!(out, "<li>{}</li>", hang_text(hang));
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "</section>");
}

fn hang_text(hang: &Hang) -> String {
    let mut text = format!(
        "TID {} (PID {} {}) <code>{}</code> {}{} {}",
        hang.tid,
        hang.pid,
        esc(&hang.comm),
        esc(&hang.syscall),
        if hang.since_before_start { "&ge; " } else { "" },
        format_ns(hang.elapsed_ns),
        esc(&hang.state)
    );
    if !hang.wait_site.is_empty() {
        let _ = write!(text, ", waiting in <code>{}</code>", esc(&hang.wait_site));
    }
    if let (Some(fd), Some(target)) = (hang.fd, &hang.target) {
        let _ = write!(text, ", on fd {fd} <code>{}</code>", esc(target));
    }
    if let Some(path) = &hang.path {
        let _ = write!(text, ", path <code>{}</code>", esc(path));
    }
    if !hang.other_end.is_empty() {
        let _ = write!(text, " (also open in {})", esc(&hang.other_end.join(", ")));
    }
    text
}

/// Two bars: time per second in A (grey) and in B (blue), `width` for the larger.
fn two_bars_svg(a: f64, b: f64, most: f64, width: u32) -> String {
    let scale = |v: f64| (v / most.max(1.0) * f64::from(width)).max(if v > 0.0 { 1.0 } else { 0.0 });
    format!(
        "<svg class=\"change\" width=\"{width}\" height=\"14\" role=\"img\" aria-label=\"A and B\"><rect y=\"0\" width=\"{:.1}\" height=\"6\" fill=\"#9a9a9a\"><title>A</title></rect><rect y=\"7\" width=\"{:.1}\" height=\"6\" fill=\"#3b6fd6\"><title>B</title></rect></svg>",
        scale(a),
        scale(b)
    )
}

/// The self-contained HTML page of a diff.
pub fn render_diff_html(report: &DiffReport) -> String {
    let mut out = String::new();
    page_start(
        &mut out,
        &format!("syscall-profiler diff: {} vs {}", report.a.path, report.b.path),
    );
    let _ = writeln!(
        out,
        "<header id=\"header\">\n<h1>syscall-profiler diff</h1>\n<dl class=\"header\">"
    );
    for (name, side) in [("A", &report.a), ("B", &report.b)] {
        let _ = writeln!(
            out,
            "<dt>{name}</dt><dd>{} - {}, kernel {}, started {}, {}</dd>",
            esc(&side.path),
            esc(&side.host.hostname),
            esc(&side.host.kernel_release),
            esc(&side.host.time),
            format_ns(side.duration_ns)
        );
    }
    let _ = writeln!(
        out,
        "</dl>\n<p class=\"note\">Per second of each report; ranked by the change in syscall time per second (grey A, blue B).</p>\n</header>"
    );
    let most = report
        .rows
        .iter()
        .map(|row| row.a.time_ns.max(row.b.time_ns))
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "<section id=\"summary\">\n<input id=\"filter\" type=\"search\" placeholder=\"filter by group or syscall\" hidden>\n<table id=\"rows\" class=\"sortable filtered\">\n<thead><tr><th class=\"name\" data-type=\"text\">group</th><th class=\"name\" data-type=\"text\">syscall</th><th data-type=\"num\">calls/s A</th><th data-type=\"num\">calls/s B</th><th data-type=\"num\">time/s A</th><th data-type=\"num\">time/s B</th><th data-type=\"num\">change</th><th class=\"name\">A / B</th><th data-type=\"num\">entry</th><th data-type=\"num\">handler</th><th data-type=\"num\">blocked</th><th data-type=\"num\">runqueue</th><th data-type=\"num\">p99 A</th><th data-type=\"num\">p99 B</th><th data-type=\"num\">errors/s A</th><th data-type=\"num\">errors/s B</th><th class=\"name\">wait sites (asleep/s A &rarr; B)</th></tr></thead>\n<tbody>"
    );
    for row in &report.rows {
        let (a, b) = (&row.a, &row.b);
        let signed = |delta: f64| {
            let sign = if delta < 0.0 { "-" } else { "+" };
            format!(
                "<td data-v=\"{delta:.0}\">{sign}{}/s</td>",
                format_ns(delta.abs().round() as u64)
            )
        };
        let rate = |v: f64| format!("<td data-v=\"{v:.3}\">{}</td>", format_count(v.round() as u64));
        let time = |v: f64| format!("<td data-v=\"{v:.0}\">{}/s</td>", format_ns(v.round() as u64));
        let sites: Vec<String> = row
            .wait_sites
            .iter()
            .map(|site| {
                format!(
                    "<code>{}</code> {}/s &rarr; {}/s",
                    esc(&site.site),
                    format_ns(site.blocked_ns_a.round() as u64),
                    format_ns(site.blocked_ns_b.round() as u64)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr data-search=\"{} {}\"><td class=\"name\">{}</td><td class=\"name\">{}</td>{}{}{}{}<td data-v=\"{:.0}\">{}</td><td class=\"name\">{}</td>{}{}{}{}{}{}{}{}<td class=\"name\">{}</td></tr>",
            esc(&row.group),
            esc(&row.syscall),
            esc(&row.group),
            esc(&row.syscall),
            rate(a.calls),
            rate(b.calls),
            time(a.time_ns),
            time(b.time_ns),
            row.time_change_ns,
            change(a.time_ns, b.time_ns),
            two_bars_svg(a.time_ns, b.time_ns, most, 120),
            signed(b.entry_ns - a.entry_ns),
            signed(b.handler_ns - a.handler_ns),
            signed(b.blocked_ns - a.blocked_ns),
            signed(b.runqueue_ns - a.runqueue_ns),
            ns_cell(a.p99_ns),
            ns_cell(b.p99_ns),
            rate(a.errors),
            rate(b.errors),
            sites.join("<br>")
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</section>");
    out.push_str(&legend().replace("split:", "split of a call's time:"));
    page_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn a_report_page_is_self_contained_and_readable_without_script() {
        let report = sample();
        let html = render_report_html(&report);
        assert!(html.starts_with("<!doctype html>"));
        // Nothing fetched from elsewhere.
        for external in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in the page");
        }
        // The essentials are in the markup itself.
        assert!(html.contains("<table id=\"processes\""));
        assert!(html.contains("<svg class=\"split\""));
        for process in &report.processes {
            assert!(html.contains(&esc(&process.comm)));
        }
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn a_split_bar_is_as_wide_as_asked() {
        let split = Split {
            entry_ns: 10,
            handler_ns: 30,
            blocked_ns: 60,
            runqueue_ns: 0,
        };
        let svg = split_svg(&split, 100);
        assert!(
            svg.contains("width=\"10.0\"") && svg.contains("x=\"40.0\" width=\"60.0\""),
            "{svg}"
        );
        assert!(!svg.contains("runqueue"), "no empty part: {svg}");
    }
}
