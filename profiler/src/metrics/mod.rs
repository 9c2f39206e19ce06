//! Prometheus metrics: the model's views, grouped by a label with a hard cardinality cap,
//! encoded with `prometheus-client` from one consistent snapshot per scrape.
//!
//! - [`series`]: per (group, syscall) totals, the split charged, buckets coarsened;
//! - [`grouping`]: which groups get their own series (`--group-by`, `--top-k`, `--grace`);
//! - [`encode`](mod@encode): the snapshot in the exposition formats;
//! - [`http`]: the scrape endpoint.
pub mod encode;
pub mod grouping;
pub mod http;
pub mod series;

pub use encode::{encode, Format};
pub use grouping::{GroupBy, Grouper, Series};
pub use series::by_group;

use crate::model::overflow::Overflow;

/// Facts about the profiler itself.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    pub programs_attached: u64,
    /// `(map, fill ratio)`.
    pub map_fill: Vec<(String, f64)>,
    /// Events lost to full maps, by reason.
    pub overflow: Overflow,
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
