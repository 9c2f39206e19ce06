//! Prometheus metrics: what every read of the tables brought, added up per group and syscall
//! within a series budget, encoded with `prometheus-client` once per read.
//!
//! - [`series`]: what a series set counts, and the latency histogram's buckets;
//! - [`budget`]: which keys get series of their own, out of many;
//! - [`exported`]: the exported series, kept up to date read by read (`--group-by`, `--top-k`,
//!   `--top-syscalls`, `--grace`);
//! - [`encode`](mod@encode): the snapshot in the exposition formats;
//! - [`http`]: the scrape endpoint.
pub mod budget;
pub mod encode;
pub mod exported;
pub mod http;
pub mod series;

use std::collections::BTreeMap;

pub use encode::{encode, Format};
pub use exported::{Exported, GroupBy, Limits};

use self::{
    exported::{SeriesKey, Syscall},
    series::{Counters, Histogram},
};
use crate::model::overflow::Overflow;

/// Facts about the profiler itself.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    pub programs_attached: u64,
    /// `(map, fill ratio)`.
    pub map_fill: Vec<(String, f64)>,
    /// Calls not counted, by reason (full maps, exits not matched).
    pub overflow: Overflow,
    pub map_read_seconds: f64,
    /// Reads of the maps so far (each scrape, at most one an interval; every 15 s unscraped).
    pub map_reads: u64,
    pub boundary_seconds: f64,
    /// How sure the boundary cost is (see `Charges::boundary_spread_ns`).
    pub boundary_spread_seconds: f64,
    /// Refreshes of the boundary cost that moved it, and those too busy to.
    pub boundary_refreshes: u64,
    pub boundary_refreshes_too_busy: u64,
    /// Timing sampling period (`--sample`; 1: every call timed).
    pub sample_every: u32,
    /// Groups tracked: with series of their own, and waiting for them.
    pub groups_tracked: usize,
    /// The agent's own CPU time so far (all threads) and resident memory: what a fleet
    /// watches to hold it to its budget.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// One consistent picture of everything exported, taken after a read.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Counters per (group, syscall, abi).
    pub counters: BTreeMap<SeriesKey, Counters>,
    /// Latency histogram per (syscall, abi), for the machine.
    pub latency: BTreeMap<Syscall, Histogram>,
    pub me: SelfMetrics,
}

impl Snapshot {
    /// The number of series the snapshot exposes (what a scraper stores), its own gauges
    /// included.
    pub fn series_count(&self) -> usize {
        let counters: usize = self
            .counters
            .values()
            .map(|c| 1 + c.errors.len() + c.split.fractions().len())
            .sum();
        let histograms = self.latency.len() * (series::LATENCY_BOUNDS.len() + 1 + 2);
        let me = self.me.map_fill.len() + self.me.overflow.by_name().count() + encode::SELF_SERIES;
        counters + histograms + me
    }
}
