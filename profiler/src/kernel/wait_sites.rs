//! Where blocked calls slept: turning the recording on, and reading the wait-site and stack
//! tables, with the stacks' addresses named from `/proc/kallsyms`. Through `bpf()` calls
//! (hash and stack-trace maps cannot be memory-mapped): for `report`, which keeps its
//! capabilities to the end. Needs Linux 4.6+ (stack-trace maps); the names need root
//! (`kptr_restrict`).
use std::collections::{BTreeMap, HashMap as StdHashMap};

use aya::maps::{HashMap, MapData, StackTraceMap};
use profiler_common::{counter, object::map, StatsKey, WaitKey, WaitStats, SAMPLING_WAIT_SITES};

use crate::kernel::{
    error::{missing_map, ProbeError},
    probe::Probe,
};

/// One (process, syscall, kernel stack)'s blocked calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawWaitSite {
    pub key: StatsKey,
    /// The process that last woke these calls (0: none seen, or an interrupt on an idle CPU).
    pub waker_tgid: u32,
    /// Function names of the stack, innermost first (`0x...` where an address has no
    /// symbol).
    pub frames: Vec<String>,
    pub calls: u64,
    pub blocked_ns: u64,
}

impl Probe {
    /// Records from now on where blocked calls sleep and who wakes them (attaching the
    /// waker program), or stops.
    pub fn record_wait_sites(&mut self, on: bool) -> Result<(), ProbeError> {
        self.set_sampling(SAMPLING_WAIT_SITES, u32::from(on))?;
        if on {
            self.attach_wakers()?;
        }
        Ok(())
    }

    /// Blocked calls whose wait site could not be recorded (a table full, or a stack
    /// colliding with another).
    pub fn wait_sites_lost(&self) -> u64 {
        self.counter(counter::WAIT_SITES_LOST)
    }

    /// Every wait site recorded so far, its stack named. Entries of one (process, syscall)
    /// and stack from several lanes or epochs are added up.
    pub fn wait_sites(&self) -> Result<Vec<RawWaitSite>, ProbeError> {
        let sites_error = |source| ProbeError::Map {
            map: map::WAIT_SITES,
            source,
        };
        let sites: HashMap<&MapData, WaitKey, WaitStats> = HashMap::try_from(
            self.ebpf
                .map(map::WAIT_SITES)
                .ok_or_else(|| missing_map(map::WAIT_SITES))?,
        )
        .map_err(sites_error)?;
        let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(
            self.ebpf
                .map(map::WAIT_STACKS)
                .ok_or_else(|| missing_map(map::WAIT_STACKS))?,
        )
        .map_err(|source| ProbeError::Map {
            map: map::WAIT_STACKS,
            source,
        })?;
        let mut summed: BTreeMap<(StatsKey, u32, u32), WaitStats> = BTreeMap::new();
        for entry in sites.iter() {
            let Ok((site, stats)) = entry else {
                continue; // removed while iterating: nothing does that
            };
            let sum = summed
                .entry((StatsKey::unpack(site.key), site.stack_id, site.waker_tgid))
                .or_default();
            sum.calls += stats.calls;
            sum.blocked_ns += stats.blocked_ns;
        }
        let symbols = aya::util::kernel_symbols().unwrap_or_default();
        let mut named: StdHashMap<u32, Vec<String>> = StdHashMap::new();
        let mut found = Vec::with_capacity(summed.len());
        for ((key, stack_id, waker_tgid), stats) in summed {
            let frames = named
                .entry(stack_id)
                .or_insert_with(|| match stacks.get(&stack_id, 0) {
                    Ok(stack) => stack.frames().iter().map(|frame| symbol(&symbols, frame.ip)).collect(),
                    Err(_) => Vec::new(),
                })
                .clone();
            found.push(RawWaitSite {
                key,
                waker_tgid,
                frames,
                calls: stats.calls,
                blocked_ns: stats.blocked_ns,
            });
        }
        Ok(found)
    }
}

/// The function an address is in, from `/proc/kallsyms` (sorted by address).
fn symbol(symbols: &BTreeMap<u64, String>, address: u64) -> String {
    match symbols.range(..=address).next_back() {
        Some((_, name)) => name.clone(),
        None => format!("{address:#x}"),
    }
}
