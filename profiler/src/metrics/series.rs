//! What one exported series set counts: calls, errors by errno and time by component per
//! (group, syscall), and a latency histogram per syscall (machine-wide: the histogram's
//! buckets are most of the series, and a group label on them would multiply them by the
//! groups).
use std::collections::BTreeMap;

use profiler_common::hist_bucket_bounds;

use crate::model::{split::Split, view::SyscallView};

/// Upper bounds (seconds) of the exported latency histogram: powers of two from 32 ns to 2 µs
/// (a null syscall takes 100-300 ns: its quantiles fall inside buckets, not in the first one),
/// then powers of four to 33.5 s. 19 bounds and `+Inf`.
pub const LATENCY_BOUNDS: [f64; 19] = [
    32e-9,
    64e-9,
    128e-9,
    256e-9,
    512e-9,
    1.024e-6,
    2.048e-6,
    8.192e-6,
    32.768e-6,
    131.072e-6,
    524.288e-6,
    2.097152e-3,
    8.388608e-3,
    33.554432e-3,
    134.217728e-3,
    0.536870912,
    2.147483648,
    8.589934592,
    34.359738368,
];

/// Errno labels per (group, syscall) series set, at most; further errnos are added into
/// `errno="other"`.
pub const MAX_ERRNOS: usize = 4;

/// Counters of one (group, syscall).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub calls: u64,
    /// Errors by errno name.
    pub errors: BTreeMap<String, u64>,
    /// Time by component.
    pub split: Split,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.calls += other.calls;
        for (errno, count) in &other.errors {
            let label = if self.errors.contains_key(errno) || self.errors.len() < MAX_ERRNOS {
                errno.as_str()
            } else {
                "other"
            };
            *self.errors.entry(label.to_owned()).or_default() += count;
        }
        self.split.add(&other.split);
    }
}

/// Latency histogram of one syscall: counts per [`LATENCY_BOUNDS`] bucket (not cumulative;
/// `+Inf` last) and the sum of the latencies.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: vec![0; LATENCY_BOUNDS.len() + 1],
            sum_ns: 0,
        }
    }
}

impl Histogram {
    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_ns += other.sum_ns;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What the calls of one view add to the counters and to the histogram.
pub fn of_view(view: &SyscallView) -> (Counters, Histogram) {
    let mut histogram = Histogram {
        sum_ns: view.total_ns(),
        ..Histogram::default()
    };
    for (index, count) in view.latency.buckets() {
        // A kernel bucket goes where its upper edge (as the caller sees it) falls: every value
        // in it is at most that.
        let upper_ns = hist_bucket_bounds(index)
            .1
            .saturating_add_signed(view.latency_offset_ns);
        let seconds = upper_ns as f64 / 1e9;
        let slot = LATENCY_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        histogram.buckets[slot] += count;
    }
    let counters = Counters {
        calls: view.calls,
        errors: view.errnos.iter().cloned().collect(),
        split: view.split,
    };
    (counters, histogram)
}

#[cfg(test)]
mod tests {
    use profiler_common::{hist_bucket, StatsKey};

    use super::*;
    use crate::model::{charges::Charges, store::SyscallTotals};

    #[test]
    fn kernel_buckets_land_in_the_exported_bounds() {
        let mut totals = SyscallTotals {
            calls: 4,
            ..Default::default()
        };
        totals.latency.add(hist_bucket(90), 1); // 90 ns: [80, 96) -> <= 128 ns
        totals.latency.add(hist_bucket(500), 1); // 0.5 µs: [448, 512) -> <= 512 ns
        totals.latency.add(hist_bucket(3_000), 1); // 3 µs -> <= 8.192 µs
        totals.latency.add(hist_bucket(100_000_000_000), 1); // 100 s -> +Inf
        let view = SyscallView::new(StatsKey { tgid: 1, nr: 0 }, &totals, &Charges::default());
        let (_, histogram) = of_view(&view);
        assert_eq!(histogram.buckets[2], 1);
        assert_eq!(histogram.buckets[4], 1);
        assert_eq!(histogram.buckets[7], 1);
        assert_eq!(histogram.buckets[LATENCY_BOUNDS.len()], 1);
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn bounds_rise_and_resolve_a_null_syscall() {
        assert!(LATENCY_BOUNDS.windows(2).all(|pair| pair[0] < pair[1]));
        // A 150 ns call is neither in the first bucket nor in the last of the sub-µs ones.
        let bucket = LATENCY_BOUNDS.iter().position(|b| 150e-9 <= *b).unwrap();
        assert!(bucket > 0 && LATENCY_BOUNDS[bucket] < 1e-6, "{bucket}");
    }

    #[test]
    fn errno_labels_are_capped() {
        let mut counters = Counters::default();
        for errno in ["ENOENT", "EACCES", "EAGAIN", "EINTR", "EBADF", "EPIPE"] {
            counters.add(&Counters {
                calls: 1,
                errors: BTreeMap::from([(errno.to_owned(), 1)]),
                split: Split::default(),
            });
        }
        assert_eq!(counters.errors.len(), MAX_ERRNOS + 1);
        assert_eq!(counters.errors["other"], 2);
        assert_eq!(counters.errors.values().sum::<u64>(), 6);
    }
}
