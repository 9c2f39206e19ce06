//! The agent's own CPU and memory: `report` beside many busy processes, and `serve` under a
//! busy machine's process churn and scrape load.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::stats::median;
use crate::as_root;

/// What `syscall-profiler report --duration 13` costs beside `count` busy processes,
/// [`REPORT_RUNS`] times: the median and the range. The steady-state CPU is the report's own
/// account (`agent_cost` in its JSON: its CPU clock over the profiling window, start-up and
/// the final report left out). It was read from outside between the agent's 3rd and 12th
/// second, but beside 1,000 busy processes start-up alone takes minutes (run AH), and `perf`
/// put 88% of such a window in loading, checking and calibrating: it measured start-up.
pub(super) fn agent_cost(profiler: &Path, workload: &Path, count: usize) -> Result<String> {
    let mut busy: Vec<Child> = (0..count)
        .map(|_| {
            Command::new(workload)
                .args(["busy", "1800"]) // killed below; start-up alone can take minutes beside them
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()
        .context("starting the busy processes")?;
    thread::sleep(Duration::from_secs(2));
    let measured: Result<Vec<_>> = (0..REPORT_RUNS).map(|_| measure_report(profiler)).collect();
    for child in &mut busy {
        let _ = child.kill();
    }
    for child in &mut busy {
        let _ = child.wait();
    }
    let measured = measured?;
    // Median, lowest, highest (REPORT_RUNS > 0).
    let column = |pick: fn(&ReportCost) -> f64| {
        let mut values: Vec<f64> = measured.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        (median(&values).unwrap_or(f64::NAN), values[0], values[values.len() - 1])
    };
    let (steady, steady_low, steady_high) = column(|m| m.profiling_cpu_percent);
    let (startup, startup_low, startup_high) = column(|m| m.startup_secs);
    let (startup_cpu, startup_cpu_low, startup_cpu_high) = column(|m| m.startup_cpu_secs);
    let (profiled, profiled_low, profiled_high) = column(|m| m.profiled_secs);
    let calibrated = measured.iter().filter(|m| m.calibrated).count();
    let (whole, whole_low, whole_high) = column(|m| m.whole_run_cpu_percent);
    let (rss, rss_low, rss_high) = column(|m| m.peak_rss_kib as f64 / 1024.0);
    Ok(format!(
        "| measure (median of {REPORT_RUNS} runs; lowest-highest) | value |\n|---|---|\n\
         | agent CPU while profiling (the report's `agent_cost`: its CPU clock over the window) | {steady:.2}% of one CPU ({steady_low:.2}-{steady_high:.2}) |\n\
         | start-up: loading, checking and calibrating, wall (CPU) | {startup:.1} s ({startup_low:.1}-{startup_high:.1}) ({startup_cpu:.2} s of CPU, {startup_cpu_low:.2}-{startup_cpu_high:.2}) |\n\
         | boundary cost measured (not \"too busy\") | {calibrated} of {REPORT_RUNS} runs |\n\
         | profiling window, {REPORT_SECS} s asked | {profiled:.1} s ({profiled_low:.1}-{profiled_high:.1}) |\n\
         | agent CPU, whole run incl. start-up and report (`/usr/bin/time`) | {whole:.2}% ({whole_low:.2}-{whole_high:.2}) |\n\
         | agent peak RSS | {rss:.1} MiB ({rss_low:.1}-{rss_high:.1}) |"
    ))
}

/// Runs of `report` beside the busy processes: one run's CPU share swung between 2% and 5.5%
/// for the same build on this machine (measured from outside; see [`agent_cost`]).
const REPORT_RUNS: usize = 3;

/// One `report` run's cost.
struct ReportCost {
    profiling_cpu_percent: f64,
    startup_secs: f64,
    startup_cpu_secs: f64,
    /// The profiling window, asked for [`REPORT_SECS`]: longer when the agent was starved.
    profiled_secs: f64,
    /// Whether the calibration measured the boundary cost (not "too busy").
    calibrated: bool,
    whole_run_cpu_percent: f64,
    peak_rss_kib: u64,
}

/// How long each `report` profiles.
const REPORT_SECS: u64 = 13;

/// Runs `report --duration 13 --format json` under `/usr/bin/time`: its own account of its
/// cost (from the JSON), and from outside its CPU share over the whole run and its peak RSS.
fn measure_report(profiler: &Path) -> Result<ReportCost> {
    let json_path = std::env::temp_dir().join(format!("bench-report-{}.json", std::process::id()));
    let out = as_root(Path::new("/usr/bin/time"))
        .args(["-f", "%e %U %S %M"])
        .arg(profiler)
        .args([
            "report",
            "--format",
            "json",
            "--duration",
            &REPORT_SECS.to_string(),
            "-o",
        ])
        .arg(&json_path)
        .stderr(Stdio::piped())
        .output()
        .context("running /usr/bin/time syscall-profiler report")?;
    let json = std::fs::read_to_string(&json_path);
    let _ = as_root(Path::new("rm")).arg("-f").arg(&json_path).status();
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().last().unwrap_or_default();
    let fields: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if !out.status.success() || fields.len() < 4 {
        bail!("syscall-profiler report failed: {text}");
    }
    let report: serde_json::Value = serde_json::from_str(&json.context("reading the report's JSON")?)?;
    let cost = &report["agent_cost"];
    let ns = |field: &str| {
        cost[field]
            .as_f64()
            .with_context(|| format!("no agent_cost.{field} in the report"))
    };
    Ok(ReportCost {
        profiling_cpu_percent: ns("profiling_cpu_ns")? / ns("profiling_ns")? * 100.0,
        startup_secs: ns("startup_ns")? / 1e9,
        startup_cpu_secs: ns("startup_cpu_ns")? / 1e9,
        profiled_secs: ns("profiling_ns")? / 1e9,
        calibrated: report["boundary_source"] == "calibrated",
        whole_run_cpu_percent: (fields[1] + fields[2]) / fields[0] * 100.0,
        peak_rss_kib: fields[3] as u64,
    })
}

/// The agent's name in `/proc/PID/comm` (truncated to 15 bytes).
const AGENT_COMM: &str = "syscall-profile";

/// The first process named `comm` (as `/proc/PID/comm` has it) among `pid`'s descendants,
/// `pid` included.
fn descendant_named(pid: u32, comm: &str) -> Option<u32> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if name.trim_end() == comm {
        return Some(pid);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .find_map(|child| descendant_named(child, comm))
}

/// Seconds of churn before the steady-state measurement starts.
const WARM_UP_SECS: u64 = 30;
/// Seconds of the steady state, scraped once a second (as Prometheus would).
const STEADY_SECS: u64 = 60;
/// Seconds at Prometheus's pace after the steady state: a gzip scrape every
/// `PROMETHEUS_EVERY_SECS` (its usual 15 s; the agent reads when scraped).
const PROMETHEUS_SECS: u64 = 60;
const PROMETHEUS_EVERY_SECS: u64 = 15;
/// Seconds of scrapes at 200 a second, after those.
const BURST_SECS: u64 = 10;
const BURST_PER_SEC: u64 = 200;

/// `syscall-profiler serve` at its defaults under a busy machine's churn (`profiler-workload
/// churn-soak`: 1,000 live processes that rename themselves now and then, 100 new processes a
/// second): its CPU share, resident memory over time, the series and scrape sizes it
/// exposes; then 200 scrapes a second, their latency and what they cost.
pub(super) fn serve_under_churn(profiler: &Path, workload: &Path) -> Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut serve = Killed(
        as_root(profiler)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .context("starting syscall-profiler serve")?,
    );
    let started = Instant::now();
    while scrape(port, false).is_none() {
        if started.elapsed() > Duration::from_secs(60) || serve.0.try_wait()?.is_some() {
            bail!("syscall-profiler serve did not come up");
        }
        thread::sleep(Duration::from_millis(200));
    }
    // The agent: the child itself, or under sudo its child.
    let pid = descendant_named(serve.0.id(), AGENT_COMM).unwrap_or(serve.0.id());
    let total_secs = WARM_UP_SECS + STEADY_SECS + PROMETHEUS_SECS + BURST_SECS + 5;
    let _churn = Killed(
        Command::new(workload)
            .args(["churn-soak", &total_secs.to_string(), "1000", "100"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the churn")?,
    );
    thread::sleep(Duration::from_secs(WARM_UP_SECS));
    let rss_warm = rss_kib(pid)?;
    let (cpu_before, at_before) = (cpu_seconds(pid)?, Instant::now());
    let (mut series, mut plain_bytes, mut gzip_bytes, mut peak_rss) = (0, 0, 0, rss_warm);
    for _ in 0..STEADY_SECS {
        let tick = Instant::now();
        if let Some((body, _)) = scrape(port, false) {
            series = series.max(body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count());
            plain_bytes = plain_bytes.max(body.len());
        }
        if let Some((_, bytes)) = scrape(port, true) {
            gzip_bytes = gzip_bytes.max(bytes);
        }
        peak_rss = peak_rss.max(rss_kib(pid)?);
        thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let steady_cpu = (cpu_seconds(pid)? - cpu_before) / at_before.elapsed().as_secs_f64() * 100.0;
    let rss_end = rss_kib(pid)?;
    let drops = scrape(port, false)
        .map(|(body, _)| {
            body.lines()
                .filter(|l| l.starts_with("syscall_profiler_overflow_drops_total"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>()
        })
        .unwrap_or(f64::NAN);

    // Prometheus's pace.
    let (cpu_before, at_before) = (cpu_seconds(pid)?, Instant::now());
    for _ in 0..PROMETHEUS_SECS / PROMETHEUS_EVERY_SECS {
        let tick = Instant::now();
        let _ = scrape(port, true);
        thread::sleep(Duration::from_secs(PROMETHEUS_EVERY_SECS).saturating_sub(tick.elapsed()));
    }
    let prometheus_cpu = (cpu_seconds(pid)? - cpu_before) / at_before.elapsed().as_secs_f64() * 100.0;

    // 200 scrapes a second from 4 clients, each on its own schedule.
    let (cpu_before, at_before) = (cpu_seconds(pid)?, Instant::now());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let period = Duration::from_secs_f64(4.0 / BURST_PER_SEC as f64);
                let mut latencies = Vec::new();
                let mut failed = 0;
                let start = Instant::now();
                for n in 0..BURST_SECS * BURST_PER_SEC / 4 {
                    let began = Instant::now();
                    match scrape(port, true) {
                        Some(_) => latencies.push(began.elapsed().as_secs_f64() * 1e3),
                        None => failed += 1,
                    }
                    thread::sleep((start + period * (n as u32 + 1)).saturating_duration_since(Instant::now()));
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for client in clients {
        let (mut mine, mine_failed) = client.join().expect("no panic in a client");
        latencies.append(&mut mine);
        failed += mine_failed;
    }
    let burst_secs = at_before.elapsed().as_secs_f64();
    let burst_cpu = (cpu_seconds(pid)? - cpu_before) / burst_secs * 100.0;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let _ = serve.0.kill();
    Ok(format!(
        "| measure | value |\n|---|---|\n\
         | agent CPU, steady state ({STEADY_SECS} s after {WARM_UP_SECS} s of warm-up, one gzip and one plain scrape a second) | {steady_cpu:.2}% of one CPU |\n\
         | agent RSS after warm-up -> after the steady state (peak) | {:.1} -> {:.1} MiB ({:.1} MiB) |\n\
         | series exposed (most in a scrape) | {series} |\n\
         | scrape size, plain / gzip | {:.0} KiB / {:.0} KiB |\n\
         | calls not counted (overflow_drops_total: full tables, exits not matched) | {drops} |\n\
         | agent CPU scraped at Prometheus's pace (one gzip scrape every {PROMETHEUS_EVERY_SECS} s for {PROMETHEUS_SECS} s, the churn going on) | {prometheus_cpu:.2}% of one CPU |\n\
         | {BURST_PER_SEC} gzip scrapes a second for {BURST_SECS} s: answered, p50 / p99 latency | {} of {}, {:.2} / {:.2} ms |\n\
         | agent CPU during those scrapes | {burst_cpu:.1}% of one CPU |",
        rss_warm as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        plain_bytes as f64 / 1024.0,
        gzip_bytes as f64 / 1024.0,
        latencies.len(),
        latencies.len() + failed,
        at(0.5),
        at(0.99),
    ))
}

/// A child killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET /metrics over loopback: the body (as received) and its size in bytes.
fn scrape(port: u16, gzip: bool) -> Option<(String, usize)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let encoding = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{encoding}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let body = &response[split + 4..];
    Some((String::from_utf8_lossy(body).into_owned(), body.len()))
}

/// User plus system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the agent's /proc stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // /proc counts in USER_HZ ticks, 100 a second on every Linux.
    Ok(ticks / 100.0)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the agent's /proc status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}
