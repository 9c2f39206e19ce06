//! Reading the maps, and pruning the entries of processes that are gone.
use std::collections::HashSet;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use profiler_common::{
    counter, object::map, ErrnoKey, InFlight, ProcInfo, StatsKey, StatsSlot, SLOT_EMPTY, SLOT_FREED,
};

use crate::kernel::{
    error::{missing_map, ProbeError},
    probe::Probe,
};

impl Probe {
    fn hash<K: aya::Pod, V: aya::Pod>(&self, map: &'static str) -> Result<HashMap<&MapData, K, V>, ProbeError> {
        let data = self.ebpf.map(map).ok_or_else(|| missing_map(map))?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    pub(super) fn hash_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, ProbeError> {
        let data = self.ebpf.map_mut(map).ok_or_else(|| missing_map(map))?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    /// Every used slot of the statistics table, by index.
    pub fn read_stats(&self) -> Vec<(u32, StatsSlot)> {
        (0..self.stats.entries())
            .filter_map(|index| {
                // Look at the key first: most slots are empty, and this reads one cache line.
                let key = self.stats.key_of(index);
                (key != SLOT_EMPTY && key != SLOT_FREED).then(|| (index as u32, self.stats.read(index)))
            })
            .collect()
    }

    /// The statistics of one (process, syscall), added up over its slots.
    pub fn stats_of(&self, key: StatsKey) -> Option<(u64, u64)> {
        let mut found = None;
        for (_, slot) in self
            .read_stats()
            .iter()
            .filter(|(_, slot)| StatsKey::unpack(slot.key) == key)
        {
            let (calls, handler_ns) = found.unwrap_or((0, 0));
            found = Some((calls + slot.stats.calls, handler_ns + slot.stats.handler_ns));
        }
        found
    }

    pub(crate) fn read_errnos(&self) -> Result<Vec<(ErrnoKey, u64)>, ProbeError> {
        Ok(self
            .hash::<ErrnoKey, u64>(map::ERRNOS)?
            .iter()
            .filter_map(Result::ok)
            .collect())
    }

    pub(crate) fn read_processes(&self) -> Result<Vec<(u32, ProcInfo)>, ProbeError> {
        Ok(self
            .hash::<u32, ProcInfo>(map::PROCS)?
            .iter()
            .filter_map(Result::ok)
            .collect())
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
        let data = self.ebpf.map(map::CLOCK_PAIR)?;
        let pair: Array<&MapData, u64> = Array::try_from(data).ok()?;
        let monotonic = pair.get(&0, 0).ok()?;
        let scheduler = pair.get(&1, 0).ok()?;
        (monotonic != 0).then(|| monotonic.wrapping_sub(scheduler) as i64)
    }

    /// The overflow counters (by `profiler_common::counter` index), summed over CPUs.
    pub(crate) fn counters(&self) -> Result<[u64; counter::COUNT as usize], ProbeError> {
        let map_error = |source| ProbeError::Map {
            map: map::COUNTERS,
            source,
        };
        let data = self.ebpf.map(map::COUNTERS).ok_or_else(|| missing_map(map::COUNTERS))?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(data).map_err(map_error)?;
        let mut sums = [0; counter::COUNT as usize];
        for (index, sum) in (0..).zip(sums.iter_mut()) {
            *sum = counters.get(&index, 0).map_err(map_error)?.iter().sum();
        }
        Ok(sums)
    }

    /// Frees these statistics slots and deletes every other map entry of the processes in
    /// `tgids`, after the agent has folded them into its own totals, so that processes that
    /// come and go do not fill the maps.
    pub(crate) fn forget(&mut self, slots: &[u32], tgids: &HashSet<u32>) -> Result<(), ProbeError> {
        fn remove_matching<K: aya::Pod + Copy, V: aya::Pod>(
            mut map: HashMap<&mut MapData, K, V>,
            matches: impl Fn(&K) -> bool,
        ) {
            let doomed: Vec<K> = map.keys().filter_map(Result::ok).filter(|key| matches(key)).collect();
            for key in doomed {
                let _ = map.remove(&key);
            }
        }
        for &index in slots {
            self.stats.free(index as usize);
        }
        if tgids.is_empty() {
            return Ok(());
        }
        remove_matching(self.hash_mut::<ErrnoKey, u64>(map::ERRNOS)?, |key| {
            tgids.contains(&key.tgid)
        });
        remove_matching(self.hash_mut::<u32, ProcInfo>(map::PROCS)?, |tgid| tgids.contains(tgid));
        remove_matching(self.hash_mut::<u32, u8>(map::FOLLOWED)?, |tgid| tgids.contains(tgid));
        Ok(())
    }

    /// Frees every slot and entry of the processes in `tgids`.
    pub(crate) fn forget_processes(&mut self, tgids: &HashSet<u32>) -> Result<(), ProbeError> {
        let slots: Vec<u32> = self
            .read_stats()
            .iter()
            .filter(|(_, slot)| tgids.contains(&StatsKey::unpack(slot.key).tgid))
            .map(|(index, _)| *index)
            .collect();
        self.forget(&slots, tgids)
    }
}
