//! The bound on what sampling extrapolates.
//!
//! With sampling, a short call that stays on the CPU is timed 1 in N at random and counts N
//! times: an unbiased estimate of the untimed calls' handler time, but one outlier (a read hit
//! by 27 ms of host steal, counted 16 times) can push a (process, syscall) past what its
//! threads could have spent. Such time is on the CPU, so in a window of reads its true total
//! is at most the window's length times the threads that could run at once:
//! `min(threads, CPUs)`, and less the time the same calls spent waiting for a CPU (each
//! thread makes one call at a time). The kernel side keeps apart what it extrapolated, when
//! the entry's first call began and the most threads its process had at a sampled call; per
//! (process, syscall) and read, what the extrapolation adds beyond that bound, less the
//! measured handler time, is taken out.
//!
//! A bound, not a correction: below it the estimate is left unbiased; above it, the truth
//! is below the bound too, so taking the excess out only ever brings the estimate nearer.
//! The bound can be loose (a window is one read interval, the process may have lived a
//! fraction of it), never too tight, but for two edge cases: a call's measured on-CPU time
//! and wait for a CPU from before the window count against it, and threads that lived
//! between two sampled calls are not seen.
use std::collections::HashMap;

use profiler_common::StatsKey;

use crate::model::store::Delta;

/// What the sampling extrapolated in a statistics slot's [`Delta`], and what bounds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extrapolation {
    /// Handler time added for the calls the sampled ones stand for (part of the delta's
    /// `handler_ns`).
    pub added_ns: u64,
    /// When the slot's earliest timed call entered (CLOCK_MONOTONIC ns; 0: none timed).
    pub first_enter_ns: u64,
    /// The most threads its process had running at a sampled call.
    pub max_threads: u32,
}

/// How much of `extrapolated_ns` (part of `handler_ns`) goes beyond what `threads` threads
/// could spend on `cpus` CPUs in `span_ns`, once the measured rest of `handler_ns` is in.
/// Two limits: on the CPU, at most `min(threads, CPUs)` spans; and each thread makes one
/// call at a time, so handler and `runqueue_ns` (the same calls' measured waits for a CPU)
/// together at most `threads` spans - on a machine where the callers wait for a CPU, the
/// first limit alone let an outlier fill the time they spent waiting. (Time asleep is left
/// out of the second: a long sleep that began before the window would count against it.)
pub fn excess_ns(
    handler_ns: u64,
    extrapolated_ns: u64,
    runqueue_ns: u64,
    span_ns: u64,
    threads: u32,
    cpus: u32,
) -> u64 {
    let threads = u64::from(threads.max(1));
    let on_cpu = span_ns.saturating_mul(threads.min(u64::from(cpus.max(1))));
    let one_call_at_a_time = span_ns.saturating_mul(threads).saturating_sub(runqueue_ns);
    let capacity = on_cpu.min(one_call_at_a_time);
    let measured = handler_ns.saturating_sub(extrapolated_ns);
    extrapolated_ns.saturating_sub(capacity.saturating_sub(measured))
}

/// Takes out of `deltas` (one read, made from `window_start_ns`, when the read before began,
/// to `now_ns`, after it ended) what each (process, syscall)'s extrapolation adds beyond its
/// bound, shared among its slots by what each extrapolated; each delta's
/// `totals.sampling_cut_ns` says how much. `cpus`: the CPUs online.
pub fn bound_extrapolation(deltas: &mut [Delta], window_start_ns: u64, now_ns: u64, cpus: u32) {
    #[derive(Default)]
    struct Sum {
        handler_ns: u64,
        extrapolated_ns: u64,
        runqueue_ns: u64,
        /// The earliest first call of the key's slots.
        first_enter_ns: Option<u64>,
        threads: u32,
    }
    let mut by_key: HashMap<StatsKey, Sum> = HashMap::new();
    for delta in deltas.iter().filter(|delta| delta.extrapolation.added_ns > 0) {
        let sum = by_key.entry(delta.key).or_default();
        let extrapolation = &delta.extrapolation;
        sum.handler_ns += delta.totals.handler_ns;
        sum.extrapolated_ns += extrapolation.added_ns;
        sum.runqueue_ns += delta.totals.runqueue_ns;
        if extrapolation.first_enter_ns != 0 {
            let earliest = sum.first_enter_ns.unwrap_or(u64::MAX).min(extrapolation.first_enter_ns);
            sum.first_enter_ns = Some(earliest);
        }
        sum.threads = sum.threads.max(extrapolation.max_threads);
    }
    // What is left to take out of each key, and of its extrapolation.
    let mut left: HashMap<StatsKey, (u64, u64)> = by_key
        .into_iter()
        .filter_map(|(key, sum)| {
            // The calls of this read began after the read before did, and after the key's
            // first call.
            let span_ns = now_ns.saturating_sub(window_start_ns.max(sum.first_enter_ns.unwrap_or(0)));
            let excess = excess_ns(
                sum.handler_ns,
                sum.extrapolated_ns,
                sum.runqueue_ns,
                span_ns,
                sum.threads,
                cpus,
            );
            (excess > 0).then_some((key, (excess, sum.extrapolated_ns)))
        })
        .collect();
    for delta in deltas.iter_mut() {
        let Some((excess, extrapolated)) = left.get_mut(&delta.key) else {
            continue;
        };
        let added = delta.extrapolation.added_ns;
        // This slot's share, in proportion to what it extrapolated; the last takes the rest.
        let cut = if added >= *extrapolated {
            *excess
        } else {
            (*excess as u128 * added as u128 / *extrapolated as u128) as u64
        }
        .min(added);
        *excess -= cut;
        *extrapolated -= added;
        delta.totals.handler_ns -= cut;
        delta.totals.sampling_cut_ns += cut;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::store::{Comm, SyscallTotals};

    const MS: u64 = 1_000_000;

    fn delta(tgid: u32, handler_ns: u64, extrapolation: Extrapolation) -> Delta {
        Delta {
            key: StatsKey { tgid, nr: 0 },
            comm: Comm::from("reader"),
            cgroup_id: 0,
            totals: SyscallTotals {
                calls: 1000,
                handler_ns,
                ..SyscallTotals::default()
            },
            extrapolation,
        }
    }

    #[test]
    fn the_excess_is_what_the_extrapolation_adds_beyond_the_threads_capacity() {
        // One thread, 504 ms: 40 ms measured and 644 ms extrapolated is 180 ms too much.
        assert_eq!(excess_ns(684 * MS, 644 * MS, 0, 504 * MS, 1, 2), 180 * MS);
        // Within the bound, nothing.
        assert_eq!(excess_ns(400 * MS, 360 * MS, 0, 504 * MS, 1, 2), 0);
        // Two threads on two CPUs may spend twice the span; eight threads, still two CPUs.
        assert_eq!(excess_ns(684 * MS, 644 * MS, 0, 504 * MS, 2, 2), 0);
        assert_eq!(excess_ns(1100 * MS, 1000 * MS, 0, 504 * MS, 8, 2), 92 * MS);
        // Never more than was extrapolated, however much was measured.
        assert_eq!(excess_ns(900 * MS, 10 * MS, 0, 504 * MS, 1, 2), 10 * MS);
        // No thread seen counts as one.
        assert_eq!(excess_ns(30 * MS, 20 * MS, 0, 10 * MS, 0, 2), 20 * MS);
    }

    #[test]
    fn time_the_callers_waited_for_a_cpu_is_not_theirs_to_spend_in_the_handler() {
        // One thread, 1 s, 100 ms of it waiting for a CPU inside its calls: 900 ms of handler
        // at most, so 40 ms measured and 900 ms extrapolated is 40 ms too much.
        assert_eq!(excess_ns(940 * MS, 900 * MS, 100 * MS, 1_000 * MS, 1, 2), 40 * MS);
        // Eight threads on two CPUs waiting 5 s between them: still 2 s of CPU to spend
        // (8 s of thread time less 5 s of waits leaves 3 s).
        assert_eq!(excess_ns(2_000 * MS, 1_900 * MS, 5_000 * MS, 1_000 * MS, 8, 2), 0);
        // Waits of 7 s leave 1 s: of 1.9 s extrapolated and 100 ms measured, 1 s too much.
        assert_eq!(
            excess_ns(2_000 * MS, 1_900 * MS, 7_000 * MS, 1_000 * MS, 8, 2),
            1_000 * MS
        );
        // Waits longer than the threads' time (a wait begun before the window): nothing
        // extrapolated is left, the measured stays.
        assert_eq!(excess_ns(300 * MS, 200 * MS, 3_000 * MS, 1_000 * MS, 1, 2), 200 * MS);
    }

    #[test]
    fn a_sampled_outlier_is_cut_down_to_the_threads_wall_time() {
        let outlier = Extrapolation {
            added_ns: 644 * MS,
            first_enter_ns: 1_000 * MS,
            max_threads: 1,
        };
        let mut deltas = vec![
            delta(7, 684 * MS, outlier),
            delta(8, 100 * MS, Extrapolation::default()),
        ];
        // The entry began 496 ms into a 1 s window: its thread had 504 ms.
        bound_extrapolation(&mut deltas, 504 * MS, 1_504 * MS, 2);
        assert_eq!(deltas[0].totals.handler_ns, 504 * MS);
        assert_eq!(deltas[0].totals.sampling_cut_ns, 180 * MS);
        // Nothing extrapolated, nothing touched.
        assert_eq!(deltas[1].totals.handler_ns, 100 * MS);
        assert_eq!(deltas[1].totals.sampling_cut_ns, 0);
    }

    #[test]
    fn the_slots_of_a_key_share_the_cut_by_what_each_extrapolated() {
        let lane = |added_ns| Extrapolation {
            added_ns,
            first_enter_ns: 0,
            max_threads: 1,
        };
        // Two slots of one single-threaded key, 1.3 s of handler in a 1 s window.
        let mut deltas = vec![delta(7, 900 * MS, lane(600 * MS)), delta(7, 400 * MS, lane(300 * MS))];
        bound_extrapolation(&mut deltas, 0, 1_000 * MS, 4);
        let handler: u64 = deltas.iter().map(|d| d.totals.handler_ns).sum();
        assert_eq!(handler, 1_000 * MS);
        assert_eq!(deltas[0].totals.sampling_cut_ns, 200 * MS);
        assert_eq!(deltas[1].totals.sampling_cut_ns, 100 * MS);
    }

    #[test]
    fn an_estimate_within_the_bound_is_left_as_it_is() {
        let busy = Extrapolation {
            added_ns: 1_500 * MS,
            first_enter_ns: 0,
            max_threads: 4,
        };
        // Four threads on two CPUs: up to 2 s of handler in a 1 s window.
        let mut deltas = vec![delta(7, 1_900 * MS, busy)];
        bound_extrapolation(&mut deltas, 0, 1_000 * MS, 2);
        assert_eq!(deltas[0].totals.handler_ns, 1_900 * MS);
        assert_eq!(deltas[0].totals.sampling_cut_ns, 0);
    }
}
