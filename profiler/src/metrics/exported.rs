//! The exported series, kept up to date from what each read of the tables brought.
//!
//! Every series is a sum of what the reads brought while the series existed: counters never
//! go back, whatever happens to processes (exits, reused pids, renames, execs). Each read's
//! calls go to the group their process had when it made them (the name kept with the
//! counts), not to its latest one. Memory and series are bounded by the budgets, not by
//! history:
//! - groups: the `--top-k` most active groups (by syscall time, once active for a while) have
//!   their own series, everything else is added into `group="other"`; a group idle for the
//!   grace period loses its series;
//! - syscalls: within each group, the most active `--top-syscalls` have their own series, the
//!   rest are added into `syscall="other"`;
//! - latency: one histogram per syscall for the machine (no group label), for the most active
//!   syscalls, the rest in `syscall="other"`.
//!
//! A group or syscall whose series ended and that comes back continues from where it was,
//! while it is remembered (a bounded number are).
use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

use crate::{
    metrics::{
        budget::{Budget, BudgetRules, Changes},
        series::{of_view, Counters, Histogram},
    },
    model::{
        charges::Charges,
        store::{Comm, Delta, SyscallTotals},
        view::SyscallView,
    },
};

/// The group a process's series are labelled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// One group for the whole machine (no `group` label).
    None,
    /// The process name.
    Comm,
    /// The process's cgroup (v2 path).
    Cgroup,
    /// The process's container, named from its runtime's state where it can be read
    /// (`docker:web`, `k8s:namespace/pod/container`); outside containers, the cgroup path.
    Container,
}

/// Name of the group (and of the syscall) everything beyond a budget is added into.
pub const OTHER: &str = "other";

/// A syscall label: name and ABI.
pub type Syscall = (String, &'static str);

/// The budgets' sizes and timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub top_groups: usize,
    pub top_syscalls: usize,
    pub latency_syscalls: usize,
    /// Seconds a group or syscall may stay idle before its series end.
    pub grace_secs: f64,
}

/// What a group (or `other`) exports: counters per syscall, the rest in `syscall="other"`.
struct GroupSeries {
    syscalls: Budget<Syscall>,
    own: HashMap<Syscall, Counters>,
    other: Counters,
    remembered: Remembered<Syscall, Counters>,
}

impl GroupSeries {
    fn new(limits: &Limits) -> GroupSeries {
        GroupSeries {
            syscalls: Budget::new(rules(limits.top_syscalls, limits.grace_secs, false)),
            own: HashMap::new(),
            other: Counters::default(),
            remembered: Remembered::new(2 * limits.top_syscalls),
        }
    }

    fn add(&mut self, syscall: &Syscall, counters: &Counters, activity: f64, now: f64) {
        self.syscalls.observe(syscall, activity, now);
        if !self.own.contains_key(syscall) && self.syscalls.admit(syscall) {
            let remembered = self.remembered.take(syscall).unwrap_or_default();
            self.own.insert(syscall.clone(), remembered);
        }
        match self.own.get_mut(syscall) {
            Some(own) => own.add(counters),
            None => self.other.add(counters),
        }
    }

    /// Applies the syscall budget's changes (they take effect from the next read).
    fn rebalance(&mut self, now: f64) {
        let changes = self.syscalls.rebalance(now);
        self.remembered.apply(changes, &mut self.own, Counters::default);
    }

    fn export(&self, group: Option<&str>, into: &mut BTreeMap<SeriesKey, Counters>) {
        for (syscall, counters) in &self.own {
            into.insert(
                (group.map(str::to_owned), syscall.0.clone(), syscall.1),
                counters.clone(),
            );
        }
        if self.other != Counters::default() {
            into.insert((group.map(str::to_owned), OTHER.to_owned(), OTHER), self.other.clone());
        }
    }
}

/// `(group, syscall, abi)` of a counter series set; no group label when `None`.
pub type SeriesKey = (Option<String>, String, &'static str);

/// Every exported series, and what decides which exist.
pub struct Exported {
    group_by: GroupBy,
    limits: Limits,
    groups: Budget<String>,
    own: HashMap<String, GroupSeries>,
    other: GroupSeries,
    remembered: Remembered<String, GroupSeries>,
    latency_syscalls: Budget<Syscall>,
    latency: HashMap<Syscall, Histogram>,
    latency_other: Histogram,
    latency_remembered: Remembered<Syscall, Histogram>,
}

/// The rules of a budget of `size`. Groups must be `sustained` to get series (active in 5
/// reads over 10 s at least: a one-shot command never is); syscalls get them at once (in a
/// group that has its own, or in the machine's histogram), the most active first.
fn rules(size: usize, grace_secs: f64, sustained: bool) -> BudgetRules {
    let (min_active_reads, min_age_secs) = if sustained { (5, 10.0) } else { (1, 0.0) };
    BudgetRules {
        size,
        min_active_reads,
        min_age_secs,
        grace_secs,
        half_life_secs: 60.0,
        displace_factor: 2.0,
        max_candidates: (8 * size).max(256),
    }
}

impl Exported {
    pub fn new(group_by: GroupBy, limits: Limits) -> Exported {
        let mut own = HashMap::new();
        if group_by == GroupBy::None {
            // One group for the machine, always.
            own.insert(String::new(), GroupSeries::new(&limits));
        }
        Exported {
            group_by,
            limits,
            groups: Budget::new(rules(limits.top_groups, limits.grace_secs, true)),
            own,
            other: GroupSeries::new(&limits),
            remembered: Remembered::new(4 * limits.top_groups),
            latency_syscalls: Budget::new(rules(limits.latency_syscalls, limits.grace_secs, false)),
            latency: HashMap::new(),
            latency_other: Histogram::default(),
            latency_remembered: Remembered::new(2 * limits.latency_syscalls),
        }
    }

    /// Takes in what a read at `now` (seconds) brought: each delta goes to the group
    /// `group_of` names for it (unused when grouping by nothing).
    pub fn apply(&mut self, deltas: &[Delta], group_of: &mut dyn FnMut(&Delta) -> String, charges: &Charges, now: f64) {
        // A busy machine's read has thousands of deltas (one per slot: per process, lane
        // and epoch) for a few hundred series: add up those that go to the same series by
        // what decides their group, then name each sum once.
        let mut sums: HashMap<(Comm, u64, u32), (&Delta, SyscallTotals)> = HashMap::new();
        for delta in deltas {
            let source = match self.group_by {
                GroupBy::None => (Comm::default(), 0),
                GroupBy::Comm => (delta.comm, 0),
                GroupBy::Cgroup | GroupBy::Container => (Comm::default(), delta.cgroup_id),
            };
            sums.entry((source.0, source.1, delta.key.nr))
                .or_insert_with(|| (delta, SyscallTotals::default()))
                .1
                .merge(&delta.totals);
        }
        let items: Vec<(String, Syscall, Counters, Histogram)> = sums
            .into_values()
            .map(|(first, totals)| {
                let view = SyscallView::new(first.key, &totals, charges);
                let (counters, histogram) = of_view(&view);
                let group = match self.group_by {
                    GroupBy::None => String::new(),
                    _ => group_of(first),
                };
                (group, (view.name, view.abi.as_str()), counters, histogram)
            })
            .collect();
        for (group, syscall, _, histogram) in &items {
            let activity = histogram.sum_ns as f64;
            if self.group_by != GroupBy::None {
                self.groups.observe(group, activity, now);
            }
            self.latency_syscalls.observe(syscall, activity, now);
        }
        self.rebalance(now);
        for (group, syscall, counters, histogram) in &items {
            let activity = histogram.sum_ns as f64;
            let target = match self.own.get_mut(group) {
                Some(own) => own,
                None => &mut self.other,
            };
            target.add(syscall, counters, activity, now);
            if !self.latency.contains_key(syscall) && self.latency_syscalls.admit(syscall) {
                let remembered = self.latency_remembered.take(syscall).unwrap_or_default();
                self.latency.insert(syscall.clone(), remembered);
            }
            match self.latency.get_mut(syscall) {
                Some(own) => own.add(histogram),
                None => self.latency_other.add(histogram),
            }
        }
        for series in self.own.values_mut().chain(std::iter::once(&mut self.other)) {
            series.rebalance(now);
        }
    }

    fn rebalance(&mut self, now: f64) {
        if self.group_by != GroupBy::None {
            let changes = self.groups.rebalance(now);
            let limits = self.limits;
            self.remembered
                .apply(changes, &mut self.own, || GroupSeries::new(&limits));
        }
        let changes = self.latency_syscalls.rebalance(now);
        self.latency_remembered
            .apply(changes, &mut self.latency, Histogram::default);
    }

    /// The counter series sets and the latency histograms, as they stand.
    pub fn series(&self) -> (BTreeMap<SeriesKey, Counters>, BTreeMap<Syscall, Histogram>) {
        let mut counters = BTreeMap::new();
        let labelled = self.group_by != GroupBy::None;
        for (group, series) in &self.own {
            series.export(labelled.then_some(group.as_str()), &mut counters);
        }
        self.other.export(labelled.then_some(OTHER), &mut counters);
        let mut latency: BTreeMap<Syscall, Histogram> = self
            .latency
            .iter()
            .map(|(syscall, histogram)| (syscall.clone(), histogram.clone()))
            .collect();
        if self.latency_other.count() > 0 {
            latency.insert((OTHER.to_owned(), OTHER), self.latency_other.clone());
        }
        (counters, latency)
    }

    /// Groups tracked (with series of their own, and waiting for them).
    pub fn groups_tracked(&self) -> usize {
        self.groups.tracked()
    }
}

/// Series whose keys lost their place, kept so that they continue where they were if the
/// key comes back; the least recently put go first.
struct Remembered<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    next: u64,
}

impl<K: Eq + Hash + Clone, V> Remembered<K, V> {
    fn new(capacity: usize) -> Remembered<K, V> {
        Remembered {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            next: 0,
        }
    }

    fn put(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, stamp))| *stamp)
                .map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, self.next));
        self.next += 1;
    }

    fn take(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(value, _)| value)
    }

    /// Applies a budget's `changes` to the series with keys of their own (`own`): retired
    /// ones are remembered, promoted ones continue from what was remembered of them (or
    /// start `fresh`), so that a key coming back never restarts a counter.
    fn apply(&mut self, changes: Changes<K>, own: &mut HashMap<K, V>, fresh: impl Fn() -> V) {
        for key in changes.retired {
            if let Some(value) = own.remove(&key) {
                self.put(key, value);
            }
        }
        for key in changes.promoted {
            let value = self.take(&key).unwrap_or_else(&fresh);
            own.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::StatsKey;

    use super::*;

    const LIMITS: Limits = Limits {
        top_groups: 2,
        top_syscalls: 2,
        latency_syscalls: 2,
        grace_secs: 30.0,
    };

    fn delta(tgid: u32, nr: u32, calls: u64, comm: &str) -> Delta {
        Delta {
            key: StatsKey { tgid, nr },
            comm: comm.into(),
            cgroup_id: 0,
            totals: SyscallTotals::of_calls(calls, calls * 1000, 0, 0, 1000),
            extrapolation: Default::default(),
        }
    }

    fn by_comm(delta: &Delta) -> String {
        delta.comm.text()
    }

    fn calls(exported: &Exported, group: &str) -> u64 {
        let (counters, _) = exported.series();
        counters
            .iter()
            .filter(|((g, _, _), _)| g.as_deref() == Some(group))
            .map(|(_, c)| c.calls)
            .sum()
    }

    fn apply(exported: &mut Exported, deltas: &[Delta], now: f64) {
        exported.apply(deltas, &mut by_comm, &Charges::default(), now);
    }

    #[test]
    fn a_busy_steady_group_gets_its_own_series_one_shots_stay_in_other() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        for second in 0..12 {
            let now = f64::from(second);
            let mut deltas = vec![delta(100, 0, 10, "nginx")];
            // A new one-shot command every second, each under its own name.
            deltas.push(delta(1000 + second, 0, 1, &format!("date-{second}")));
            apply(&mut exported, &deltas, now);
        }
        let (counters, _) = exported.series();
        let groups: std::collections::BTreeSet<_> = counters.keys().map(|(g, _, _)| g.clone().unwrap()).collect();
        assert_eq!(groups, ["nginx", "other"].map(String::from).into());
        // Everything counted once: nginx's first 10 s in other, the rest its own.
        assert_eq!(calls(&exported, "nginx") + calls(&exported, OTHER), 12 * 10 + 12);
        assert!(calls(&exported, "nginx") > 0);
    }

    #[test]
    fn calls_go_to_the_name_they_were_made_under_and_counters_never_go_back() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        let mut last: BTreeMap<SeriesKey, u64> = BTreeMap::new();
        for second in 0..40u32 {
            let now = f64::from(second);
            // pid 10 is alphaX for 20 s, then execs sleep (a new name, the same pid); pid
            // 20 comes and goes, reused by another program.
            let name = if second < 20 { "alphaX" } else { "sleep" };
            let reused = if second % 10 < 5 { "job" } else { "cron" };
            apply(
                &mut exported,
                &[delta(10, 110, 1000, name), delta(20, 0, 7, reused)],
                now,
            );
            let (counters, _) = exported.series();
            for (key, series) in counters {
                if let Some(before) = last.get(&key) {
                    assert!(series.calls >= *before, "{key:?} went back at {second}");
                }
                last.insert(key, series.calls);
            }
        }
        let total: u64 = last.values().sum();
        assert_eq!(total, 40 * 1000 + 40 * 7, "every call counted exactly once");
        assert!(
            calls(&exported, "sleep") <= 20 * 1000,
            "sleep gets none of alphaX's calls"
        );
    }

    #[test]
    fn idle_groups_lose_their_series_and_continue_when_they_come_back() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        for second in 0..12 {
            apply(&mut exported, &[delta(10, 0, 5, "a")], f64::from(second));
        }
        let own = calls(&exported, "a");
        assert!(own > 0);
        // Idle past the grace period: its series end.
        apply(&mut exported, &[delta(20, 0, 1, "b")], 50.0);
        assert_eq!(calls(&exported, "a"), 0);
        // Back and steady again: it continues from where it was.
        for second in 60..72 {
            apply(&mut exported, &[delta(10, 0, 5, "a")], f64::from(second));
        }
        assert!(calls(&exported, "a") > own);
    }

    #[test]
    fn syscalls_beyond_the_budget_go_to_other_and_latency_has_no_group() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        for second in 0..15 {
            let deltas: Vec<Delta> = (0..5).map(|nr| delta(10, nr, 10 * (u64::from(nr) + 1), "a")).collect();
            apply(&mut exported, &deltas, f64::from(second));
        }
        let (counters, latency) = exported.series();
        let syscalls_of_a: Vec<&str> = counters
            .keys()
            .filter(|(g, _, _)| g.as_deref() == Some("a"))
            .map(|(_, s, _)| s.as_str())
            .collect();
        assert!(syscalls_of_a.len() <= LIMITS.top_syscalls + 1, "{syscalls_of_a:?}");
        assert!(syscalls_of_a.contains(&OTHER));
        assert!(latency.len() <= LIMITS.latency_syscalls + 1);
        assert!(latency.contains_key(&(OTHER.to_owned(), OTHER)));
    }

    #[test]
    fn within_the_budgets_every_call_is_in_the_counters_and_the_histograms() {
        let roomy = Limits {
            top_groups: 10,
            top_syscalls: 10,
            latency_syscalls: 10,
            grace_secs: 30.0,
        };
        let mut exported = Exported::new(GroupBy::None, roomy);
        for second in 0..5 {
            let deltas: Vec<Delta> = (0..5).map(|nr| delta(10 + nr, nr, 3, "a")).collect();
            apply(&mut exported, &deltas, f64::from(second));
        }
        let (counters, latency) = exported.series();
        assert_eq!(counters.values().map(|c| c.calls).sum::<u64>(), 5 * 5 * 3);
        assert_eq!(latency.values().map(Histogram::count).sum::<u64>(), 5 * 5 * 3);
        assert!(!counters.keys().any(|(_, syscall, _)| syscall == OTHER));
    }

    #[test]
    fn no_group_label_when_grouping_by_nothing() {
        let mut exported = Exported::new(GroupBy::None, LIMITS);
        apply(&mut exported, &[delta(10, 0, 5, "a"), delta(20, 0, 5, "b")], 0.0);
        let (counters, _) = exported.series();
        assert!(counters.keys().all(|(group, _, _)| group.is_none()));
        assert_eq!(counters.values().map(|c| c.calls).sum::<u64>(), 10);
    }

    #[test]
    fn deltas_of_one_group_and_syscall_are_added_up_before_the_budgets() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        for second in 0..12 {
            // Three processes (and lanes) of one name, another name beside it.
            let deltas = [
                delta(10, 0, 1, "nginx"),
                delta(11, 0, 2, "nginx"),
                delta(12, 0, 3, "nginx"),
                delta(20, 0, 1, "redis"),
            ];
            apply(&mut exported, &deltas, f64::from(second));
        }
        let (counters, latency) = exported.series();
        let total: u64 = counters.values().map(|c| c.calls).sum();
        assert_eq!(total, 12 * 7);
        assert_eq!(latency.values().map(Histogram::count).sum::<u64>(), 12 * 7);
        assert!(calls(&exported, "nginx") > 0);
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let mut exported = Exported::new(GroupBy::Comm, LIMITS);
        for second in 0..600u32 {
            // 100 new processes a second, each under a name of its own.
            let deltas: Vec<Delta> = (0..100)
                .map(|i| delta(second * 100 + i, i % 7, 3, &format!("job-{second}-{i}")))
                .collect();
            apply(&mut exported, &deltas, f64::from(second));
        }
        let candidates = rules(LIMITS.top_groups, LIMITS.grace_secs, true).max_candidates;
        assert!(exported.groups_tracked() <= candidates + LIMITS.top_groups);
        let (counters, _) = exported.series();
        assert!(counters.len() <= (LIMITS.top_groups + 1) * (LIMITS.top_syscalls + 1));
    }
}
