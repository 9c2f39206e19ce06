//! Latency distributions read from the kernel's log-linear histograms.
//!
//! The kernel counts calls into [`profiler_common::hist_bucket`] buckets (4 per power of two,
//! so a bucket is at most 25% wide). Here the counts are kept sparse (a read of one slot
//! touches a bucket or two of 160), widened to `u64`, merged, and turned into percentiles
//! through an HdrHistogram fed with each bucket's midpoint, which puts every percentile within
//! 12.5% of the true value.
use hdrhistogram::Histogram;
use profiler_common::{hist_bucket_bounds, HIST_BUCKETS, HIST_SUB_BITS};
use serde::Serialize;

/// Counts per kernel bucket (the non-zero ones, by bucket index) plus the exact maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// `(bucket, count)`, by bucket, counts above zero.
    buckets: Vec<(u8, u64)>,
    pub max_ns: u64,
}

/// Percentiles of a distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Calls the distribution stands for: the calls counted, or with sampled timing an
    /// estimate of them (each sampled call stands for N).
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Empty, with room for `buckets` buckets with calls.
    pub fn with_capacity(buckets: usize) -> Latency {
        Latency {
            buckets: Vec::with_capacity(buckets),
            max_ns: 0,
        }
    }

    /// Adds `count` calls to kernel bucket `bucket`.
    pub fn add(&mut self, bucket: usize, count: u64) {
        if count == 0 {
            return;
        }
        let bucket = u8::try_from(bucket).expect("fewer than 256 buckets");
        // Buckets mostly come in order (a slot's read, a merge): append.
        if self.buckets.last().is_none_or(|&(last, _)| last < bucket) {
            self.buckets.push((bucket, count));
            return;
        }
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
    }

    /// `(bucket, count)` of every bucket with calls, by bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.buckets.iter().map(|&(bucket, count)| (bucket as usize, count))
    }

    /// `[low, high, count]` per power of two (the kernel's buckets added up), from the
    /// first with calls to the last (those between included, empty or not), the bounds
    /// shifted by `offset_ns` (the latency the caller sees: see `SyscallView::latency_offset_ns`).
    pub fn by_power_of_two(&self, offset_ns: i64) -> Vec<[u64; 3]> {
        let per_power = 1usize << HIST_SUB_BITS;
        let shift = |ns: u64| ns.saturating_add_signed(offset_ns);
        let groups: Vec<[u64; 3]> = (0..HIST_BUCKETS / per_power)
            .map(|g| {
                let count: u64 = (g * per_power..(g + 1) * per_power).map(|b| self.count_of(b)).sum();
                let low = shift(hist_bucket_bounds(g * per_power).0);
                let high = shift(hist_bucket_bounds((g + 1) * per_power - 1).1);
                [low, high, count]
            })
            .collect();
        match (
            groups.iter().position(|g| g[2] > 0),
            groups.iter().rposition(|g| g[2] > 0),
        ) {
            (Some(first), Some(last)) => groups[first..=last].to_vec(),
            _ => Vec::new(),
        }
    }

    /// The calls of one bucket.
    pub fn count_of(&self, bucket: usize) -> u64 {
        self.buckets().find(|(b, _)| *b == bucket).map_or(0, |(_, count)| count)
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, count)| count).sum()
    }

    pub fn merge(&mut self, other: &Latency) {
        for (bucket, count) in other.buckets() {
            self.add(bucket, count);
        }
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The calls since `earlier` (an older copy of the same distribution); the maximum is
    /// since the start, an upper bound of the interval's.
    pub fn since(&self, earlier: &Latency) -> Latency {
        let mut since = Latency {
            buckets: Vec::new(),
            max_ns: self.max_ns,
        };
        for (bucket, count) in self.buckets() {
            since.add(bucket, count.saturating_sub(earlier.count_of(bucket)));
        }
        since
    }

    /// p50/p90/p99/max, each shifted by `offset_ns` (the per-call boundary cost, which the
    /// tracepoints cannot see but every call pays, less the tracing inside the window) and
    /// never below zero. All zero for an empty distribution.
    pub fn percentiles(&self, offset_ns: i64) -> Percentiles {
        if self.count() == 0 {
            return Percentiles::default();
        }
        let mut hdr = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for (idx, count) in self.buckets() {
            let (low, high) = hist_bucket_bounds(idx);
            // The maximum bounds the last bucket better than its nominal upper edge.
            let mid = (low + (high - 1).min(self.max_ns.max(low))) / 2;
            hdr.record_n(mid, count).expect("histogram auto-resizes");
        }
        // A midpoint is never above the true maximum, so the percentiles stay <= max.
        let shift = |ns: u64| ns.saturating_add_signed(offset_ns);
        let at = |q: f64| shift(hdr.value_at_quantile(q).min(self.max_ns.max(1)));
        Percentiles {
            count: self.count(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: shift(self.max_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::{hist_bucket, HIST_BUCKETS};

    use super::*;

    #[test]
    fn buckets_cover_every_value_once_and_in_order() {
        let mut previous_high = 0;
        for idx in 0..HIST_BUCKETS {
            let (low, high) = hist_bucket_bounds(idx);
            assert_eq!(low, previous_high, "bucket {idx} starts where the last ended");
            assert!(high > low);
            assert_eq!(hist_bucket(low), idx);
            assert_eq!(hist_bucket(high - 1), idx);
            previous_high = high;
        }
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
    }

    #[test]
    fn at_least_four_sub_buckets_per_power_of_two() {
        for exp in 2..40 {
            let first = hist_bucket(1 << exp);
            let next = hist_bucket(1 << (exp + 1));
            assert_eq!(next - first, 4, "power 2^{exp}");
        }
        // Each bucket is at most 25% wide relative to its lower bound.
        for idx in 4..HIST_BUCKETS {
            let (low, high) = hist_bucket_bounds(idx);
            assert!((high - low) * 4 <= low, "bucket {idx}: {low}..{high}");
        }
    }

    fn latency_of(values: &[u64]) -> Latency {
        let mut latency = Latency::default();
        for &v in values {
            latency.add(hist_bucket(v), 1);
            latency.max_ns = latency.max_ns.max(v);
        }
        latency
    }

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_are_within_25_percent_of_the_truth() {
        // A spread-out, skewed distribution: many fast calls, a long tail.
        let mut values: Vec<u64> = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let exp = 6 + (x % 18); // 64 ns .. 16 ms
            values.push((1 << exp) + (x >> 40) % (1 << exp));
        }
        let latency = latency_of(&values);
        values.sort_unstable();
        let p = latency.percentiles(0);
        for (got, q) in [(p.p50, 0.5), (p.p90, 0.9), (p.p99, 0.99)] {
            let truth = exact_quantile(&values, q) as f64;
            let error = (got as f64 - truth).abs() / truth;
            assert!(error <= 0.25, "q={q}: got {got}, truth {truth}, error {error:.3}");
        }
        assert_eq!(p.max, *values.last().unwrap());
    }

    #[test]
    fn constant_values_come_back_close() {
        let latency = latency_of(&[1000; 50]);
        let p = latency.percentiles(0);
        assert!((875..=1000).contains(&p.p50), "{p:?}");
        assert_eq!(p.max, 1000);
    }

    #[test]
    fn offset_is_added_to_every_percentile() {
        let latency = latency_of(&[1000; 10]);
        let plain = latency.percentiles(0);
        let shifted = latency.percentiles(50);
        assert_eq!(shifted.p50, plain.p50 + 50);
        assert_eq!(shifted.p99, plain.p99 + 50);
        assert_eq!(shifted.max, 1050);
        // A negative shift (tracing taken out) never goes below zero.
        assert_eq!(
            latency.percentiles(-5000),
            Percentiles {
                count: 10,
                ..Percentiles::default()
            }
        );
    }

    #[test]
    fn empty_distribution_is_all_zero() {
        assert_eq!(Latency::default().percentiles(40), Percentiles::default());
    }

    #[test]
    fn since_is_the_difference_and_buckets_stay_sorted_and_sparse() {
        let mut now = latency_of(&[10, 2_000, 2_000, 50]);
        let earlier = latency_of(&[10, 2_000]);
        let since = now.since(&earlier);
        assert_eq!(since.count(), 2);
        assert_eq!(since.count_of(hist_bucket(2_000)), 1);
        assert_eq!(since.count_of(hist_bucket(10)), 0);
        now.add(hist_bucket(1), 0);
        let buckets: Vec<usize> = now.buckets().map(|(b, _)| b).collect();
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        assert_eq!(buckets.len(), 3, "no empty buckets kept");
        now.add(HIST_BUCKETS - 1, 1);
        assert_eq!(now.count_of(HIST_BUCKETS - 1), 1);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_max() {
        let mut a = latency_of(&[10, 20]);
        let b = latency_of(&[30_000]);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max_ns, 30_000);
    }
}
