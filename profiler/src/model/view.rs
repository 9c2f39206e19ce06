//! One (process, syscall) as every output shows it, built once from the store's totals: named
//! from its ABI's table, its time split with the calibrated charges applied, its errors by
//! errno name, its latency as the caller sees it. Reports, `syscall-top` and the metrics
//! all start from these views.
use std::collections::BTreeMap;

use profiler_common::StatsKey;

use crate::model::{
    charges::Charges,
    histogram::{Latency, Percentiles},
    names::{decode_nr, errno_name, syscall_name, Abi},
    split::{classify, waiting_by_design, Class, Split},
    store::SyscallTotals,
};

/// A syscall of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct SyscallView {
    /// The (process, syscall) as the tables have it.
    pub key: StatsKey,
    pub pid: u32,
    pub abi: Abi,
    /// The number in the ABI's table.
    pub nr: u32,
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    /// Errors per errno name, the most frequent first.
    pub errnos: Vec<(String, u64)>,
    pub split: Split,
    /// Latency between the tracepoints, per kernel bucket (see [`Self::percentiles`]).
    pub latency: Latency,
    /// What turns a latency between the tracepoints into the caller's ([`Charges`]).
    pub latency_offset_ns: i64,
    /// Handler time the sampling extrapolated beyond what the threads could have spent, not
    /// in `split` (see [`crate::model::bound`]).
    pub sampling_cut_ns: u64,
}

impl SyscallView {
    pub fn new(key: StatsKey, totals: &SyscallTotals, charges: &Charges) -> SyscallView {
        let (abi, nr) = decode_nr(key.nr);
        let mut errnos: Vec<(String, u64)> = totals
            .errnos
            .iter()
            .map(|(errno, count)| (errno_name(*errno).into_owned(), *count))
            .collect();
        errnos.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        SyscallView {
            key,
            pid: key.tgid,
            abi,
            nr,
            name: syscall_name(abi, nr).into_owned(),
            calls: totals.calls,
            errors: totals.errors,
            errnos,
            split: totals.split(charges),
            latency: totals.latency.clone(),
            latency_offset_ns: charges.latency_offset_ns(),
            sampling_cut_ns: totals.sampling_cut_ns,
        }
    }

    pub fn total_ns(&self) -> u64 {
        self.split.total_ns()
    }

    /// Latency percentiles as the caller sees them (the boundary cost included).
    pub fn percentiles(&self) -> Percentiles {
        self.latency.percentiles(self.latency_offset_ns)
    }

    /// The class of these calls, made over `seconds`.
    pub fn class(&self, seconds: f64) -> Class {
        self.by_design()
            .unwrap_or_else(|| classify(&self.split, per_second(self.calls, seconds)))
    }

    /// Their class if they wait by design (see [`waiting_by_design`]).
    pub fn by_design(&self) -> Option<Class> {
        let timed_out = self
            .errnos
            .iter()
            .find(|(name, _)| name == "ETIMEDOUT")
            .map_or(0, |(_, count)| *count);
        waiting_by_design(&self.name, &self.split, self.calls, timed_out)
    }
}

/// A process: its syscalls and their sums.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessView {
    pub pid: u32,
    pub calls: u64,
    pub errors: u64,
    pub split: Split,
    /// The split of the calls that hold work up: all but those waiting by design.
    pub active: Split,
    /// The calls that hold work up first, the most time first (then the most calls, then by
    /// name); then those waiting by design, likewise.
    pub syscalls: Vec<SyscallView>,
}

impl ProcessView {
    fn new(pid: u32, mut syscalls: Vec<SyscallView>) -> ProcessView {
        syscalls.sort_by(|a, b| {
            (a.by_design().is_some())
                .cmp(&b.by_design().is_some())
                .then(b.total_ns().cmp(&a.total_ns()))
                .then(b.calls.cmp(&a.calls))
                .then(a.name.cmp(&b.name))
        });
        let (mut split, mut active) = (Split::default(), Split::default());
        for syscall in &syscalls {
            split.add(&syscall.split);
            if syscall.by_design().is_none() {
                active.add(&syscall.split);
            }
        }
        ProcessView {
            pid,
            calls: syscalls.iter().map(|s| s.calls).sum(),
            errors: syscalls.iter().map(|s| s.errors).sum(),
            split,
            active,
            syscalls,
        }
    }

    /// Time in calls that hold work up (see [`ProcessView::active`]).
    pub fn active_ns(&self) -> u64 {
        self.active.total_ns()
    }

    pub fn total_ns(&self) -> u64 {
        self.split.total_ns()
    }

    /// The class of the process's calls that hold work up, made over `seconds`; if all it
    /// did was wait by design, the class of its longest such wait.
    pub fn class(&self, seconds: f64) -> Class {
        match self.syscalls.first().and_then(SyscallView::by_design) {
            Some(class) if self.active_ns() == 0 => class,
            _ => classify(&self.active, per_second(self.calls, seconds)),
        }
    }

    /// Latency percentiles of all its calls as the callers see them.
    pub fn percentiles(&self) -> Percentiles {
        let mut latency = Latency::default();
        for syscall in &self.syscalls {
            latency.merge(&syscall.latency);
        }
        let offset = self.syscalls.first().map_or(0, |s| s.latency_offset_ns);
        latency.percentiles(offset)
    }
}

/// The views of every (process, syscall) that made calls, by process (ascending pid).
pub fn by_process(totals: &BTreeMap<StatsKey, SyscallTotals>, charges: &Charges) -> Vec<ProcessView> {
    let mut syscalls: BTreeMap<u32, Vec<SyscallView>> = BTreeMap::new();
    for (key, row) in totals {
        if row.calls > 0 {
            syscalls
                .entry(key.tgid)
                .or_default()
                .push(SyscallView::new(*key, row, charges));
        }
    }
    syscalls
        .into_iter()
        .map(|(pid, syscalls)| ProcessView::new(pid, syscalls))
        .collect()
}

fn per_second(calls: u64, seconds: f64) -> f64 {
    calls as f64 / seconds.max(1e-9)
}

#[cfg(test)]
mod tests {
    use profiler_common::NR_COMPAT_FLAG;

    use super::*;
    use crate::model::charges::BoundarySource;

    const CHARGES: Charges = Charges {
        boundary_ns_per_call: 50.0,
        instrumentation_ns_per_call: 10.0,
        boundary_source: BoundarySource::Calibrated,
        boundary_spread_ns: 0.0,
    };

    #[test]
    fn a_view_is_named_split_and_shifted_by_the_charges() {
        let mut openat = SyscallTotals::of_calls(10, 20_000, 0, 0, 2_000);
        openat.errors = 10;
        openat.errnos = BTreeMap::from([(2, 7), (13, 3)]);
        let view = SyscallView::new(StatsKey { tgid: 7, nr: 257 }, &openat, &CHARGES);
        assert_eq!((view.pid, view.name.as_str(), view.abi), (7, "openat", Abi::Native));
        assert_eq!(view.errnos, vec![("ENOENT".into(), 7), ("EACCES".into(), 3)]);
        assert_eq!(view.split.entry_ns, 500);
        assert_eq!(view.split.handler_ns, 20_000 - 100, "tracing taken out");
        assert_eq!(view.latency_offset_ns, 40);
        assert_eq!(view.percentiles().max, 2_040);
        assert_eq!(view.class(1.0), Class::HandlerHeavy);
        let ia32 = SyscallView::new(
            StatsKey {
                tgid: 7,
                nr: 3 | NR_COMPAT_FLAG,
            },
            &SyscallTotals::of_calls(1, 1, 0, 0, 1),
            &CHARGES,
        );
        assert_eq!((ia32.name.as_str(), ia32.abi), ("read", Abi::Compat));
    }

    #[test]
    fn processes_add_up_their_syscalls_busiest_first() {
        let map = BTreeMap::from([
            (StatsKey { tgid: 2, nr: 0 }, SyscallTotals::of_calls(5, 100, 0, 0, 20)),
            (StatsKey { tgid: 1, nr: 0 }, SyscallTotals::of_calls(1, 10, 0, 0, 20)),
            (
                StatsKey { tgid: 1, nr: 35 },
                SyscallTotals::of_calls(2, 10, 1_000_000, 0, 500_000),
            ),
            (StatsKey { tgid: 1, nr: 1 }, SyscallTotals::of_calls(0, 0, 0, 0, 0)),
        ]);
        let views = by_process(&map, &CHARGES);
        assert_eq!(views.iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 2]);
        let one = &views[0];
        assert_eq!(one.syscalls.len(), 2, "no rows without calls");
        // The sleep is the most time, but waits by design: after the read, and not active.
        assert_eq!(one.syscalls[0].name, "read");
        assert_eq!(one.syscalls[1].name, "nanosleep");
        assert_eq!(one.syscalls[1].class(1.0), Class::Sleep);
        assert_eq!(one.active_ns(), one.syscalls[0].total_ns());
        // The process's class is that of its active calls, not of its sleep.
        assert_eq!(one.class(1.0), one.syscalls[0].class(1.0));
        assert_ne!(one.class(1.0), Class::Sleep);
        assert_eq!(one.calls, 3);
        assert_eq!(
            one.total_ns(),
            one.syscalls.iter().map(SyscallView::total_ns).sum::<u64>()
        );
        assert_eq!(one.percentiles().count, 3);
    }
}
