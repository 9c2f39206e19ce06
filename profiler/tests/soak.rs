//! `serve` with its defaults through minutes of a busy machine's churn: 1,000 long-lived
//! services that rename themselves, 100 new processes a second (one-shot commands, execs,
//! pids reused through `ns_last_pid`), scraped every second by this test (gzip) and by a real
//! Prometheus with the project's rules. Fails on any counter that goes back, on more series
//! or bigger scrapes than the budget, on memory that keeps growing, on a lost call, and on
//! series of the agent's own calls. Needs root and prometheus; `SOAK_SECONDS` shortens it
//! for a local run (the suite runs 300).
mod common;

use std::{
    collections::HashMap,
    io::Read,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

const LIVE: &str = "1000";
const NEW_PER_SECOND: &str = "100";
const MAX_SERIES: usize = 5_000;
const MAX_SCRAPE_BYTES: usize = 512 * 1024;
const MAX_RSS_KIB: u64 = 64 * 1024;
const MAX_RSS_GROWTH_KIB: u64 = 2 * 1024;

/// One scrape, gzip-encoded as Prometheus asks for it: (body, bytes on the wire).
fn scrape_gzip(port: u16) -> Option<(String, usize)> {
    let response = http_raw(port, "GET", "/metrics", "Accept-Encoding: gzip\r\n")?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let body = &response[split + 4..];
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "not compressed: {head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(body).read_to_string(&mut text).ok()?;
    Some((text, body.len()))
}

/// The samples of an exposition: `name{labels}` and value.
fn samples(exposition: &str) -> impl Iterator<Item = (&str, f64)> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
}

/// Whether a series must never go down.
fn is_cumulative(series: &str) -> bool {
    let name = series.split('{').next().unwrap_or(series);
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn serve_holds_up_under_churn() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = spawn_serve(port, &[]);
    let serve_pid = serve.0.id();
    wait_for("the endpoint", Duration::from_secs(60), || {
        http(port, "GET", "/metrics", None)
    });
    let prometheus = Prometheus::start(&listen);
    let mut churn = Killed(
        Command::new(WORKLOAD)
            .args(["churn-soak", &seconds.to_string(), LIVE, NEW_PER_SECOND])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let started = Instant::now();
    let mut last: HashMap<String, f64> = HashMap::new();
    let mut decreases: Vec<String> = Vec::new();
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let (mut most_series, mut biggest_text, mut biggest_gzip) = (0, 0, 0);
    let mut scrapes = 0;
    while churn.0.try_wait().unwrap().is_none() {
        let tick = Instant::now();
        let (text, gzip_bytes) = scrape_gzip(port).expect("a scrape");
        scrapes += 1;
        let mut series = 0;
        for (name, value) in samples(&text) {
            series += 1;
            assert!(
                !name.contains(r#"group="syscall-profile""#),
                "the agent's own calls exported: {name}"
            );
            if name.starts_with("syscall_profiler_overflow_drops_total") {
                assert_eq!(value, 0.0, "calls lost: {name}");
            }
            if is_cumulative(name) {
                if let Some(&before) = last.get(name) {
                    if value < before && decreases.len() < 20 {
                        decreases.push(format!("{name}: {before} -> {value}"));
                    }
                }
                last.insert(name.to_owned(), value);
            }
        }
        most_series = most_series.max(series);
        biggest_text = biggest_text.max(text.len());
        biggest_gzip = biggest_gzip.max(gzip_bytes);
        rss.push((started.elapsed().as_secs_f64(), cpu_and_resident(serve_pid).1 / 1024));
        thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    assert!(churn.0.wait().unwrap().success(), "the churn workload failed");
    let elapsed = started.elapsed().as_secs_f64();
    // Let Prometheus take two more scrapes and evaluate its rules.
    thread::sleep(Duration::from_secs(3));

    eprintln!(
        "soak: {elapsed:.0} s, {scrapes} scrapes, at most {most_series} series, {biggest_text} B \
         ({biggest_gzip} B gzip) a scrape, RSS {} -> {} KiB",
        rss.first().map_or(0, |r| r.1),
        rss.last().map_or(0, |r| r.1)
    );
    assert!(
        scrapes as f64 > 0.8 * seconds as f64,
        "{scrapes} scrapes in {elapsed:.0} s"
    );
    assert!(decreases.is_empty(), "counters went back:\n{}", decreases.join("\n"));
    assert!(most_series <= MAX_SERIES, "{most_series} series");
    assert!(biggest_text <= MAX_SCRAPE_BYTES, "{biggest_text} B scrape");
    // Memory: bounded, and flat over the second half (warm-up is the first).
    let peak = rss.iter().map(|r| r.1).max().unwrap();
    assert!(peak <= MAX_RSS_KIB, "RSS peaked at {peak} KiB");
    let half = elapsed / 2.0;
    let around = |from: f64, to: f64| {
        rss.iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|r| r.1)
            .max()
            .unwrap_or(0)
    };
    let at_half = around(half - 15.0, half + 15.0);
    let at_end = around(elapsed - 30.0, elapsed + 1.0);
    assert!(
        at_end <= at_half + MAX_RSS_GROWTH_KIB,
        "RSS grew from {at_half} KiB to {at_end} KiB over the second half"
    );

    // Prometheus saw no counter reset and no lost event, and scraped every time.
    let window = format!("{}s", elapsed.ceil() as u64 + 30);
    let families: std::collections::BTreeSet<&str> =
        last.keys().map(|series| series.split('{').next().unwrap()).collect();
    assert!(families.len() >= 5, "{families:?}");
    for family in families {
        let resets = prometheus.query(&format!("sum(resets({family}[{window}]))"));
        assert_eq!(resets.len(), 1, "{family}: {resets:?}");
        assert_eq!(resets[0]["value"][1], "0", "Prometheus saw {family} reset: {resets:?}");
    }
    let samples_scraped = prometheus.query(&format!(r#"max_over_time(scrape_samples_scraped[{window}])"#));
    let most_scraped: f64 = samples_scraped[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        most_scraped as usize <= MAX_SERIES + 100,
        "Prometheus scraped {most_scraped} samples"
    );
    let down = prometheus.query(&format!(r#"min_over_time(up[{window}])"#));
    assert_eq!(down[0]["value"][1], "1", "a scrape failed: {down:?}");
    let losing = prometheus.query(r#"ALERTS{alertname="SyscallProfilerLosingEvents"}"#);
    assert!(losing.is_empty(), "{losing:?}");
    drop(serve);
}
