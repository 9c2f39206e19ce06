//! Encoding a [`Snapshot`] with `prometheus-client`, as OpenMetrics or (rewritten) as the
//! classic Prometheus text format.
use std::fmt::Write as _;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use crate::metrics::{series::LATENCY_BOUNDS, Snapshot};

/// Series about the profiler itself of fixed number: one each for build info, programs, map
/// read time and reads, boundary cost and its spread, sampling, series, groups, its CPU time
/// and its resident memory; two for the boundary's refreshes.
pub const SELF_SERIES: usize = 13;

fn labels(group: &Option<String>, syscall: &str, abi: &str) -> Vec<(String, String)> {
    let mut labels = Vec::with_capacity(3);
    if let Some(group) = group {
        labels.push(("group".to_owned(), group.clone()));
    }
    labels.push(("syscall".to_owned(), syscall.to_owned()));
    labels.push(("abi".to_owned(), abi.to_owned()));
    labels
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_calls",
                "Syscalls completed.",
                None,
                MetricType::Counter,
            )?;
            for ((group, syscall, abi), counters) in &self.counters {
                family
                    .encode_family(&labels(group, syscall, abi))?
                    .encode_counter::<NoLabelSet, _, u64>(&counters.calls, None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_errors",
                "Syscalls that returned an error, by errno.",
                None,
                MetricType::Counter,
            )?;
            for ((group, syscall, abi), counters) in &self.counters {
                for (errno, count) in &counters.errors {
                    let mut with_errno = labels(group, syscall, abi);
                    with_errno.push(("errno".to_owned(), errno.clone()));
                    family
                        .encode_family(&with_errno)?
                        .encode_counter::<NoLabelSet, _, u64>(count, None)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_time_seconds",
                "Syscall time by component: entry (boundary crossing), handler (on-CPU in the kernel), blocked (asleep), runqueue (waiting for a CPU).",
                None,
                MetricType::Counter,
            )?;
            for ((group, syscall, abi), counters) in &self.counters {
                let s = counters.split;
                for (component, ns) in [
                    ("entry", s.entry_ns),
                    ("handler", s.handler_ns),
                    ("blocked", s.blocked_ns),
                    ("runqueue", s.runqueue_ns),
                ] {
                    let mut with_component = labels(group, syscall, abi);
                    with_component.push(("component".to_owned(), component.to_owned()));
                    family
                        .encode_family(&with_component)?
                        .encode_counter::<NoLabelSet, _, f64>(&(ns as f64 / 1e9), None)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_latency_seconds",
                "Syscall latency for the machine (no group label), entry cost included; with timing sampling an estimate (calls_total is exact).",
                None,
                MetricType::Histogram,
            )?;
            for ((syscall, abi), histogram) in &self.latency {
                // prometheus-client takes per-bucket counts and makes them cumulative.
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .chain(std::iter::once(&f64::INFINITY))
                    .zip(&histogram.buckets)
                    .map(|(bound, count)| (*bound, *count))
                    .collect();
                family
                    .encode_family(&labels(&None, syscall, abi))?
                    .encode_histogram::<NoLabelSet>(histogram.sum_ns as f64 / 1e9, histogram.count(), &buckets, None)?;
            }
        }
        let me = &self.me;
        let gauge =
            |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&value)
            };
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_build_info",
                "Build of the profiler (always 1).",
                None,
                MetricType::Gauge,
            )?;
            family
                .encode_family(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())])?
                .encode_gauge(&1i64)?;
        }
        gauge(
            &mut encoder,
            "syscall_profiler_programs_attached",
            "eBPF programs attached.",
            me.programs_attached as f64,
        )?;
        // The names every Prometheus client's process collector uses: dashboards and alerts
        // on an agent's own cost already know them.
        encoder
            .encode_descriptor(
                "process_cpu_seconds",
                "The profiler's own CPU time (user and system, all threads), as of the last read.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&me.cpu_seconds, None)?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "The profiler's resident memory, as of the last read.",
            me.resident_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "syscall_profiler_map_read_seconds",
            "Time the last read of the maps took.",
            me.map_read_seconds,
        )?;
        encoder
            .encode_descriptor(
                "syscall_profiler_map_reads",
                "Reads of the maps: one for a scrape (at most one an --interval), one every 15 s unscraped, more while a map fills fast.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&me.map_reads, None)?;
        gauge(
            &mut encoder,
            "syscall_profiler_boundary_seconds",
            "Calibrated boundary (entry) cost charged per syscall.",
            me.boundary_seconds,
        )?;
        gauge(
            &mut encoder,
            "syscall_profiler_boundary_spread_seconds",
            "How sure the boundary cost is: half the difference between two independent halves of its measurement.",
            me.boundary_spread_seconds,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_boundary_refreshes",
                "Measurements of the boundary cost after the first (--boundary-refresh): moved it, or too busy to (it stayed).",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [
                ("moved", me.boundary_refreshes),
                ("too-busy", me.boundary_refreshes_too_busy),
            ] {
                family
                    .encode_family(&vec![("result".to_owned(), result.to_owned())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        gauge(
            &mut encoder,
            "syscall_profiler_series",
            "Series this endpoint exposes (its budget: --top-k, --top-syscalls, --latency-syscalls).",
            self.series_count() as f64,
        )?;
        gauge(
            &mut encoder,
            "syscall_profiler_groups_tracked",
            "Groups tracked: with series of their own, and waiting for them.",
            me.groups_tracked as f64,
        )?;
        gauge(
            &mut encoder,
            "syscall_profiler_timing_sample_every",
            "1 in this many short calls that stay on the CPU is timed (1: every call); counts are exact.",
            f64::from(me.sample_every),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_map_fill_ratio",
                "Used share of each kernel map.",
                None,
                MetricType::Gauge,
            )?;
            for (map, ratio) in &me.map_fill {
                family
                    .encode_family(&vec![("map".to_owned(), map.clone())])?
                    .encode_gauge(ratio)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_overflow_drops",
                "Calls the kernel side could not count: a map was full, or (exit_unseen) a call's exit was not matched to it.",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in me.overflow.by_name() {
                family
                    .encode_family(&vec![("reason".to_owned(), reason.to_owned())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        Ok(())
    }
}

/// The exposition format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    OpenMetrics,
}

impl Format {
    /// From the request's `Accept` header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes the snapshot. `prometheus-client` writes OpenMetrics; the classic text format
/// differs in naming counters by their `_total` sample and having no `# EOF`.
pub fn encode(snapshot: &Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot.clone()));
    let mut open_metrics = String::new();
    prometheus_client::encoding::text::encode(&mut open_metrics, &registry).expect("writing to a String cannot fail");
    match format {
        Format::OpenMetrics => open_metrics,
        Format::Text => to_classic_text(&open_metrics),
    }
}

/// OpenMetrics text to Prometheus text format 0.0.4.
pub fn to_classic_text(open_metrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        let _ = writeln!(out, "{}", renamed.as_deref().unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        metrics::{
            series::{Counters, Histogram},
            SelfMetrics,
        },
        model::{overflow::Overflow, split::Split},
    };

    fn sample_snapshot() -> Snapshot {
        let counters = Counters {
            calls: 42,
            errors: BTreeMap::from([("ENOENT".into(), 2)]),
            split: Split {
                handler_ns: 1_000_000_000,
                ..Split::default()
            },
        };
        let mut histogram = Histogram {
            sum_ns: 1_000_000_000,
            ..Histogram::default()
        };
        histogram.buckets[2] = 40; // <= 128 ns
        histogram.buckets[5] = 2; // <= 1.024 µs
        Snapshot {
            counters: BTreeMap::from([((Some("nginx".into()), "openat".into(), "x86_64"), counters)]),
            latency: BTreeMap::from([(("openat".into(), "x86_64"), histogram)]),
            me: SelfMetrics {
                programs_attached: 8,
                map_fill: vec![("stats".into(), 0.25)],
                overflow: Overflow::default(),
                map_read_seconds: 0.002,
                map_reads: 7,
                boundary_seconds: 1.5e-7,
                boundary_spread_seconds: 2e-10,
                boundary_refreshes: 3,
                boundary_refreshes_too_busy: 1,
                sample_every: 16,
                groups_tracked: 3,
                cpu_seconds: 1.25,
                resident_bytes: 31 << 20,
            },
        }
    }

    #[test]
    fn open_metrics_output() {
        let text = encode(&sample_snapshot(), Format::OpenMetrics);
        assert!(text.contains("# TYPE syscall_profiler_calls counter"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("syscall_profiler_timing_sample_every 16")),
            "{text}"
        );
        assert!(
            text.contains(r#"syscall_profiler_calls_total{group="nginx",syscall="openat",abi="x86_64"} 42"#),
            "{text}"
        );
        assert!(text.contains(r#"errno="ENOENT"} 2"#), "{text}");
        assert!(text.contains(r#"component="handler"} 1.0"#), "{text}");
        // The histogram has no group label.
        assert!(
            text.contains(r#"_bucket{le="1.28e-7",syscall="openat",abi="x86_64"} 40"#),
            "{text}"
        );
        assert!(
            text.contains(r#"_bucket{le="0.000001024",syscall="openat",abi="x86_64"} 42"#),
            "{text}"
        );
        assert!(
            text.contains(r#"_bucket{le="+Inf",syscall="openat",abi="x86_64"} 42"#),
            "{text}"
        );
        assert!(text.contains("syscall_profiler_latency_seconds_count"), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total 1.25\n"), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes 32505856.0\n"), "{text}");
        let series = sample_snapshot().series_count();
        assert!(
            text.lines().any(|l| l == format!("syscall_profiler_series {series}.0")),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn the_series_count_is_what_is_exposed() {
        let text = encode(&sample_snapshot(), Format::Text);
        let samples = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        assert_eq!(sample_snapshot().series_count(), samples, "{text}");
    }

    #[test]
    fn classic_text_output_names_counters_by_their_samples() {
        let text = encode(&sample_snapshot(), Format::Text);
        assert!(text.contains("# TYPE syscall_profiler_calls_total counter"), "{text}");
        assert!(text.contains("# HELP syscall_profiler_calls_total "), "{text}");
        assert!(
            text.contains("# TYPE syscall_profiler_latency_seconds histogram"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn format_negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
