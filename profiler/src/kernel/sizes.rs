//! The sizes of the maps, set at load time, and the kernel-side memory they take, computed the
//! way the kernel allocates them (memory-mappable arrays: one value per entry, rounded up to
//! whole pages; per-CPU arrays: one value per entry per CPU).
use std::mem::size_of;

use profiler_common::{
    counter, fill, object::map, Epochs, FdWaitKey, InFlight, ProcSlot, StatsSlot, ThreadKey, ThreadStats, WaitKey,
    WaitOf, WaitStats, FD_CALLS_BITS, FD_WAITS_ENTRIES, SAMPLING_WORDS, STATS_LANES, WAIT_SITES_ENTRIES,
    WAIT_STACKS_ENTRIES, WAIT_STACK_DEPTH,
};

/// Map sizes; together they bound the kernel-side memory (see `syscall-profiler memory`). The
/// tables indexed by hash (`threads`, `syscalls`, `processes`) are rounded up to powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// In-flight slots, one per thread inside a syscall; rounded up to a power of two.
    pub threads: u32,
    /// Slots of the statistics table, one per (process, syscall, group of CPUs) alive between
    /// reads; lookups probe up to `STATS_PROBES` slots, so keep it well above that.
    pub syscalls: u32,
    /// Entries of the process table, one per process alive, or exited and not read yet;
    /// rounded up to a power of two.
    pub processes: u32,
    /// Statistics lanes: entries per (process, syscall), one per group of threads (a power of
    /// two up to [`STATS_LANES`]; see there).
    pub lanes: u32,
    /// Rows of the per-thread table, one per (thread, syscall) (`report --threads`); 0: no
    /// per-thread counting.
    pub thread_rows: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            threads: 32_768,
            syscalls: 16_384,
            processes: 16_384,
            lanes: STATS_LANES,
            thread_rows: 0,
        }
    }
}

impl MapSizes {
    /// With the hash-indexed tables rounded up to powers of two, as loaded.
    pub(crate) fn rounded(self) -> MapSizes {
        MapSizes {
            threads: self.threads.max(1).next_power_of_two(),
            syscalls: self.syscalls.max(1).next_power_of_two(),
            processes: self.processes.max(1).next_power_of_two(),
            ..self
        }
    }
}

fn round8(n: usize) -> u64 {
    (n as u64).div_ceil(8) * 8
}

fn mmapable_array_bytes(entries: u32, value: usize) -> u64 {
    (u64::from(entries) * round8(value)).div_ceil(4096) * 4096
}

/// A plain (not memory-mapped) array: one value per entry, each rounded up to 8 bytes.
fn array_bytes(entries: u32, value: usize) -> u64 {
    u64::from(entries) * round8(value)
}

/// A hash map: per entry its key and value (each rounded up to 8 bytes) and the kernel's
/// element header (about 48 bytes).
fn hash_bytes(entries: u32, key: usize, value: usize) -> u64 {
    u64::from(entries) * (round8(key) + round8(value) + 48)
}

/// Bytes per map, by name, at `sizes` on a machine with `cpus` possible CPUs.
pub(crate) fn map_bytes(sizes: &MapSizes, cpus: u32) -> Vec<(&'static str, u64)> {
    let sizes = sizes.rounded();
    vec![
        (map::SLOTS, mmapable_array_bytes(sizes.threads, size_of::<InFlight>())),
        (map::STATS, mmapable_array_bytes(sizes.syscalls, size_of::<StatsSlot>())),
        (
            map::STATS_USED,
            mmapable_array_bytes(super::probe::stats_used_words(sizes.syscalls), size_of::<u64>()),
        ),
        (map::PROCS, mmapable_array_bytes(sizes.processes, size_of::<ProcSlot>())),
        (
            map::COUNTERS,
            mmapable_array_bytes(cpus * counter::ROW, size_of::<u64>()),
        ),
        (
            map::CURRENT,
            size_of::<profiler_common::Current>() as u64 * u64::from(cpus),
        ),
        (map::CLOCK_PAIR, mmapable_array_bytes(2, size_of::<u64>())),
        (map::EPOCHS, mmapable_array_bytes(1, size_of::<Epochs>())),
        (map::CLAIMS, mmapable_array_bytes(2 * fill::TABLES, size_of::<u64>())),
        // A ring buffer: its data pages and the two of its positions.
        (map::FILL_ALARMS, u64::from(fill::ALARMS_BYTES) + 2 * 4096),
        (map::SAMPLING, array_bytes(SAMPLING_WORDS, size_of::<u32>())),
        (
            map::WAIT_STACKS,
            // Per stack its frames and a bucket header (about 16 bytes).
            u64::from(WAIT_STACKS_ENTRIES) * (WAIT_STACK_DEPTH as u64 * 8 + 16),
        ),
        (map::WAIT_STACK_OF, array_bytes(sizes.threads, size_of::<WaitOf>())),
        (
            map::WAIT_SITES,
            hash_bytes(WAIT_SITES_ENTRIES, size_of::<WaitKey>(), size_of::<WaitStats>()),
        ),
        (
            map::FD_WAITS,
            hash_bytes(FD_WAITS_ENTRIES, size_of::<FdWaitKey>(), size_of::<WaitStats>()),
        ),
        (map::FD_CALLS, array_bytes(FD_CALLS_BITS / 64, size_of::<u64>())),
        (
            map::THREADS,
            hash_bytes(
                sizes.thread_rows.max(1),
                size_of::<ThreadKey>(),
                size_of::<ThreadStats>(),
            ),
        ),
    ]
}

pub(crate) fn total_bytes(sizes: &MapSizes, cpus: u32) -> u64 {
    map_bytes(sizes, cpus).iter().map(|(_, bytes)| bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_compact() {
        // The key, name and cgroup, 8 u64 counters, 4 errnos and their counts, the other
        // errors, and 160 u32 buckets.
        assert_eq!(
            size_of::<StatsSlot>(),
            8 + 16 + 8 + 8 * 8 + 8 * 3 + 4 * 8 + 4 * 4 + 8 + 160 * 4
        );
        assert_eq!(size_of::<ProcSlot>(), 32);
        assert_eq!(size_of::<InFlight>(), 64);
    }

    #[test]
    fn tables_are_rounded_to_powers_of_two_and_pages() {
        let sizes = MapSizes {
            threads: 1000,
            syscalls: 3,
            processes: 100,
            lanes: 1,
            thread_rows: 0,
        };
        let bytes: std::collections::HashMap<_, _> = map_bytes(&sizes, 2).into_iter().collect();
        assert_eq!(bytes[map::SLOTS], (1024u64 * 64).div_ceil(4096) * 4096);
        assert_eq!(bytes[map::STATS], 4096);
        assert_eq!(bytes[map::PROCS], 4096, "128 entries of 32 bytes");
    }

    #[test]
    fn default_total_is_bounded_and_grows_only_slightly_with_cpus() {
        let sizes = MapSizes::default();
        let two = total_bytes(&sizes, 2);
        let many = total_bytes(&sizes, 128);
        assert!(two < 32 << 20, "{two}");
        assert!(many > two && many - two < 1 << 20, "{two} vs {many}");
    }

    #[test]
    fn every_map_of_the_object_is_counted() {
        let mut counted: Vec<&str> = map_bytes(&MapSizes::default(), 2)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let mut all = map::ALL.to_vec();
        counted.sort();
        all.sort();
        assert_eq!(counted, all);
    }
}
