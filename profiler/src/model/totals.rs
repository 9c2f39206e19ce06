//! Totals per (process, syscall) since profiling started, and each process's latest name:
//! what a report and `syscall-top` show. Built by adding up what each read of the tables
//! brought ([`Update`]).
use std::collections::{BTreeMap, HashMap};

use profiler_common::StatsKey;

use crate::model::store::{SyscallTotals, Update};

#[derive(Default)]
pub struct ProcessTotals {
    totals: BTreeMap<StatsKey, SyscallTotals>,
    /// The latest name of each process, and when it was last seen in the process table or
    /// making calls (seconds since the start).
    names: HashMap<u32, (String, f64)>,
    /// The cgroup (id) of each process, as of its latest calls.
    cgroups: HashMap<u32, u64>,
}

impl ProcessTotals {
    /// Adds what a read, `now` seconds after the start, brought.
    pub fn apply(&mut self, update: &Update, now: f64) {
        for delta in &update.deltas {
            self.totals.entry(delta.key).or_default().merge(&delta.totals);
            // The name the calls were made under, unless the process table says later.
            self.names
                .entry(delta.key.tgid)
                .and_modify(|(_, seen)| *seen = now)
                .or_insert_with(|| (delta.comm.text(), now));
            self.cgroups.insert(delta.key.tgid, delta.cgroup_id);
        }
        for &(tgid, comm, cgroup_id) in &update.processes {
            // Every process at every read: its name made text only when it changed.
            match self.names.get_mut(&tgid) {
                Some((name, seen)) => {
                    if !comm.is(name) {
                        *name = comm.text();
                    }
                    *seen = now;
                }
                None => {
                    self.names.insert(tgid, (comm.text(), now));
                }
            }
            if cgroup_id != 0 {
                self.cgroups.insert(tgid, cgroup_id);
            }
        }
    }

    pub fn totals(&self) -> &BTreeMap<StatsKey, SyscallTotals> {
        &self.totals
    }

    /// The process's latest name.
    pub fn name(&self, pid: u32) -> Option<&str> {
        self.names.get(&pid).map(|(name, _)| name.as_str())
    }

    /// The process's cgroup (its id: the inode of its cgroup v2 directory).
    pub fn cgroup(&self, pid: u32) -> Option<u64> {
        self.cgroups.get(&pid).copied()
    }

    /// Forgets the processes not seen since `since` seconds after the start (gone, and
    /// quiet since): bounds the memory of a long-running view under process churn.
    pub fn forget_unseen_since(&mut self, since: f64) {
        self.names.retain(|_, (_, seen)| *seen >= since);
        let names = &self.names;
        self.cgroups.retain(|pid, _| names.contains_key(pid));
        self.totals.retain(|key, _| names.contains_key(&key.tgid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::store::Delta;

    fn delta(tgid: u32, calls: u64, comm: &str) -> Delta {
        Delta {
            key: StatsKey { tgid, nr: 0 },
            comm: comm.into(),
            cgroup_id: 0,
            totals: SyscallTotals::of_calls(calls, 0, 0, 0, 10),
            extrapolation: Default::default(),
        }
    }

    #[test]
    fn reads_add_up_and_names_follow_the_process_table() {
        let mut totals = ProcessTotals::default();
        totals.apply(
            &Update {
                deltas: vec![delta(10, 5, "alphaX")],
                ..Update::default()
            },
            1.0,
        );
        assert_eq!(totals.name(10), Some("alphaX"));
        totals.apply(
            &Update {
                deltas: vec![delta(10, 3, "sleep")],
                processes: vec![(10, "sleep".into(), 0)],
                ..Update::default()
            },
            2.0,
        );
        assert_eq!(totals.totals()[&StatsKey { tgid: 10, nr: 0 }].calls, 8);
        assert_eq!(totals.name(10), Some("sleep"), "the latest name");
        // Seen in the process table alone, under the same name: still seen.
        totals.apply(
            &Update {
                processes: vec![(10, "sleep".into(), 0)],
                ..Update::default()
            },
            3.0,
        );
        totals.forget_unseen_since(2.5);
        assert_eq!(totals.name(10), Some("sleep"));
    }

    #[test]
    fn processes_gone_and_quiet_are_forgotten() {
        let mut totals = ProcessTotals::default();
        totals.apply(
            &Update {
                deltas: vec![delta(10, 5, "a"), delta(20, 1, "b")],
                ..Update::default()
            },
            1.0,
        );
        for second in 2..5 {
            totals.apply(
                &Update {
                    deltas: vec![delta(20, 1, "b")],
                    ..Update::default()
                },
                f64::from(second),
            );
        }
        totals.forget_unseen_since(2.0);
        assert_eq!(totals.name(10), None);
        assert_eq!(totals.totals().len(), 1);
        assert_eq!(totals.name(20), Some("b"));
    }
}
