//! Which group a series belongs to: the top K groups by syscall time get their own series,
//! everything else is added into the group `other`. Counters stay monotonic: a group keeps
//! its own series until it has been idle for the grace period (then its series go away), and
//! when a group moves out of `other` what it had added there stays there.
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use crate::metrics::series::SeriesTotals;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(calls: u64, ns: u64) -> BTreeMap<(String, String), SeriesTotals> {
        BTreeMap::from([(
            ("read".to_owned(), "x86_64".to_owned()),
            SeriesTotals::handler_only(calls, ns),
        )])
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
}
