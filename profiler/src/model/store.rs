//! The agent's running totals per (process, syscall), built from reads of the kernel's
//! statistics table.
//!
//! The kernel's counters are cumulative and its histogram buckets are `u32`, so the store
//! tracks each table slot's last raw value and adds up the (wrapping) differences. When a
//! process is gone its slots are folded into "retired" totals and freed in the kernel, so
//! the table only has to hold what is alive between two reads. Totals = retired + live.
use std::collections::{BTreeMap, HashMap, HashSet};

use profiler_common::{ErrnoKey, StatsKey, StatsSlot, SyscallStats, HIST_BUCKETS};

use crate::model::{charges::Charges, histogram::Latency, split::Split};

/// Totals of one (process, syscall).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyscallTotals {
    pub calls: u64,
    pub errors: u64,
    pub handler_ns: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
    pub latency: Latency,
    /// Error count per errno.
    pub errnos: BTreeMap<u32, u64>,
}

impl SyscallTotals {
    /// The four-part split, with the calibrated `charges` applied.
    pub fn split(&self, charges: &Charges) -> Split {
        charges.split(self.calls, self.handler_ns, self.blocked_ns, self.runqueue_ns)
    }

    pub fn merge(&mut self, other: &SyscallTotals) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.handler_ns += other.handler_ns;
        self.blocked_ns += other.blocked_ns;
        self.runqueue_ns += other.runqueue_ns;
        self.latency.merge(&other.latency);
        for (errno, count) in &other.errnos {
            *self.errnos.entry(*errno).or_default() += count;
        }
    }

    /// What happened since `earlier` (an older copy of the same totals).
    pub fn since(&self, earlier: &SyscallTotals) -> SyscallTotals {
        let mut latency = Latency::default();
        for (bucket, (now, then)) in latency
            .buckets
            .iter_mut()
            .zip(self.latency.buckets.iter().zip(&earlier.latency.buckets))
        {
            *bucket = now.saturating_sub(*then);
        }
        // The maximum is since the start; it bounds the interval's values from above.
        latency.max_ns = self.latency.max_ns;
        let errnos = self
            .errnos
            .iter()
            .map(|(errno, count)| {
                (
                    *errno,
                    count.saturating_sub(earlier.errnos.get(errno).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        SyscallTotals {
            calls: self.calls.saturating_sub(earlier.calls),
            errors: self.errors.saturating_sub(earlier.errors),
            handler_ns: self.handler_ns.saturating_sub(earlier.handler_ns),
            blocked_ns: self.blocked_ns.saturating_sub(earlier.blocked_ns),
            runqueue_ns: self.runqueue_ns.saturating_sub(earlier.runqueue_ns),
            latency,
            errnos,
        }
    }

    /// Adds what happened between two raw reads of the same slot.
    fn add_delta(&mut self, before: &SyscallStats, now: &SyscallStats) {
        self.calls += now.calls.wrapping_sub(before.calls);
        self.errors += now.errors.wrapping_sub(before.errors);
        self.handler_ns += now.handler_ns.wrapping_sub(before.handler_ns);
        self.blocked_ns += now.blocked_ns.wrapping_sub(before.blocked_ns);
        self.runqueue_ns += now.runqueue_ns.wrapping_sub(before.runqueue_ns);
        for bucket in 0..HIST_BUCKETS {
            self.latency.buckets[bucket] += u64::from(now.hist[bucket].wrapping_sub(before.hist[bucket]));
        }
        self.latency.max_ns = self.latency.max_ns.max(now.max_ns);
    }
}

/// One slot of the kernel table as last read.
struct LiveSlot {
    key: StatsKey,
    last: SyscallStats,
    totals: SyscallTotals,
}

#[derive(Default)]
pub struct Store {
    retired: BTreeMap<StatsKey, SyscallTotals>,
    /// By slot index in the kernel table.
    live: HashMap<u32, LiveSlot>,
    live_errnos: BTreeMap<ErrnoKey, u64>,
    comms: HashMap<u32, String>,
}

impl Store {
    /// Takes in a fresh read: every used slot of the statistics table (by index) and every
    /// errno counter.
    pub fn update(&mut self, slots: &[(u32, StatsSlot)], errnos: &[(ErrnoKey, u64)]) {
        let mut seen = HashSet::with_capacity(slots.len());
        for (index, slot) in slots {
            let key = StatsKey::unpack(slot.key);
            seen.insert(*index);
            match self.live.get_mut(index) {
                Some(live) if live.key == key => {
                    live.totals.add_delta(&live.last, &slot.stats);
                    live.last = slot.stats;
                }
                _ => {
                    let mut totals = SyscallTotals::default();
                    totals.add_delta(&SyscallStats::ZERO, &slot.stats);
                    if let Some(old) = self.live.insert(
                        *index,
                        LiveSlot {
                            key,
                            last: slot.stats,
                            totals,
                        },
                    ) {
                        // The slot was freed and taken by another key since the last read.
                        self.retired.entry(old.key).or_default().merge(&old.totals);
                    }
                }
            }
        }
        let vanished: Vec<u32> = self
            .live
            .keys()
            .filter(|index| !seen.contains(index))
            .copied()
            .collect();
        for index in vanished {
            let old = self.live.remove(&index).expect("listed above");
            self.retired.entry(old.key).or_default().merge(&old.totals);
        }
        self.live_errnos = errnos.iter().copied().collect();
    }

    /// Folds everything of these processes into the retired totals and returns the table
    /// slots to free; the caller frees them and deletes their errno counters in the kernel.
    pub fn retire(&mut self, tgids: &HashSet<u32>) -> Vec<u32> {
        let indices: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, live)| tgids.contains(&live.key.tgid))
            .map(|(index, _)| *index)
            .collect();
        for index in &indices {
            let old = self.live.remove(index).expect("listed above");
            self.retired.entry(old.key).or_default().merge(&old.totals);
        }
        let errnos: Vec<ErrnoKey> = self
            .live_errnos
            .keys()
            .filter(|k| tgids.contains(&k.tgid))
            .copied()
            .collect();
        for errno_key in errnos {
            let count = self.live_errnos.remove(&errno_key).expect("listed above");
            let key = StatsKey {
                tgid: errno_key.tgid,
                nr: errno_key.nr,
            };
            *self
                .retired
                .entry(key)
                .or_default()
                .errnos
                .entry(errno_key.errno)
                .or_default() += count;
        }
        indices
    }

    /// Processes with live entries.
    pub fn live_tgids(&self) -> HashSet<u32> {
        self.live.values().map(|live| live.key.tgid).collect()
    }

    /// Records a process name; the latest one wins.
    pub fn set_comm(&mut self, tgid: u32, comm: String) {
        self.comms.insert(tgid, comm);
    }

    pub fn comm(&self, tgid: u32) -> Option<&str> {
        self.comms.get(&tgid).map(String::as_str)
    }

    /// Retired plus live totals of every (process, syscall).
    pub fn totals(&self) -> BTreeMap<StatsKey, SyscallTotals> {
        let mut totals = self.retired.clone();
        for live in self.live.values() {
            totals.entry(live.key).or_default().merge(&live.totals);
        }
        for (errno_key, count) in &self.live_errnos {
            let key = StatsKey {
                tgid: errno_key.tgid,
                nr: errno_key.nr,
            };
            if let Some(row) = totals.get_mut(&key) {
                *row.errnos.entry(errno_key.errno).or_default() += count;
            }
        }
        totals
    }
}

#[cfg(test)]
impl SyscallTotals {
    /// `calls` calls of these times, all of them `latency_ns` long.
    pub fn of_calls(calls: u64, handler_ns: u64, blocked_ns: u64, runqueue_ns: u64, latency_ns: u64) -> SyscallTotals {
        let mut totals = SyscallTotals {
            calls,
            handler_ns,
            blocked_ns,
            runqueue_ns,
            ..Default::default()
        };
        totals.latency.buckets[profiler_common::hist_bucket(latency_ns)] = calls;
        totals.latency.max_ns = latency_ns;
        totals
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::hist_bucket;

    use super::*;

    fn slot(key: StatsKey, calls: u32, handler_ns: u64) -> StatsSlot {
        let mut stats = SyscallStats::ZERO;
        stats.calls = u64::from(calls);
        stats.handler_ns = handler_ns;
        stats.hist[hist_bucket(100)] = calls;
        stats.max_ns = 100;
        StatsSlot {
            key: key.packed(),
            stats,
        }
    }

    const A: StatsKey = StatsKey { tgid: 10, nr: 0 };
    const B: StatsKey = StatsKey { tgid: 20, nr: 1 };

    #[test]
    fn reads_of_a_slot_add_up_their_differences() {
        let mut store = Store::default();
        store.update(&[(3, slot(A, 5, 500))], &[]);
        store.update(&[(3, slot(A, 7, 700))], &[]);
        let totals = store.totals();
        assert_eq!(totals[&A].calls, 7);
        assert_eq!(totals[&A].handler_ns, 700);
        assert_eq!(totals[&A].latency.count(), 7);
    }

    #[test]
    fn u32_buckets_that_wrap_keep_counting() {
        let mut store = Store::default();
        let before = slot(A, u32::MAX - 1, 0);
        store.update(&[(0, before)], &[]);
        let mut after = slot(A, 3, 0); // the bucket wrapped: 5 more calls
        after.stats.calls = before.stats.calls + 5;
        store.update(&[(0, after)], &[]);
        let totals = &store.totals()[&A];
        assert_eq!(totals.calls, u64::from(u32::MAX) - 1 + 5);
        assert_eq!(totals.latency.count(), u64::from(u32::MAX) - 1 + 5);
    }

    #[test]
    fn a_key_in_two_slots_is_added_up() {
        let mut store = Store::default();
        store.update(&[(1, slot(A, 2, 20)), (9, slot(A, 3, 30))], &[]);
        assert_eq!(store.totals()[&A].calls, 5);
        assert_eq!(store.totals()[&A].handler_ns, 50);
    }

    #[test]
    fn retired_processes_keep_their_totals_and_a_reused_slot_starts_fresh() {
        let mut store = Store::default();
        let errno = ErrnoKey {
            tgid: 10,
            nr: 0,
            errno: 2,
            _pad: 0,
        };
        store.update(&[(4, slot(A, 5, 500)), (6, slot(B, 1, 10))], &[(errno, 3)]);
        assert_eq!(store.retire(&HashSet::from([10])), vec![4]);
        assert_eq!(store.live_tgids(), HashSet::from([20]));
        // The slot was freed in the kernel; another process's key takes it over later, and
        // a new process with the old pid starts from zero somewhere else.
        let c = StatsKey { tgid: 30, nr: 2 };
        store.update(&[(4, slot(c, 1, 1)), (6, slot(B, 4, 40)), (8, slot(A, 2, 200))], &[]);
        let totals = store.totals();
        assert_eq!(totals[&A].calls, 7);
        assert_eq!(totals[&A].handler_ns, 700);
        assert_eq!(totals[&A].errnos[&2], 3);
        assert_eq!(totals[&B].calls, 4);
        assert_eq!(totals[&c].calls, 1);
    }

    #[test]
    fn since_is_the_difference() {
        let mut store = Store::default();
        let errno = ErrnoKey {
            tgid: 10,
            nr: 0,
            errno: 2,
            _pad: 0,
        };
        store.update(&[(0, slot(A, 5, 500))], &[(errno, 1)]);
        let before = store.totals()[&A].clone();
        store.update(&[(0, slot(A, 8, 900))], &[(errno, 4)]);
        let delta = store.totals()[&A].since(&before);
        assert_eq!(delta.calls, 3);
        assert_eq!(delta.handler_ns, 400);
        assert_eq!(delta.latency.count(), 3);
        assert_eq!(delta.errnos, BTreeMap::from([(2, 3)]));
        assert_eq!(store.totals()[&A].since(&store.totals()[&A]).calls, 0);
    }

    #[test]
    fn errno_counts_attach_to_their_syscall() {
        let mut store = Store::default();
        let errnos = [
            (
                ErrnoKey {
                    tgid: 10,
                    nr: 0,
                    errno: 2,
                    _pad: 0,
                },
                4,
            ),
            (
                ErrnoKey {
                    tgid: 10,
                    nr: 0,
                    errno: 13,
                    _pad: 0,
                },
                1,
            ),
            // An errno whose statistics are not there (table full) is dropped, not misfiled.
            (
                ErrnoKey {
                    tgid: 99,
                    nr: 0,
                    errno: 2,
                    _pad: 0,
                },
                1,
            ),
        ];
        store.update(&[(0, slot(A, 5, 1))], &errnos);
        let totals = store.totals();
        assert_eq!(totals[&A].errnos, BTreeMap::from([(2, 4), (13, 1)]));
        assert_eq!(totals.len(), 1);
    }
}
