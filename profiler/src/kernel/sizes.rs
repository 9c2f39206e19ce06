//! The sizes of the maps, set at load time, and the kernel-side memory they take, computed the
//! way the kernel allocates them (preallocated hash maps: one element per entry plus one spare
//! per CPU, and a power-of-two bucket array; memory-mappable arrays: one value per entry,
//! rounded up to whole pages; per-CPU arrays: one value per entry per CPU).
use std::mem::size_of;

use profiler_common::{counter, object::map, Epochs, ErrnoKey, InFlight, ProcInfo, StatsSlot, STATS_LANES};

/// Map sizes; together they bound the kernel-side memory (see `syscall-profiler memory`). The two
/// tables indexed by hash (`threads`, `syscalls`) are rounded up to powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// In-flight slots, one per thread inside a syscall; rounded up to a power of two.
    pub threads: u32,
    /// Slots of the statistics table, one per (process, syscall, group of CPUs) alive between
    /// reads; lookups probe up to `STATS_PROBES` slots, so keep it well above that.
    pub syscalls: u32,
    /// (process, syscall, errno) triples.
    pub errnos: u32,
    /// Processes (names, and followed processes).
    pub processes: u32,
    /// Statistics lanes: entries per (process, syscall), one per group of CPUs (a power of
    /// two up to [`STATS_LANES`]; see there).
    pub lanes: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            threads: 32_768,
            syscalls: 16_384,
            errnos: 8_192,
            processes: 8_192,
            lanes: STATS_LANES,
        }
    }
}

impl MapSizes {
    /// With the hash-indexed tables rounded up to powers of two, as loaded.
    pub(crate) fn rounded(self) -> MapSizes {
        MapSizes {
            threads: self.threads.max(1).next_power_of_two(),
            syscalls: self.syscalls.max(1).next_power_of_two(),
            ..self
        }
    }
}

/// `sizeof(struct htab_elem)` before the key on 64-bit kernels.
const HTAB_ELEM_HEADER: u64 = 48;
/// `sizeof(struct bucket)`.
const HTAB_BUCKET: u64 = 16;

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

fn hash_bytes(max_entries: u32, key: usize, value: usize, cpus: u32) -> u64 {
    let element = HTAB_ELEM_HEADER + round8(key) + round8(value);
    let elements = u64::from(max_entries) + u64::from(cpus);
    let buckets = u64::from(max_entries.next_power_of_two()) * HTAB_BUCKET;
    element * elements + buckets
}

/// Bytes per map, by name, at `sizes` on a machine with `cpus` possible CPUs.
pub(crate) fn map_bytes(sizes: &MapSizes, cpus: u32) -> Vec<(&'static str, u64)> {
    let sizes = sizes.rounded();
    vec![
        (map::SLOTS, mmapable_array_bytes(sizes.threads, size_of::<InFlight>())),
        (map::STATS, mmapable_array_bytes(sizes.syscalls, size_of::<StatsSlot>())),
        (
            map::ERRNOS,
            hash_bytes(sizes.errnos, size_of::<ErrnoKey>(), size_of::<u64>(), cpus),
        ),
        (
            map::PROCS,
            hash_bytes(sizes.processes, size_of::<u32>(), size_of::<ProcInfo>(), cpus),
        ),
        (
            map::FOLLOWED,
            hash_bytes(sizes.processes, size_of::<u32>(), size_of::<u8>(), cpus),
        ),
        (map::COUNTERS, u64::from(counter::COUNT) * 8 * u64::from(cpus)),
        (
            map::CURRENT,
            size_of::<profiler_common::Current>() as u64 * u64::from(cpus),
        ),
        (map::CLOCK_PAIR, array_bytes(2, size_of::<u64>())),
        (map::EPOCHS, array_bytes(1, size_of::<Epochs>())),
        (map::SAMPLING, array_bytes(1, size_of::<u32>())),
    ]
}

pub(crate) fn total_bytes(sizes: &MapSizes, cpus: u32) -> u64 {
    map_bytes(sizes, cpus).iter().map(|(_, bytes)| bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_slot_is_compact() {
        // The key, 8 u64 counters and 160 u32 buckets.
        assert_eq!(size_of::<StatsSlot>(), 8 + 8 * 8 + 160 * 4);
    }

    #[test]
    fn tables_are_rounded_to_powers_of_two_and_pages() {
        let sizes = MapSizes {
            threads: 1000,
            syscalls: 3,
            errnos: 1,
            processes: 1,
            lanes: 1,
        };
        let bytes: std::collections::HashMap<_, _> = map_bytes(&sizes, 2).into_iter().collect();
        assert_eq!(bytes[map::SLOTS], (1024u64 * 64).div_ceil(4096) * 4096);
        assert_eq!(bytes[map::STATS], 4096);
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
    fn hash_memory_follows_the_kernel_formula() {
        // 100 entries of 8-byte keys and values: (100 + 2 spare) * (48 + 8 + 8) + 128 buckets * 16.
        assert_eq!(hash_bytes(100, 8, 8, 2), 102 * 64 + 128 * 16);
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
