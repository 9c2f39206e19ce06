//! Rates that spread a long call over the intervals it lasted. The kernel side adds a call's
//! time when it ends, so a 10 s sleep would show as 10 s of syscall time in one second; here
//! each interval shows what the calls still in flight spent in it, and takes out of a call
//! that ends what earlier intervals already showed of it. Totals since start are not touched.
use std::collections::{BTreeMap, HashMap};

use profiler_common::StatsKey;

use crate::model::{store::SyscallTotals, threads::InSyscall};

/// What the rates have shown so far of one thread's call in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    key: StatsKey,
    /// Its time in flight so far, the part spent asleep and the rest.
    elapsed_ns: u64,
    blocked_ns: u64,
    other_ns: u64,
}

#[derive(Debug, Default)]
pub struct Spread {
    shown: HashMap<u32, Shown>,
}

impl Spread {
    /// Moves time between intervals in `deltas`, the calls that ended in this interval (raw,
    /// before charges). `in_flight`: the threads in a call now; those already in one when
    /// profiling started are left out (their start is unknown).
    pub fn apply(&mut self, deltas: &mut BTreeMap<StatsKey, SyscallTotals>, in_flight: &[InSyscall]) {
        let mut now = HashMap::new();
        for thread in in_flight.iter().filter(|t| !t.before_start) {
            let key = StatsKey {
                tgid: thread.pid,
                nr: thread.nr,
            };
            let earlier = match self.shown.get(&thread.tid) {
                Some(shown) if shown.key == key && shown.elapsed_ns <= thread.elapsed_ns => *shown,
                _ => Shown {
                    key,
                    elapsed_ns: 0,
                    blocked_ns: 0,
                    other_ns: 0,
                },
            };
            let gained_ns = thread.elapsed_ns - earlier.elapsed_ns;
            let row = deltas.entry(key).or_default();
            let mut shown = Shown {
                elapsed_ns: thread.elapsed_ns,
                ..earlier
            };
            // Asleep now: the interval's part counts as blocked; on a CPU or waiting for
            // one, as handler time (the call's own split comes when it ends).
            if thread.blocked {
                row.blocked_ns += gained_ns;
                shown.blocked_ns += gained_ns;
            } else {
                row.handler_ns += gained_ns;
                shown.other_ns += gained_ns;
            }
            now.insert(thread.tid, shown);
        }
        for (tid, shown) in &self.shown {
            let same_call = now
                .get(tid)
                .is_some_and(|n| n.key == shown.key && n.elapsed_ns >= shown.elapsed_ns);
            if same_call {
                continue;
            }
            // The call ended: its whole time is in this interval's totals (or, if it ended
            // just after the read, in the next one's: it is taken out of nothing here).
            if let Some(row) = deltas.get_mut(&shown.key) {
                let blocked = shown.blocked_ns.min(row.blocked_ns);
                row.blocked_ns -= blocked;
                let mut rest = shown.other_ns + (shown.blocked_ns - blocked);
                for part in [&mut row.handler_ns, &mut row.runqueue_ns, &mut row.blocked_ns] {
                    let taken = rest.min(*part);
                    *part -= taken;
                    rest -= taken;
                }
            }
        }
        self.shown = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NANOSLEEP: StatsKey = StatsKey { tgid: 200, nr: 35 };

    fn sleeping(elapsed_ns: u64) -> InSyscall {
        InSyscall {
            tid: 201,
            pid: 200,
            name: None,
            nr: 35,
            blocked: true,
            elapsed_ns,
            before_start: false,
            wait_site: None,
        }
    }

    #[test]
    fn a_ten_second_sleep_shows_as_a_second_per_second() {
        let mut spread = Spread::default();
        for second in 1..10u64 {
            let mut deltas = BTreeMap::new();
            spread.apply(&mut deltas, &[sleeping(second * 1_000_000_000)]);
            assert_eq!(deltas[&NANOSLEEP].blocked_ns, 1_000_000_000, "second {second}");
            assert_eq!(deltas[&NANOSLEEP].calls, 0);
        }
        // It ends: the kernel side adds all 10 s at once; 9 were shown already.
        let mut deltas = BTreeMap::from([(NANOSLEEP, SyscallTotals::of_calls(1, 1_000, 10_000_000_000, 0, 0))]);
        spread.apply(&mut deltas, &[]);
        assert_eq!(deltas[&NANOSLEEP].blocked_ns, 1_000_000_000);
        assert_eq!(deltas[&NANOSLEEP].calls, 1);
    }

    #[test]
    fn a_new_call_of_the_same_thread_starts_over() {
        let mut spread = Spread::default();
        let mut deltas = BTreeMap::new();
        spread.apply(&mut deltas, &[sleeping(3_000_000_000)]);
        // The 3 s call ended (4 s in all) and a new one has run 0.5 s.
        let mut deltas = BTreeMap::from([(NANOSLEEP, SyscallTotals::of_calls(1, 0, 4_000_000_000, 0, 0))]);
        spread.apply(&mut deltas, &[sleeping(500_000_000)]);
        assert_eq!(deltas[&NANOSLEEP].blocked_ns, 1_000_000_000 + 500_000_000);
    }

    #[test]
    fn threads_in_a_call_since_before_the_start_are_left_out() {
        let mut spread = Spread::default();
        let mut deltas = BTreeMap::new();
        spread.apply(
            &mut deltas,
            &[InSyscall {
                before_start: true,
                ..sleeping(5_000_000_000)
            }],
        );
        assert!(deltas.is_empty());
    }
}
