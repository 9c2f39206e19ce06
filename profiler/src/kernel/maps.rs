//! Reading the tables, and freeing the entries whose counts the agent has taken in for good.
//! All through memory mappings: no `bpf()` call, no capability needed once attached.
use profiler_common::{
    counter, fill, InFlight, ProcSlot, StatsKey, StatsSlot, PROC_EMPTY, PROC_FREED, SLOT_EMPTY, SLOT_FREED,
};

use crate::kernel::probe::Probe;

impl Probe {
    /// Every used entry of the process table, by index, into `procs` (emptied first). Read it
    /// before the statistics: a statistics slot whose process was already dead (or in a later
    /// epoch) then is final in the statistics read after it, whatever happened in between.
    /// The caller keeps `procs` from read to read: grown anew each time, the vector was
    /// reallocated about ten times a read under churn, each large request making the allocator
    /// consolidate its free lists.
    pub(crate) fn read_procs(&self, procs: &mut Vec<(u32, ProcSlot)>) {
        procs.clear();
        procs.extend((0..self.procs.entries()).filter_map(|index| {
            let state = self.procs.state_of(index);
            (state != PROC_EMPTY && state != PROC_FREED).then(|| (index as u32, self.procs.read(index)))
        }));
    }

    /// Every used slot of the statistics table, by index, each read as the iterator gets to
    /// it (a full table is not copied at once).
    pub fn stats(&self) -> impl Iterator<Item = (u32, StatsSlot)> + '_ {
        self.marked_stats().filter_map(|index| {
            // The key first (one cache line): a slot marked as it was being claimed may not
            // show its key yet; the next read finds it.
            let key = self.stats.key_of(index);
            (key != SLOT_EMPTY && key != SLOT_FREED).then(|| (index as u32, self.stats.read(index)))
        })
    }

    /// The statistics slots marked used, in order: from a byte per slot (4 pages for the
    /// default 16,384 slots) rather than from a key on every page of the table (3,264 pages),
    /// which after a second's sleep cost the agent more than the rest of a quiet read.
    fn marked_stats(&self) -> impl Iterator<Item = usize> + '_ {
        let slots = self.stats.entries();
        (0..self.stats_used.entries())
            .map(|word| (word, self.stats_used.read(word)))
            .filter(|&(_, marks)| marks != 0)
            .flat_map(|(word, marks)| {
                let bytes = marks.to_ne_bytes();
                (0..8)
                    .filter(move |&byte| bytes[byte] != 0)
                    .map(move |byte| word * 8 + byte)
            })
            .filter(move |&index| index < slots)
    }

    /// The calls and handler time of one (process, syscall), added up over its slots (every
    /// lane and epoch).
    pub fn stats_of(&self, key: StatsKey) -> Option<(u64, u64)> {
        let mut found = None;
        // Keys first (one cache line a slot): the agent measures itself this way in a
        // running profile, whose table may hold thousands of entries.
        let matching = self
            .marked_stats()
            .filter(|&index| StatsKey::unpack(self.stats.key_of(index)) == key);
        for slot in matching.map(|index| self.stats.read(index)) {
            let (calls, handler_ns) = found.unwrap_or((0, 0));
            found = Some((calls + slot.stats.calls, handler_ns + slot.stats.handler_ns));
        }
        found
    }

    /// Threads inside a syscall right now, with their in-flight state.
    pub fn in_flight(&self) -> Vec<InFlight> {
        (0..self.slots.entries())
            .map(|index| self.slots.read(index))
            .filter(InFlight::in_flight)
            .collect()
    }

    /// CLOCK_MONOTONIC minus the scheduler clock (see [`InFlight::since_ns`]), from the
    /// latest pair of readings the kernel side took together; `None` before the first.
    pub(crate) fn monotonic_minus_scheduler_ns(&self) -> Option<i64> {
        let monotonic = self.clock_pair.read(0);
        let scheduler = self.clock_pair.read(1);
        (monotonic != 0).then(|| monotonic.wrapping_sub(scheduler) as i64)
    }

    /// The overflow counters (by `profiler_common::counter` index), summed over CPUs.
    pub(crate) fn counters(&self) -> [u64; counter::COUNT as usize] {
        let mut sums = [0; counter::COUNT as usize];
        for (index, sum) in sums.iter_mut().enumerate() {
            *sum = self.counter(index as u32);
        }
        sums
    }

    /// Statistics slots and process table entries claimed since the last
    /// [`Probe::restart_claims`]: two words to read, to tell when the tables fill fast.
    pub(crate) fn claims_since_read(&self) -> (u64, u64) {
        (
            self.claims.read(fill::STATS as usize),
            self.claims.read(fill::PROCS as usize),
        )
    }

    /// Counts claims from zero again (at the start of a read), so that the kernel side's fill
    /// alarm goes off when an eighth of a table has been claimed since.
    pub(crate) fn restart_claims(&self) {
        // The counts first: an alarm raised between the two stores is one for claims counted
        // from zero again, and reads once more.
        for index in 0..2 * fill::TABLES as usize {
            self.claims.swap(index, 0);
        }
    }

    /// Counter `index`, summed over the CPUs' rows.
    pub(super) fn counter(&self, index: u32) -> u64 {
        (0..self.counters.entries())
            .step_by(counter::ROW as usize)
            .map(|row| self.counters.read(row + index as usize))
            .sum()
    }

    /// Frees these statistics slots, whose counts are final and read, and makes empty again
    /// the freed slots no lookup needs to pass (see [`reclaim_freed`]).
    pub fn free_stats(&mut self, slots: &[u32]) {
        for &index in slots {
            // Unmarked first: once freed, the kernel side may claim (and mark) it again.
            self.stats_used.clear_byte(index as usize);
            self.stats.free(index as usize);
        }
        let mask = self.stats.entries() - 1;
        for &index in slots {
            reclaim_freed(
                index as usize,
                mask,
                |i| self.stats.key_of(i),
                |i| self.stats.empty_if_freed(i),
            );
        }
    }

    /// Frees these process table entries, each if still in the state given (a dead process
    /// whose pid a new process has taken meanwhile keeps its entry, revived). Never made
    /// empty again: searches of the process table go past empty entries anyway (see the
    /// kernel side's `find_process`), and emptying an entry while a search passes it hid the
    /// entry the search then claimed beyond it from every later search that stopped there.
    pub(crate) fn free_procs(&mut self, entries: &[(u32, u64)]) {
        for &(index, state) in entries {
            self.procs.swap_state(index as usize, state, PROC_FREED);
        }
    }
}

/// Makes empty again the freed slots of the statistics table that end just before an empty
/// one, walking back from `index`, each with `empty` (a compare-and-swap from freed; false if
/// the kernel side claimed it meanwhile). Lookups search past freed slots and stop at an
/// empty one, so without this the table fills with freed slots over a long run (they are
/// never empty again) and every new key searches all its probes: a soak lost calls to
/// `stats_full` that way at well under half the table live. A freed slot followed by an empty
/// one is on no key's probe sequence (a key beyond it would have been placed in the empty
/// slot), so emptying it loses no key; a key the kernel side claims beside it at that moment
/// can at worst get a second slot, which the agent adds up with the first. Returns how many.
pub fn reclaim_freed(
    index: usize,
    mask: usize,
    key_of: impl Fn(usize) -> u64,
    mut empty: impl FnMut(usize) -> bool,
) -> usize {
    let mut at = index & mask;
    let mut reclaimed = 0;
    while reclaimed <= mask && key_of(at) == SLOT_FREED && key_of((at + 1) & mask) == SLOT_EMPTY && empty(at) {
        reclaimed += 1;
        at = (at + mask) & mask;
    }
    reclaimed
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A table as keys: `E` empty, `F` freed, anything else a live key.
    fn table(text: &str) -> RefCell<Vec<u64>> {
        RefCell::new(
            text.chars()
                .map(|c| match c {
                    'E' => SLOT_EMPTY,
                    'F' => SLOT_FREED,
                    other => other as u64,
                })
                .collect(),
        )
    }

    fn reclaim(keys: &RefCell<Vec<u64>>, index: usize) -> String {
        let mask = keys.borrow().len() - 1;
        reclaim_freed(
            index,
            mask,
            |i| keys.borrow()[i],
            |i| {
                keys.borrow_mut()[i] = SLOT_EMPTY;
                true
            },
        );
        keys.borrow()
            .iter()
            .map(|&k| match k {
                SLOT_EMPTY => 'E',
                SLOT_FREED => 'F',
                other => char::from_u32(other as u32).unwrap(),
            })
            .collect()
    }

    #[test]
    fn freed_slots_before_an_empty_one_become_empty() {
        assert_eq!(reclaim(&table("aFFFEbcE"), 3), "aEEEEbcE");
        // A freed slot with a key after it stays: the key's lookups pass it.
        assert_eq!(reclaim(&table("aFFbEcdE"), 2), "aFFbEcdE");
        // The walk stops at a live key, and wraps around the table's end.
        assert_eq!(reclaim(&table("FEcdaFFF"), 0), "EEcdaEEE");
        // A table of freed slots and one empty: all of them.
        assert_eq!(reclaim(&table("FFFFFFFE"), 6), "EEEEEEEE");
    }

    #[test]
    fn a_slot_the_kernel_claimed_meanwhile_ends_the_walk() {
        let keys = table("aFFE");
        let reclaimed = reclaim_freed(3 - 1, 3, |i| keys.borrow()[i], |i| i != 1);
        assert_eq!(reclaimed, 1);
    }
}
