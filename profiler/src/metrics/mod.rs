//! Prometheus metrics: the store's totals, grouped by a label with a hard cardinality cap,
//! encoded with `prometheus-client` from one consistent snapshot per scrape.
//!
//! Grouping (`--group-by none|comm|cgroup`): the top K groups by syscall time get their own
//! series; everything else is added into the group `other`. Counters stay monotonic: a group
//! keeps its own series until it has been idle for the grace period (then its series go
//! away), and when a group moves out of `other` what it had added there stays there.
pub mod http;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    time::Duration,
};

use profiler_common::{hist_bucket_bounds, StatsKey};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use crate::{
    model::{
        names::{decode_nr, errno_name, syscall_name},
        split::Split,
        store::SyscallTotals,
    },
    session::calibrate::latency_offset_ns,
};

/// The group a process's series are labelled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// One group for the whole machine (no `group` label).
    None,
    /// The process name.
    Comm,
    /// The process's cgroup (v2 path).
    Cgroup,
}

/// Name of the group everything beyond the top K is added into.
pub const OTHER: &str = "other";

/// Upper bounds (seconds) of the exported latency histogram: powers of 4 from 1 µs to 16 s.
pub const LATENCY_BOUNDS: [f64; 13] = [
    1e-6, 4e-6, 16e-6, 64e-6, 256e-6, 1.024e-3, 4.096e-3, 16.384e-3, 65.536e-3, 0.262144, 1.048576, 4.194304, 16.777216,
];

/// Totals of one (group, syscall) series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesTotals {
    pub calls: u64,
    pub errors: BTreeMap<String, u64>,
    pub split: Split,
    /// Cumulative counts per [`LATENCY_BOUNDS`] bucket (not yet cumulative across buckets).
    pub latency_buckets: Vec<u64>,
}

impl SeriesTotals {
    pub fn add(&mut self, other: &SeriesTotals) {
        self.calls += other.calls;
        for (errno, count) in &other.errors {
            *self.errors.entry(errno.clone()).or_default() += count;
        }
        self.split.add(&other.split);
        if self.latency_buckets.len() < other.latency_buckets.len() {
            self.latency_buckets.resize(other.latency_buckets.len(), 0);
        }
        for (mine, theirs) in self.latency_buckets.iter_mut().zip(&other.latency_buckets) {
            *mine += theirs;
        }
    }

    fn since(&self, earlier: &SeriesTotals) -> SeriesTotals {
        let mut errors = self.errors.clone();
        for (errno, count) in errors.iter_mut() {
            *count -= earlier.errors.get(errno).copied().unwrap_or(0).min(*count);
        }
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        SeriesTotals {
            calls: sub(self.calls, earlier.calls),
            errors,
            split: Split {
                entry_ns: sub(self.split.entry_ns, earlier.split.entry_ns),
                handler_ns: sub(self.split.handler_ns, earlier.split.handler_ns),
                blocked_ns: sub(self.split.blocked_ns, earlier.split.blocked_ns),
                runqueue_ns: sub(self.split.runqueue_ns, earlier.split.runqueue_ns),
            },
            latency_buckets: self
                .latency_buckets
                .iter()
                .enumerate()
                .map(|(i, c)| sub(*c, earlier.latency_buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// The totals of one syscall of one process, as exported: split charged, buckets coarsened.
pub fn series_totals(
    totals: &SyscallTotals,
    boundary_ns_per_call: f64,
    instrumentation_ns_per_call: f64,
) -> SeriesTotals {
    let split = totals.split(boundary_ns_per_call, instrumentation_ns_per_call);
    let mut latency_buckets = vec![0u64; LATENCY_BOUNDS.len() + 1];
    let offset = latency_offset_ns(boundary_ns_per_call, instrumentation_ns_per_call);
    for (index, &count) in totals.latency.buckets.iter().enumerate() {
        if count > 0 {
            // A kernel bucket goes where its upper edge (plus the per-call offset) falls.
            let upper_ns = hist_bucket_bounds(index).1.saturating_add_signed(offset);
            let seconds = upper_ns as f64 / 1e9;
            let slot = LATENCY_BOUNDS
                .iter()
                .position(|b| seconds <= *b)
                .unwrap_or(LATENCY_BOUNDS.len());
            latency_buckets[slot] += count;
        }
    }
    SeriesTotals {
        calls: totals.calls,
        errors: totals
            .errnos
            .iter()
            .map(|(errno, count)| (errno_name(*errno).into_owned(), *count))
            .collect(),
        split,
        latency_buckets,
    }
}

#[derive(Clone, Debug)]
struct GroupState {
    own: bool,
    /// Cumulative totals per syscall label.
    totals: BTreeMap<(String, String), SeriesTotals>,
    /// What this group had put into `other` when it got its own series.
    frozen_in_other: BTreeMap<(String, String), SeriesTotals>,
    /// While in `other`: its totals as last exported there.
    exported_in_other: BTreeMap<(String, String), SeriesTotals>,
    last_change_secs: f64,
}

/// Assigns groups to their own series or `other`, keeping counters monotonic.
pub struct Grouper {
    top_k: usize,
    grace: Duration,
    groups: HashMap<String, GroupState>,
    /// What groups that left `other` (to their own series, or expired) had added to it.
    other_frozen: BTreeMap<(String, String), SeriesTotals>,
}

/// The series to export: `(group, (syscall, abi)) -> totals`; no group label when `None`.
pub type Series = BTreeMap<(Option<String>, (String, String)), SeriesTotals>;

impl Grouper {
    pub fn new(top_k: usize, grace: Duration) -> Grouper {
        Grouper {
            top_k,
            grace,
            groups: HashMap::new(),
            other_frozen: BTreeMap::new(),
        }
    }

    /// Takes the cumulative totals per group and syscall at `now_secs`; returns the series.
    pub fn update(
        &mut self,
        per_group: BTreeMap<String, BTreeMap<(String, String), SeriesTotals>>,
        now_secs: f64,
    ) -> Series {
        for (group, totals) in per_group {
            let state = self.groups.entry(group).or_insert_with(|| GroupState {
                own: false,
                totals: BTreeMap::new(),
                frozen_in_other: BTreeMap::new(),
                exported_in_other: BTreeMap::new(),
                last_change_secs: now_secs,
            });
            if state.totals != totals {
                state.last_change_secs = now_secs;
                state.totals = totals;
            }
        }
        // Idle groups past the grace period go away, freeing their own slot.
        let grace = self.grace.as_secs_f64();
        let expired: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, state)| now_secs - state.last_change_secs > grace)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            let state = self.groups.remove(&name).expect("listed above");
            if !state.own {
                // What it added to `other` stays there; own series simply end.
                for (syscall, totals) in &state.exported_in_other {
                    self.other_frozen.entry(syscall.clone()).or_default().add(totals);
                }
            }
        }
        // Free own slots go to the busiest groups in `other`.
        let own = self.groups.values().filter(|s| s.own).count();
        let mut candidates: Vec<(u64, String)> = self
            .groups
            .iter()
            .filter(|(_, s)| !s.own)
            .map(|(name, s)| (s.totals.values().map(|t| t.split.total_ns()).sum(), name.clone()))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, name) in candidates.into_iter().take(self.top_k.saturating_sub(own)) {
            let state = self.groups.get_mut(&name).expect("listed above");
            state.own = true;
            // What it had added to `other` stays there (nothing, if it is new).
            for (syscall, totals) in std::mem::take(&mut state.exported_in_other) {
                self.other_frozen.entry(syscall.clone()).or_default().add(&totals);
                state.frozen_in_other.insert(syscall, totals);
            }
        }
        let mut series: Series = BTreeMap::new();
        for (syscall, totals) in &self.other_frozen {
            series
                .entry((Some(OTHER.to_owned()), syscall.clone()))
                .or_default()
                .add(totals);
        }
        for (name, state) in self.groups.iter_mut() {
            if !state.own {
                state.exported_in_other = state.totals.clone();
            }
            for (syscall, totals) in &state.totals {
                if state.own {
                    let empty = SeriesTotals::default();
                    let frozen = state.frozen_in_other.get(syscall).unwrap_or(&empty);
                    let own_part = totals.since(frozen);
                    series
                        .entry((Some(name.clone()), syscall.clone()))
                        .or_default()
                        .add(&own_part);
                } else {
                    series
                        .entry((Some(OTHER.to_owned()), syscall.clone()))
                        .or_default()
                        .add(totals);
                }
            }
        }
        series
    }
}

/// Sums per-(process, syscall) totals into per-(group, syscall) ones.
pub fn by_group(
    totals: &BTreeMap<StatsKey, SyscallTotals>,
    group_of: &dyn Fn(u32) -> String,
    boundary_ns_per_call: f64,
    instrumentation_ns_per_call: f64,
) -> BTreeMap<String, BTreeMap<(String, String), SeriesTotals>> {
    let mut groups: BTreeMap<String, BTreeMap<(String, String), SeriesTotals>> = BTreeMap::new();
    for (key, row) in totals {
        if row.calls == 0 {
            continue;
        }
        let (abi, nr) = decode_nr(key.nr);
        let label = (syscall_name(abi, nr).into_owned(), abi.as_str().to_owned());
        let series = series_totals(row, boundary_ns_per_call, instrumentation_ns_per_call);
        groups
            .entry(group_of(key.tgid))
            .or_default()
            .entry(label)
            .or_default()
            .add(&series);
    }
    groups
}

/// Facts about the profiler itself.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    pub programs_attached: u64,
    /// `(map, fill ratio)`.
    pub map_fill: Vec<(String, f64)>,
    /// `(reason, events)`.
    pub overflow_drops: Vec<(String, u64)>,
    pub map_read_seconds: f64,
    pub boundary_seconds: f64,
    /// Timing sampling period (`--sample`; 1: every call timed).
    pub sample_every: u32,
}

/// One consistent picture of everything exported, taken after a poll.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub series: Series,
    pub me: SelfMetrics,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = |group: &Option<String>, syscall: &(String, String)| -> Vec<(String, String)> {
            let mut labels = Vec::with_capacity(3);
            if let Some(group) = group {
                labels.push(("group".to_owned(), group.clone()));
            }
            labels.push(("syscall".to_owned(), syscall.0.clone()));
            labels.push(("abi".to_owned(), syscall.1.clone()));
            labels
        };
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_calls",
                "Syscalls completed.",
                None,
                MetricType::Counter,
            )?;
            for ((group, syscall), totals) in &self.series {
                family
                    .encode_family(&labels(group, syscall))?
                    .encode_counter::<NoLabelSet, _, u64>(&totals.calls, None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "syscall_profiler_errors",
                "Syscalls that returned an error, by errno.",
                None,
                MetricType::Counter,
            )?;
            for ((group, syscall), totals) in &self.series {
                for (errno, count) in &totals.errors {
                    let mut with_errno = labels(group, syscall);
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
            for ((group, syscall), totals) in &self.series {
                let s = totals.split;
                for (component, ns) in [
                    ("entry", s.entry_ns),
                    ("handler", s.handler_ns),
                    ("blocked", s.blocked_ns),
                    ("runqueue", s.runqueue_ns),
                ] {
                    let mut with_component = labels(group, syscall);
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
                "Syscall latency, entry cost included; with timing sampling an estimate (calls_total is exact).",
                None,
                MetricType::Histogram,
            )?;
            for ((group, syscall), totals) in &self.series {
                // prometheus-client takes per-bucket counts and makes them cumulative.
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .chain(std::iter::once(&f64::INFINITY))
                    .enumerate()
                    .map(|(i, bound)| (*bound, totals.latency_buckets.get(i).copied().unwrap_or(0)))
                    .collect();
                let count = buckets.iter().map(|(_, n)| n).sum();
                let sum = totals.split.total_ns() as f64 / 1e9;
                family
                    .encode_family(&labels(group, syscall))?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
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
        gauge(
            &mut encoder,
            "syscall_profiler_map_read_seconds",
            "Time the last read of the maps took.",
            me.map_read_seconds,
        )?;
        gauge(
            &mut encoder,
            "syscall_profiler_boundary_seconds",
            "Calibrated boundary (entry) cost charged per syscall.",
            me.boundary_seconds,
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
                "Events the kernel side could not record because a map was full.",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in &me.overflow_drops {
                family
                    .encode_family(&vec![("reason".to_owned(), reason.clone())])?
                    .encode_counter::<NoLabelSet, _, u64>(count, None)?;
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
    use profiler_common::hist_bucket;

    use super::*;

    fn series(calls: u64, ns: u64) -> SeriesTotals {
        SeriesTotals {
            calls,
            split: Split {
                handler_ns: ns,
                ..Default::default()
            },
            latency_buckets: vec![calls],
            ..Default::default()
        }
    }

    fn group(calls: u64, ns: u64) -> BTreeMap<(String, String), SeriesTotals> {
        BTreeMap::from([(("read".to_owned(), "x86_64".to_owned()), series(calls, ns))])
    }

    fn calls_of(series: &Series, group: &str) -> u64 {
        series
            .iter()
            .filter(|((g, _), _)| g.as_deref() == Some(group))
            .map(|(_, t)| t.calls)
            .sum()
    }

    #[test]
    fn top_k_groups_keep_their_series_and_the_rest_fold_into_other() {
        let mut grouper = Grouper::new(2, Duration::from_secs(60));
        let out = grouper.update(
            BTreeMap::from([
                ("a".into(), group(10, 300)),
                ("b".into(), group(20, 200)),
                ("c".into(), group(30, 100)),
            ]),
            0.0,
        );
        assert_eq!(calls_of(&out, "a"), 10);
        assert_eq!(calls_of(&out, "b"), 20);
        assert_eq!(calls_of(&out, "c"), 0);
        assert_eq!(calls_of(&out, OTHER), 30);
        let groups: std::collections::HashSet<_> = out.keys().map(|(g, _)| g.clone()).collect();
        assert_eq!(groups.len(), 3, "a hard cap: K own groups plus other");
    }

    #[test]
    fn counters_stay_monotonic_when_groups_come_and_go() {
        let mut grouper = Grouper::new(1, Duration::from_secs(5));
        grouper.update(
            BTreeMap::from([("a".into(), group(10, 100)), ("b".into(), group(5, 50))]),
            0.0,
        );
        // a goes idle and expires after the grace period; b takes its slot.
        let out = grouper.update(
            BTreeMap::from([("a".into(), group(10, 100)), ("b".into(), group(7, 70))]),
            1.0,
        );
        assert_eq!(calls_of(&out, OTHER), 7);
        let out = grouper.update(BTreeMap::from([("b".into(), group(9, 90))]), 10.0);
        assert_eq!(calls_of(&out, "a"), 0, "expired");
        // What b had shown in other (7) stays there; its own series counts the rest.
        assert_eq!(calls_of(&out, OTHER), 7);
        assert_eq!(calls_of(&out, "b"), 2);
        let out = grouper.update(
            BTreeMap::from([("b".into(), group(12, 120)), ("c".into(), group(4, 1))]),
            11.0,
        );
        assert_eq!(calls_of(&out, OTHER), 11);
        assert_eq!(calls_of(&out, "b"), 5);
        // c goes quiet and expires while in other: other does not drop.
        let out = grouper.update(BTreeMap::from([("b".into(), group(13, 130))]), 20.0);
        assert_eq!(calls_of(&out, OTHER), 11);
        assert_eq!(calls_of(&out, "b"), 6);
    }

    #[test]
    fn kernel_buckets_land_in_the_exported_bounds() {
        let mut totals = SyscallTotals {
            calls: 3,
            ..Default::default()
        };
        totals.latency.buckets[hist_bucket(500)] = 1; // 0.5 µs -> <= 1 µs
        totals.latency.buckets[hist_bucket(3_000)] = 1; // 3 µs -> <= 4 µs
        totals.latency.buckets[hist_bucket(100_000_000_000)] = 1; // 100 s -> +Inf
        let series = series_totals(&totals, 0.0, 0.0);
        assert_eq!(series.latency_buckets[0], 1);
        assert_eq!(series.latency_buckets[1], 1);
        assert_eq!(series.latency_buckets[LATENCY_BOUNDS.len()], 1);
    }

    fn sample_snapshot() -> Snapshot {
        let mut totals = series(42, 1_000_000_000);
        totals.errors.insert("ENOENT".into(), 2);
        totals.latency_buckets = vec![40, 2];
        Snapshot {
            series: BTreeMap::from([((Some("nginx".into()), ("openat".into(), "x86_64".into())), totals)]),
            me: SelfMetrics {
                programs_attached: 8,
                map_fill: vec![("stats".into(), 0.25)],
                overflow_drops: vec![("stats_full".into(), 0)],
                map_read_seconds: 0.002,
                boundary_seconds: 1.5e-7,
                sample_every: 16,
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
        assert!(
            text.contains(r#"_bucket{le="0.000001",group="nginx",syscall="openat",abi="x86_64"} 40"#),
            "{text}"
        );
        assert!(
            text.contains(r#"_bucket{le="0.000004",group="nginx",syscall="openat",abi="x86_64"} 42"#),
            "{text}"
        );
        assert!(
            text.contains(r#"_bucket{le="+Inf",group="nginx",syscall="openat",abi="x86_64"} 42"#),
            "{text}"
        );
        assert!(text.contains("syscall_profiler_latency_seconds_count"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
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
