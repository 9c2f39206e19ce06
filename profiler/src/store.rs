//! The agent's running totals per (process, syscall), built from map reads.
//!
//! Map entries are cumulative since the programs were attached. The store keeps the latest
//! read of every live entry, plus the folded totals of processes that are gone and whose
//! entries were deleted from the maps to make room ("retired"). Totals = retired + live.
use std::collections::{BTreeMap, HashMap, HashSet};

use profiler_common::{ErrnoKey, StatsKey, SyscallStats};

use crate::histogram::Latency;

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
    pub fn from_kernel(stats: &SyscallStats) -> SyscallTotals {
        SyscallTotals {
            calls: stats.calls,
            errors: stats.errors,
            handler_ns: stats.handler_ns,
            blocked_ns: stats.blocked_ns,
            runqueue_ns: stats.runqueue_ns,
            latency: Latency::from_kernel(&stats.hist, stats.max_ns),
            errnos: BTreeMap::new(),
        }
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
}

#[derive(Default)]
pub struct Store {
    retired: BTreeMap<StatsKey, SyscallTotals>,
    live: BTreeMap<StatsKey, SyscallTotals>,
    comms: HashMap<u32, String>,
}

impl Store {
    /// Replaces the live entries with a fresh read of the maps.
    pub fn set_live(&mut self, stats: &[(StatsKey, SyscallStats)], errnos: &[(ErrnoKey, u64)]) {
        self.live = stats
            .iter()
            .map(|(key, value)| (*key, SyscallTotals::from_kernel(value)))
            .collect();
        for (key, count) in errnos {
            let stats_key = StatsKey {
                tgid: key.tgid,
                nr: key.nr,
            };
            if let Some(totals) = self.live.get_mut(&stats_key) {
                totals.errnos.insert(key.errno, *count);
            }
        }
    }

    /// Folds the live entries of these processes into the retired totals; the caller then
    /// deletes them from the maps.
    pub fn retire(&mut self, tgids: &HashSet<u32>) {
        let (gone, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.live)
            .into_iter()
            .partition(|(key, _)| tgids.contains(&key.tgid));
        self.live = kept;
        for (key, totals) in gone {
            self.retired.entry(key).or_default().merge(&totals);
        }
    }

    /// Processes with live entries.
    pub fn live_tgids(&self) -> HashSet<u32> {
        self.live.keys().map(|key| key.tgid).collect()
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
        for (key, live) in &self.live {
            totals.entry(*key).or_default().merge(live);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::hist_bucket;

    use super::*;

    fn stats(calls: u64, handler_ns: u64) -> SyscallStats {
        let mut stats = SyscallStats::ZERO;
        stats.calls = calls;
        stats.handler_ns = handler_ns;
        stats.hist[hist_bucket(100)] = calls as u32;
        stats.max_ns = 100;
        stats
    }

    const A: StatsKey = StatsKey { tgid: 10, nr: 0 };
    const B: StatsKey = StatsKey { tgid: 20, nr: 1 };

    #[test]
    fn live_reads_replace_rather_than_add() {
        let mut store = Store::default();
        store.set_live(&[(A, stats(5, 500))], &[]);
        store.set_live(&[(A, stats(7, 700))], &[]);
        assert_eq!(store.totals()[&A].calls, 7);
        assert_eq!(store.totals()[&A].latency.count(), 7);
    }

    #[test]
    fn retired_processes_keep_their_totals_and_a_reused_pid_adds_on() {
        let mut store = Store::default();
        store.set_live(
            &[(A, stats(5, 500)), (B, stats(1, 10))],
            &[(
                ErrnoKey {
                    tgid: 10,
                    nr: 0,
                    errno: 2,
                    _pad: 0,
                },
                3,
            )],
        );
        store.retire(&HashSet::from([10]));
        assert_eq!(store.live_tgids(), HashSet::from([20]));
        // The maps were pruned; a new process with the same pid starts from zero there.
        store.set_live(&[(A, stats(2, 200)), (B, stats(4, 40))], &[]);
        let totals = store.totals();
        assert_eq!(totals[&A].calls, 7);
        assert_eq!(totals[&A].handler_ns, 700);
        assert_eq!(totals[&A].errnos[&2], 3);
        assert_eq!(totals[&B].calls, 4);
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
            // An errno whose stats entry is not there (map full) is dropped, not misfiled.
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
        store.set_live(&[(A, stats(5, 1))], &errnos);
        let totals = store.totals();
        assert_eq!(totals[&A].errnos, BTreeMap::from([(2, 4), (13, 1)]));
        assert_eq!(totals.len(), 1);
    }
}
