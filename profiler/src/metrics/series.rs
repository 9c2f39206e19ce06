//! The exported series: per (group, syscall) totals with the split charged and the latency
//! histogram coarsened to the exported buckets.
use std::collections::BTreeMap;

use profiler_common::hist_bucket_bounds;

use crate::model::{
    split::Split,
    view::{ProcessView, SyscallView},
};

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

    pub fn since(&self, earlier: &SeriesTotals) -> SeriesTotals {
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

impl SeriesTotals {
    /// One syscall of one process, as exported: the latency coarsened to [`LATENCY_BOUNDS`].
    pub fn of(view: &SyscallView) -> SeriesTotals {
        let mut latency_buckets = vec![0u64; LATENCY_BOUNDS.len() + 1];
        for (index, &count) in view.latency.buckets.iter().enumerate() {
            if count > 0 {
                // A kernel bucket goes where its upper edge (as the caller sees it) falls.
                let upper_ns = hist_bucket_bounds(index)
                    .1
                    .saturating_add_signed(view.latency_offset_ns);
                let seconds = upper_ns as f64 / 1e9;
                let slot = LATENCY_BOUNDS
                    .iter()
                    .position(|b| seconds <= *b)
                    .unwrap_or(LATENCY_BOUNDS.len());
                latency_buckets[slot] += count;
            }
        }
        SeriesTotals {
            calls: view.calls,
            errors: view.errnos.iter().cloned().collect(),
            split: view.split,
            latency_buckets,
        }
    }
}

/// Sums per-(process, syscall) views into per-(group, syscall) totals.
pub fn by_group(
    processes: &[ProcessView],
    group_of: &dyn Fn(u32) -> String,
) -> BTreeMap<String, BTreeMap<(String, String), SeriesTotals>> {
    let mut groups: BTreeMap<String, BTreeMap<(String, String), SeriesTotals>> = BTreeMap::new();
    for process in processes {
        let group = groups.entry(group_of(process.pid)).or_default();
        for syscall in &process.syscalls {
            let label = (syscall.name.clone(), syscall.abi.as_str().to_owned());
            group.entry(label).or_default().add(&SeriesTotals::of(syscall));
        }
    }
    groups
}

#[cfg(test)]
impl SeriesTotals {
    /// `calls` calls of `handler_ns` handler time in all, in the first latency bucket.
    pub fn handler_only(calls: u64, handler_ns: u64) -> SeriesTotals {
        SeriesTotals {
            calls,
            split: Split {
                handler_ns,
                ..Default::default()
            },
            latency_buckets: vec![calls],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::{hist_bucket, StatsKey};

    use super::*;
    use crate::model::{charges::Charges, store::SyscallTotals};

    #[test]
    fn kernel_buckets_land_in_the_exported_bounds() {
        let mut totals = SyscallTotals {
            calls: 3,
            ..Default::default()
        };
        totals.latency.buckets[hist_bucket(500)] = 1; // 0.5 µs -> <= 1 µs
        totals.latency.buckets[hist_bucket(3_000)] = 1; // 3 µs -> <= 4 µs
        totals.latency.buckets[hist_bucket(100_000_000_000)] = 1; // 100 s -> +Inf
        let key = StatsKey { tgid: 1, nr: 0 };
        let series = SeriesTotals::of(&SyscallView::new(key, &totals, &Charges::default()));
        assert_eq!(series.latency_buckets[0], 1);
        assert_eq!(series.latency_buckets[1], 1);
        assert_eq!(series.latency_buckets[LATENCY_BOUNDS.len()], 1);
    }
}
