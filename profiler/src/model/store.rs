//! What the agent makes of each read of the kernel's tables: what every statistics slot
//! gained since the last read, and which entries are final and can be freed.
//!
//! The kernel's counters are cumulative and its histogram buckets and errno counts are `u32`,
//! so the store keeps each used slot's last raw value and takes (wrapping) differences. A
//! slot is final when its process has exited or its epoch has ended (the process exec'd or
//! renamed itself): the process table says so. A final slot is freed with its last
//! difference taken in, at once - but for an ended epoch while a call made in it is still in
//! flight (it would land in the slot); a dead process's table entry is freed once no slot of
//! it is left. The store holds nothing per process: what the slots gained goes to the caller
//! ([`Update::deltas`]), which adds it up as it needs (per process for a report, per group for
//! the metrics); memory is bounded by the tables' sizes, not by history.
use std::collections::{BTreeMap, HashMap, HashSet};

use profiler_common::{
    epoch_of, proc_hash, proc_state, ProcSlot, StatsKey, StatsSlot, SyscallStats, ERRNO_SLOTS, KEY_EPOCH_MASK,
};

use smallvec::SmallVec;

use crate::model::{bound::Extrapolation, charges::Charges, histogram::Latency, split::Split};

/// The key of [`SyscallTotals::errnos`] that counts the errors of any errno beyond the first
/// few of a statistics entry (no errno is 0).
pub const OTHER_ERRNO: u32 = 0;

/// Totals of one (process, syscall).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyscallTotals {
    pub calls: u64,
    pub errors: u64,
    pub handler_ns: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
    pub latency: Latency,
    /// Error count per errno ([`OTHER_ERRNO`]: any other).
    pub errnos: BTreeMap<u32, u64>,
    /// Handler time the sampling extrapolated beyond what the threads could have spent,
    /// taken out of `handler_ns` (see [`crate::model::bound`]).
    pub sampling_cut_ns: u64,
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
        self.sampling_cut_ns += other.sampling_cut_ns;
        self.latency.merge(&other.latency);
        for (errno, count) in &other.errnos {
            *self.errnos.entry(*errno).or_default() += count;
        }
    }

    /// What happened since `earlier` (an older copy of the same totals).
    pub fn since(&self, earlier: &SyscallTotals) -> SyscallTotals {
        let latency = self.latency.since(&earlier.latency);
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
            sampling_cut_ns: self.sampling_cut_ns.saturating_sub(earlier.sampling_cut_ns),
        }
    }
}

/// A process name as the kernel holds it (`comm`: up to 16 bytes, NUL-padded): copied
/// and compared without allocating, made text when shown.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    pub fn text(&self) -> String {
        comm_text(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    /// Whether `text` is this name as [`Comm::text`] makes it (without making it).
    pub fn is(&self, text: &str) -> bool {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end] == text.as_bytes()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

impl From<&str> for Comm {
    /// The first 15 bytes of `name`, as the kernel would keep them.
    fn from(name: &str) -> Comm {
        let mut comm = [0u8; 16];
        let len = name.len().min(15);
        comm[..len].copy_from_slice(&name.as_bytes()[..len]);
        Comm(comm)
    }
}

/// What one statistics slot gained since the last read.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    pub key: StatsKey,
    /// The process's name and cgroup when these calls were made.
    pub comm: Comm,
    pub cgroup_id: u64,
    pub totals: SyscallTotals,
    /// What the sampling extrapolated in `totals.handler_ns`, before the bound.
    pub extrapolation: Extrapolation,
}

/// What a read of the tables brought, and what to free in the kernel.
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// One per slot that gained calls (the agent's own left out).
    pub deltas: Vec<Delta>,
    /// The name and cgroup of every process in the process table, alive or not yet freed.
    pub processes: Vec<(u32, Comm, u64)>,
    /// Statistics slots whose counts are final and taken in: to free.
    pub free_stats: Vec<u32>,
    /// Process table entries of processes gone, with their state as read: to free, each if
    /// still in that state.
    pub free_procs: Vec<(u32, u64)>,
    /// Used share of the statistics table and of the process table.
    pub stats_fill: f64,
    pub procs_fill: f64,
}

/// Buckets of a slot's last read held without a heap allocation.
const LAST_READ_BUCKETS: usize = 6;

/// One used slot as last read.
struct LiveSlot {
    key: u64,
    last: LastRead,
}

/// A set of slot indices, as bits. The store keeps which slots it holds apart from the slots
/// themselves: finding those a read did not find then reads a bit per slot, not every held
/// slot (144 bytes each, and cold between reads: sweeping them took ~6 ms of CPU a read
/// here, nearly half of a quiet read).
#[derive(Default)]
struct IndexSet(Vec<u64>);

impl IndexSet {
    fn insert(&mut self, index: usize) {
        let word = index / 64;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (index % 64);
    }

    fn remove(&mut self, index: usize) {
        if let Some(word) = self.0.get_mut(index / 64) {
            *word &= !(1 << (index % 64));
        }
    }

    fn clear(&mut self) {
        self.0.fill(0);
    }

    /// The indices in `self` and not in `other`, in order.
    fn minus(&self, other: &IndexSet) -> Vec<usize> {
        let mut indices = Vec::new();
        for (word, &bits) in self.0.iter().enumerate() {
            let mut left = bits & !other.0.get(word).copied().unwrap_or(0);
            while left != 0 {
                indices.push(word * 64 + left.trailing_zeros() as usize);
                left &= left - 1;
            }
        }
        indices
    }
}

/// A slot's counters as last read, compactly: its histogram as the buckets with counts (a
/// slot seldom has more than a few of its 160), so that holding a full table costs little.
#[derive(Clone, Debug, Default)]
struct LastRead {
    calls: u64,
    errors: u64,
    handler_ns: u64,
    blocked_ns: u64,
    runqueue_ns: u64,
    extrapolated_ns: u64,
    errno_codes: [u64; ERRNO_SLOTS],
    errno_counts: [u32; ERRNO_SLOTS],
    errno_other: u64,
    /// `(bucket, count)`, by bucket; a few held in place, without a heap allocation (most
    /// slots have calls in one to three buckets).
    hist: SmallVec<[(u8, u32); LAST_READ_BUCKETS]>,
}

impl LastRead {
    /// Whether the slot made no call since this read (everything in a slot changes with a
    /// call: the kernel side counts each call as it returns).
    fn unchanged(&self, now: &SyscallStats) -> bool {
        self.calls == now.calls && self.errors == now.errors
    }

    /// What the slot gained from this read to `now`; this read becomes `now`. Counters are
    /// cumulative (`u32` ones wrap: differences are taken wrapping). `scratch`: room for the
    /// new sparse histogram, copied into the slot's own (which keeps its capacity: a slot
    /// with many buckets does not allocate at every read).
    fn advance(&mut self, now: &SyscallStats, scratch: &mut Vec<(u8, u32)>) -> (SyscallTotals, Extrapolation) {
        let mut latency = Latency::with_capacity(self.hist.len() + 1);
        latency.max_ns = now.max_ns;
        scratch.clear();
        let mut before = self.hist.iter().peekable();
        // Only buckets with calls now, or then (a bucket that wrapped to exactly zero). A slot
        // has calls in a few of its 160 buckets: runs of empty ones are passed a chunk at a
        // time (thousands of slots a read on a busy machine).
        const CHUNK: usize = 8;
        for (chunk_index, chunk) in now.hist.chunks(CHUNK).enumerate() {
            let first = chunk_index * CHUNK;
            let none_before = before.peek().is_none_or(|&&(b, _)| usize::from(b) >= first + CHUNK);
            if none_before && chunk.iter().all(|&count| count == 0) {
                continue;
            }
            for (bucket, &count) in (first..).zip(chunk) {
                let then = match before.peek() {
                    Some(&&(b, then)) if usize::from(b) == bucket => {
                        before.next();
                        then
                    }
                    _ if count == 0 => continue,
                    _ => 0,
                };
                latency.add(bucket, u64::from(count.wrapping_sub(then)));
                if count != 0 {
                    scratch.push((bucket as u8, count));
                }
            }
        }
        self.hist.clear();
        self.hist.extend_from_slice(scratch);
        let totals = self.gained_counts(now, latency);
        let extrapolation = Extrapolation {
            added_ns: now.extrapolated_ns.wrapping_sub(self.extrapolated_ns),
            first_enter_ns: now.first_enter_ns,
            max_threads: now.max_threads,
        };
        self.extrapolated_ns = now.extrapolated_ns;
        self.calls = now.calls;
        self.errors = now.errors;
        self.handler_ns = now.handler_ns;
        self.blocked_ns = now.blocked_ns;
        self.runqueue_ns = now.runqueue_ns;
        self.errno_codes = now.errno_codes;
        self.errno_counts = now.errno_counts;
        self.errno_other = now.errno_other;
        (totals, extrapolation)
    }

    /// What the slot's counters and errno counts gained from this read to `now`, with
    /// `latency` its histogram's gain.
    fn gained_counts(&self, now: &SyscallStats, latency: Latency) -> SyscallTotals {
        let mut errnos = BTreeMap::new();
        for slot in 0..ERRNO_SLOTS {
            let code = now.errno_codes[slot] as u32;
            // A code claimed since the last read counted from zero.
            let then = if self.errno_codes[slot] == now.errno_codes[slot] {
                self.errno_counts[slot]
            } else {
                0
            };
            let count = u64::from(now.errno_counts[slot].wrapping_sub(then));
            if code != 0 && count > 0 {
                *errnos.entry(code).or_default() += count;
            }
        }
        let other = now.errno_other.wrapping_sub(self.errno_other);
        if other > 0 {
            errnos.insert(OTHER_ERRNO, other);
        }
        SyscallTotals {
            calls: now.calls.wrapping_sub(self.calls),
            errors: now.errors.wrapping_sub(self.errors),
            handler_ns: now.handler_ns.wrapping_sub(self.handler_ns),
            blocked_ns: now.blocked_ns.wrapping_sub(self.blocked_ns),
            runqueue_ns: now.runqueue_ns.wrapping_sub(self.runqueue_ns),
            latency,
            errnos,
            sampling_cut_ns: 0,
        }
    }
}

/// The agent's memory of the kernel tables between reads.
pub struct Store {
    /// By slot index: the used slots as last read (a table's worth at most).
    live: Vec<Option<LiveSlot>>,
    /// The indices of `live` that hold a slot.
    held: IndexSet,
    /// The slots the current read found used.
    found: IndexSet,
    /// Deltas the last read brought.
    last_deltas: usize,
    /// Duplicate process table entries as last read: freed when they are still so at the
    /// next read.
    duplicates_seen: HashSet<(u32, u64)>,
    /// The agent's own process: its calls are never reported.
    own_tgid: u32,
    stats_capacity: u32,
    procs_capacity: u32,
}

/// Where a process's calls stand, from the process table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Alive, in this epoch (its low bits, as keys hold it).
    Alive(u32),
    Dead,
    /// Not in the process table (it was full): asked of `/proc`.
    Unknown,
}

impl Store {
    pub fn new(own_tgid: u32, stats_capacity: u32, procs_capacity: u32) -> Store {
        Store {
            live: Vec::new(),
            held: IndexSet::default(),
            found: IndexSet::default(),
            last_deltas: 0,
            duplicates_seen: HashSet::new(),
            own_tgid,
            stats_capacity,
            procs_capacity,
        }
    }

    /// Takes in a read of the process table (`procs`, read first) and of the statistics table
    /// (`stats`: its used slots by index, read as they come, after `procs`). `gone` says
    /// whether a process the process table does not hold has exited; `in_flight` gives the
    /// keys of the calls in flight (asked only when an epoch has ended).
    pub fn update(
        &mut self,
        procs: &[(u32, ProcSlot)],
        stats: impl IntoIterator<Item = (u32, StatsSlot)>,
        gone: &dyn Fn(u32) -> bool,
        in_flight: &dyn Fn() -> HashSet<u64>,
    ) -> Update {
        let canonical = canonical_entries(procs, self.procs_capacity);
        let standing = |tgid: u32| match canonical.get(&tgid) {
            Some((_, state)) if state & proc_state::DEAD != 0 => Standing::Dead,
            Some((_, state)) => Standing::Alive(proc_state::epoch(*state) & KEY_EPOCH_MASK),
            None => Standing::Unknown,
        };
        let mut update = Update {
            procs_fill: procs.len() as f64 / f64::from(self.procs_capacity.max(1)),
            // As many as the last read brought: growing a vector of thousands one by one
            // copied it over and over.
            deltas: Vec::with_capacity(self.last_deltas),
            ..Update::default()
        };
        let mut unknown_gone: HashMap<u32, bool> = HashMap::new();
        let mut flying: Option<HashSet<u64>> = None;
        self.found.clear();
        let mut used = 0usize;
        let mut scratch = Vec::new();
        for (index, slot) in stats {
            used += 1;
            let key = StatsKey::unpack(slot.key);
            let is_final = match standing(key.tgid) {
                Standing::Alive(epoch) => {
                    epoch_of(slot.key) != epoch && !flying.get_or_insert_with(in_flight).contains(&slot.key)
                }
                Standing::Dead => true,
                Standing::Unknown => *unknown_gone.entry(key.tgid).or_insert_with(|| gone(key.tgid)),
            };
            let at = index as usize;
            if at >= self.live.len() {
                self.live.resize_with(at + 1, || None);
            }
            self.found.insert(at);
            let live = self.live[at].get_or_insert_with(|| {
                self.held.insert(at);
                LiveSlot {
                    key: slot.key,
                    last: LastRead::default(),
                }
            });
            if live.key != slot.key {
                // Freed and taken by another key since the last read (whatever it gained
                // before being freed was taken in then).
                live.key = slot.key;
                live.last = LastRead::default();
            }
            if !live.last.unchanged(&slot.stats) {
                let (totals, extrapolation) = live.last.advance(&slot.stats, &mut scratch);
                if key.tgid != self.own_tgid {
                    update.deltas.push(Delta {
                        key,
                        comm: Comm(slot.comm),
                        cgroup_id: slot.cgroup_id,
                        totals,
                        extrapolation,
                    });
                }
            }
            if is_final {
                update.free_stats.push(index);
                self.live[at] = None;
                self.held.remove(at);
            }
        }
        update.stats_fill = used as f64 / f64::from(self.stats_capacity.max(1));
        self.last_deltas = update.deltas.len();
        // Slots that were freed behind our back: only by a restart of the agent's own reads.
        for at in self.held.minus(&self.found) {
            self.live[at] = None;
            self.held.remove(at);
        }
        let mut duplicates_now = HashSet::new();
        for (index, proc) in procs {
            let tgid = proc_state::tgid(proc.state);
            let is_canonical = canonical.get(&tgid) == Some(&(*index, proc.state));
            if is_canonical {
                update.processes.push((tgid, Comm(proc.comm), proc.cgroup_id));
                // A dead process's entry: its slots were all final in this read, and freed.
                if proc.state & proc_state::DEAD != 0 {
                    update.free_procs.push((*index, proc.state));
                }
            } else if self.duplicates_seen.contains(&(*index, proc.state)) {
                // A duplicate entry (two threads claimed one at once), seen twice: lookups
                // never reach it, and no thread is still claiming it.
                update.free_procs.push((*index, proc.state));
            } else {
                duplicates_now.insert((*index, proc.state));
            }
        }
        self.duplicates_seen = duplicates_now;
        update
    }
}

/// The entry the kernel side's lookups find for each tgid: the first on its probe sequence.
fn canonical_entries(procs: &[(u32, ProcSlot)], capacity: u32) -> HashMap<u32, (u32, u64)> {
    let mask = capacity.max(1).next_power_of_two() - 1;
    let mut canonical: HashMap<u32, (u32, u64)> = HashMap::with_capacity(procs.len());
    let distance = |tgid: u32, index: u32| index.wrapping_sub(proc_hash(tgid, mask)) & mask;
    for (index, proc) in procs {
        let tgid = proc_state::tgid(proc.state);
        let entry = canonical.entry(tgid).or_insert((*index, proc.state));
        if distance(tgid, *index) < distance(tgid, entry.0) {
            *entry = (*index, proc.state);
        }
    }
    canonical
}

/// A kernel `comm`, up to its NUL.
pub fn comm_text(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
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
        totals.latency.add(profiler_common::hist_bucket(latency_ns), calls);
        totals.latency.max_ns = latency_ns;
        totals
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::{hist_bucket, PROC_FREED};

    use super::*;

    const OWN: u32 = 1;
    const CAPACITY: u32 = 64;

    fn comm(name: &str) -> [u8; 16] {
        let mut comm = [0u8; 16];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        comm
    }

    fn slot(key: StatsKey, epoch: u32, calls: u32, handler_ns: u64, name: &str) -> StatsSlot {
        let mut stats = SyscallStats::ZERO;
        stats.calls = u64::from(calls);
        stats.handler_ns = handler_ns;
        stats.hist[hist_bucket(100)] = calls;
        stats.max_ns = 100;
        StatsSlot {
            key: key.packed(0, epoch),
            comm: comm(name),
            cgroup_id: 7,
            stats,
        }
    }

    fn proc(tgid: u32, epoch: u32, dead: bool, name: &str) -> ProcSlot {
        ProcSlot {
            state: tgid as u64 | u64::from(epoch) << proc_state::EPOCH_SHIFT | if dead { proc_state::DEAD } else { 0 },
            cgroup_id: 7,
            comm: comm(name),
        }
    }

    /// A process table holding `procs`, each at its probe start.
    fn table(procs: &[ProcSlot]) -> Vec<(u32, ProcSlot)> {
        procs
            .iter()
            .map(|p| (proc_hash(proc_state::tgid(p.state), CAPACITY - 1), *p))
            .collect()
    }

    const A: StatsKey = StatsKey { tgid: 10, nr: 0 };
    const B: StatsKey = StatsKey { tgid: 20, nr: 1 };

    fn calls_of(update: &Update, key: StatsKey) -> u64 {
        update
            .deltas
            .iter()
            .filter(|d| d.key == key)
            .map(|d| d.totals.calls)
            .sum()
    }

    fn nobody_gone(_: u32) -> bool {
        false
    }

    fn no_flight() -> HashSet<u64> {
        HashSet::new()
    }

    #[test]
    fn reads_of_a_slot_give_their_differences() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a")]);
        let first = store.update(&procs, [(3, slot(A, 0, 5, 500, "a"))], &nobody_gone, &no_flight);
        assert_eq!(calls_of(&first, A), 5);
        let second = store.update(&procs, [(3, slot(A, 0, 7, 700, "a"))], &nobody_gone, &no_flight);
        assert_eq!(calls_of(&second, A), 2);
        assert_eq!(second.deltas[0].totals.handler_ns, 200);
        assert_eq!(second.deltas[0].totals.latency.count(), 2);
        assert_eq!(second.deltas[0].comm.text(), "a");
        let quiet = store.update(&procs, [(3, slot(A, 0, 7, 700, "a"))], &nobody_gone, &no_flight);
        assert!(quiet.deltas.is_empty(), "nothing new");
        assert!(quiet.free_stats.is_empty(), "alive: kept");
    }

    #[test]
    fn a_slot_a_read_did_not_find_is_forgotten() {
        // Emptied behind the store's back (a restart of the agent's reads): when a key is
        // found there again, all its calls are new.
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a"), proc(20, 0, false, "b")]);
        let both = [(3, slot(A, 0, 5, 500, "a")), (40, slot(B, 0, 9, 900, "b"))];
        store.update(&procs, both, &nobody_gone, &no_flight);
        store.update(&procs, [(40, slot(B, 0, 9, 900, "b"))], &nobody_gone, &no_flight);
        let again = store.update(&procs, both, &nobody_gone, &no_flight);
        assert_eq!(calls_of(&again, A), 5, "slot 3 was forgotten: counted from zero");
        assert_eq!(calls_of(&again, B), 0, "slot 40 was kept");
    }

    #[test]
    fn index_sets_give_what_one_holds_and_the_other_does_not() {
        let (mut held, mut found) = (IndexSet::default(), IndexSet::default());
        for index in [0, 63, 64, 200, 1000] {
            held.insert(index);
        }
        found.insert(63);
        found.insert(200);
        found.insert(5000);
        assert_eq!(held.minus(&found), [0, 64, 1000]);
        held.remove(64);
        held.remove(99_999);
        assert_eq!(held.minus(&found), [0, 1000]);
        found.clear();
        assert_eq!(held.minus(&found), [0, 63, 200, 1000]);
    }

    #[test]
    fn each_delta_says_what_the_sampling_extrapolated_in_it() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a")]);
        let sampled = |calls, handler_ns, extrapolated_ns| {
            let mut sampled = slot(A, 0, calls, handler_ns, "a");
            sampled.stats.extrapolated_ns = extrapolated_ns;
            sampled.stats.first_enter_ns = 5_000;
            sampled.stats.max_threads = 3;
            sampled
        };
        store.update(&procs, [(3, sampled(100, 9_000, 4_500))], &nobody_gone, &no_flight);
        let second = store.update(&procs, [(3, sampled(180, 15_000, 7_500))], &nobody_gone, &no_flight);
        let delta = &second.deltas[0];
        assert_eq!(delta.totals.handler_ns, 6_000);
        assert_eq!(
            delta.extrapolation,
            Extrapolation {
                added_ns: 3_000,
                first_enter_ns: 5_000,
                max_threads: 3
            }
        );
    }

    #[test]
    fn u32_buckets_and_errno_counts_that_wrap_keep_counting() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a")]);
        let mut before = slot(A, 0, u32::MAX - 1, 0, "a");
        before.stats.errno_codes[0] = 2;
        before.stats.errno_counts[0] = u32::MAX;
        store.update(&procs, [(0, before)], &nobody_gone, &no_flight);
        let mut after = slot(A, 0, 3, 0, "a"); // the bucket wrapped: 5 more calls
        after.stats.calls = before.stats.calls + 5;
        after.stats.errno_codes[0] = 2;
        after.stats.errno_counts[0] = 2; // wrapped: 3 more
        after.stats.errno_codes[1] = 13; // claimed since: counted from zero
        after.stats.errno_counts[1] = 4;
        after.stats.errno_other = 1;
        let update = store.update(&procs, [(0, after)], &nobody_gone, &no_flight);
        let totals = &update.deltas[0].totals;
        assert_eq!(totals.calls, 5);
        assert_eq!(totals.latency.count(), 5);
        assert_eq!(totals.errnos, BTreeMap::from([(OTHER_ERRNO, 1), (2, 3), (13, 4)]));
    }

    #[test]
    fn every_bucket_that_moved_is_in_the_difference_wherever_it_lies() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a")]);
        let last = profiler_common::HIST_BUCKETS - 1;
        let mut before = slot(A, 0, 0, 0, "a");
        before.stats.calls = 1;
        // The first bucket, one that is the last of its chunk, one that will wrap to exactly
        // zero, and the very last.
        for (bucket, count) in [(0, 1), (7, 2), (77, u32::MAX), (last, 3)] {
            before.stats.hist[bucket] = count;
        }
        store.update(&procs, [(0, before)], &nobody_gone, &no_flight);
        let mut after = before;
        after.stats.calls += 1;
        for (bucket, count) in [(0, 2), (7, 2), (77, 0), (80, 5), (last, 4)] {
            after.stats.hist[bucket] = count;
        }
        let update = store.update(&procs, [(0, after)], &nobody_gone, &no_flight);
        let gained: Vec<(usize, u64)> = update.deltas[0].totals.latency.buckets().collect();
        assert_eq!(gained, vec![(0, 1), (77, 1), (80, 5), (last, 1)]);
        // And the next read starts from these.
        let mut later = after;
        later.stats.calls += 1;
        later.stats.hist[77] = 1;
        let update = store.update(&procs, [(0, later)], &nobody_gone, &no_flight);
        let gained: Vec<(usize, u64)> = update.deltas[0].totals.latency.buckets().collect();
        assert_eq!(gained, vec![(77, 1)]);
    }

    #[test]
    fn a_dead_process_is_taken_in_and_freed_with_its_entry() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let alive = table(&[proc(10, 0, false, "a"), proc(20, 0, false, "b")]);
        store.update(
            &alive,
            [(4, slot(A, 0, 5, 500, "a")), (6, slot(B, 0, 1, 10, "b"))],
            &nobody_gone,
            &no_flight,
        );
        // 10 exits after making 2 more calls.
        let dead = table(&[proc(10, 0, true, "a"), proc(20, 0, false, "b")]);
        let stats = [(4, slot(A, 0, 7, 700, "a")), (6, slot(B, 0, 1, 10, "b"))];
        let update = store.update(&dead, stats, &nobody_gone, &no_flight);
        assert_eq!(calls_of(&update, A), 2, "its last calls taken in");
        assert_eq!(update.free_stats, vec![4]);
        let (index, state) = dead.iter().find(|(_, p)| proc_state::tgid(p.state) == 10).unwrap();
        assert_eq!(update.free_procs, vec![(*index, state.state)]);
    }

    #[test]
    fn an_exec_ends_an_epoch_and_keeps_the_old_name_on_its_calls() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        store.update(
            &table(&[proc(10, 0, false, "alphaX")]),
            [(4, slot(A, 0, 100_000, 0, "alphaX"))],
            &nobody_gone,
            &no_flight,
        );
        // It exec'd /bin/sleep: epoch 1, a new name; 3 calls since, in a new slot. The execve
        // itself is still on its way out, in the old epoch's slot.
        let procs = table(&[proc(10, 1, false, "sleep")]);
        let stats = [(4, slot(A, 0, 100_002, 0, "alphaX")), (9, slot(A, 1, 3, 0, "sleep"))];
        let execve_in_flight = || HashSet::from([A.packed(0, 0)]);
        let update = store.update(&procs, stats, &nobody_gone, &execve_in_flight);
        let by_name: BTreeMap<String, u64> = update.deltas.iter().map(|d| (d.comm.text(), d.totals.calls)).collect();
        assert_eq!(by_name, BTreeMap::from([("alphaX".into(), 2), ("sleep".into(), 3)]));
        assert_eq!(update.processes, vec![(10, Comm::from("sleep"), 7)]);
        assert!(update.free_stats.is_empty(), "a call in flight may still land in it");
        let stats = [(4, slot(A, 0, 100_003, 0, "alphaX")), (9, slot(A, 1, 3, 0, "sleep"))];
        let update = store.update(&procs, stats, &nobody_gone, &no_flight);
        assert_eq!(calls_of(&update, A), 1, "the execve, under the old name");
        assert_eq!(update.free_stats, vec![4], "then the old epoch's slot goes");
    }

    #[test]
    fn a_reused_slot_starts_fresh() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let procs = table(&[proc(10, 0, false, "a"), proc(30, 0, false, "c")]);
        store.update(&procs, [(4, slot(A, 0, 5, 500, "a"))], &nobody_gone, &no_flight);
        let c = StatsKey { tgid: 30, nr: 2 };
        let update = store.update(&procs, [(4, slot(c, 0, 1, 1, "c"))], &nobody_gone, &no_flight);
        assert_eq!(calls_of(&update, c), 1);
        assert_eq!(calls_of(&update, A), 0);
    }

    #[test]
    fn the_agents_own_calls_are_never_reported() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let own = StatsKey { tgid: OWN, nr: 110 };
        let update = store.update(
            &table(&[proc(OWN, 0, false, "syscall-profile")]),
            [(2, slot(own, 0, 50_000, 1, "syscall-profile"))],
            &nobody_gone,
            &no_flight,
        );
        assert!(update.deltas.is_empty());
    }

    #[test]
    fn processes_the_table_does_not_hold_are_asked_of_proc() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let gone = |tgid: u32| tgid == 10;
        let update = store.update(
            &[],
            [(4, slot(A, 0, 5, 500, "a")), (6, slot(B, 0, 1, 1, "b"))],
            &gone,
            &no_flight,
        );
        assert_eq!(update.free_stats, vec![4]);
    }

    #[test]
    fn duplicate_entries_of_a_process_are_freed_but_the_one_lookups_find() {
        let mut store = Store::new(OWN, CAPACITY, CAPACITY);
        let start = proc_hash(10, CAPACITY - 1);
        let first = proc(10, 0, false, "a");
        let second = proc(10, 0, false, "a");
        let procs = [(start, first), ((start + 1) % CAPACITY, second)];
        assert!(store.update(&procs, [], &nobody_gone, &no_flight).free_procs.is_empty());
        let update = store.update(&procs, [], &nobody_gone, &no_flight);
        assert_eq!(update.free_procs, vec![((start + 1) % CAPACITY, second.state)]);
        assert_eq!(update.processes.len(), 1);
        assert_ne!(second.state, PROC_FREED);
    }

    #[test]
    fn fill_ratios() {
        let mut store = Store::new(OWN, 4, 8);
        let update = store.update(
            &table(&[proc(10, 0, false, "a")]),
            [(0, slot(A, 0, 1, 1, "a"))],
            &nobody_gone,
            &no_flight,
        );
        assert_eq!((update.stats_fill, update.procs_fill), (0.25, 0.125));
    }

    #[test]
    fn since_is_the_difference() {
        let before = SyscallTotals {
            errnos: BTreeMap::from([(2, 1)]),
            ..SyscallTotals::of_calls(5, 500, 0, 0, 100)
        };
        let after = SyscallTotals {
            errnos: BTreeMap::from([(2, 4)]),
            ..SyscallTotals::of_calls(8, 900, 0, 0, 100)
        };
        let delta = after.since(&before);
        assert_eq!(delta.calls, 3);
        assert_eq!(delta.handler_ns, 400);
        assert_eq!(delta.latency.count(), 3);
        assert_eq!(delta.errnos, BTreeMap::from([(2, 3)]));
        assert_eq!(after.since(&after).calls, 0);
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_text(&comm("bash")), "bash");
        assert_eq!(comm_text(&[b'x'; 16]), "x".repeat(16));
    }
}
