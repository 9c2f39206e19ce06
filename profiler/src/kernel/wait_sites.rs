//! Where blocked calls slept: turning the recording on, and reading the wait-site and stack
//! tables, with the stacks' addresses named from `/proc/kallsyms`. Through `bpf()` calls
//! (hash and stack-trace maps cannot be memory-mapped): for `report`, which keeps its
//! capabilities to the end. Needs Linux 4.6+ (stack-trace maps); the names need root
//! (`kptr_restrict`).
use std::collections::{BTreeMap, HashMap as StdHashMap};

use aya::maps::{Array, HashMap, MapData, StackTraceMap};
use profiler_common::{
    counter, object::map, FdWaitKey, StatsKey, WaitKey, WaitStats, FD_CALLS_BITS, SAMPLING_WAIT_SITES,
};

use crate::{
    kernel::{
        error::{missing_map, ProbeError},
        probe::Probe,
        symbols::KernelSymbols,
    },
    model::{
        names::native_nr,
        wait::{OnFile, FIRST_IS_FD},
    },
};

/// Which blocked calls have their wait site (and file, and waker) recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitRecording {
    Off,
    /// Every process's, sampled (see `profiler_common::WAIT_SITE_SAMPLE_EVERY`): a report.
    Sampled,
    /// One process's alone, every one of them: `syscall-top`'s view of a process.
    Process(u32),
}

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
    /// The hash map called `name`, to read through `bpf()` calls.
    pub(super) fn hash_map<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<HashMap<&MapData, K, V>, ProbeError> {
        HashMap::try_from(self.ebpf.map(name).ok_or_else(|| missing_map(name))?)
            .map_err(|source| ProbeError::Map { map: name, source })
    }

    /// Records from now on where blocked calls sleep and who wakes them (attaching the
    /// waker program), or stops.
    pub fn record_wait_sites(&mut self, recording: WaitRecording) -> Result<(), ProbeError> {
        let word = match recording {
            WaitRecording::Off => {
                self.set_sampling(SAMPLING_WAIT_SITES, 0)?;
                self.detach_wakers();
                return Ok(());
            }
            WaitRecording::Sampled => 1,
            WaitRecording::Process(tgid) => tgid << 1 | 1,
        };
        self.mark_fd_calls()?;
        self.set_sampling(SAMPLING_WAIT_SITES, word)?;
        self.attach_wakers()
    }

    /// Forgets the wait sites and files recorded so far (not the stacks: the stack table
    /// keeps each distinct stack once).
    pub fn clear_wait_sites(&mut self) -> Result<(), ProbeError> {
        fn clear<K: aya::Pod>(probe: &mut Probe, name: &'static str) -> Result<(), ProbeError> {
            let map_error = |source| ProbeError::Map { map: name, source };
            let data = probe.ebpf.map_mut(name).ok_or_else(|| missing_map(name))?;
            let mut table: HashMap<&mut MapData, K, WaitStats> = HashMap::try_from(data).map_err(map_error)?;
            let keys: Vec<K> = table.keys().filter_map(Result::ok).collect();
            for key in keys {
                let _ = table.remove(&key); // gone meanwhile: nothing removes them but this
            }
            Ok(())
        }
        clear::<WaitKey>(self, map::WAIT_SITES)?;
        clear::<FdWaitKey>(self, map::FD_WAITS)
    }

    /// Tells the kernel side which native syscalls take a descriptor first
    /// ([`FIRST_IS_FD`]): their blocked calls are traced to the file they wait on.
    fn mark_fd_calls(&mut self) -> Result<(), ProbeError> {
        let map_error = |source| ProbeError::Map {
            map: map::FD_CALLS,
            source,
        };
        let mut words = [0u64; (FD_CALLS_BITS / 64) as usize];
        for nr in FIRST_IS_FD.iter().filter_map(|name| native_nr(name)) {
            if nr < FD_CALLS_BITS {
                words[(nr / 64) as usize] |= 1 << (nr % 64);
            }
        }
        let data = self
            .ebpf
            .map_mut(map::FD_CALLS)
            .ok_or_else(|| missing_map(map::FD_CALLS))?;
        let mut fd_calls: Array<&mut MapData, u64> = Array::try_from(data).map_err(map_error)?;
        for (index, word) in words.into_iter().enumerate() {
            fd_calls.set(index as u32, word, 0).map_err(map_error)?;
        }
        Ok(())
    }

    /// The process that woke the blocked calls of each wait site recorded so far (one per
    /// entry of the table: a process may be there many times).
    pub fn wakers(&self) -> Result<Vec<u32>, ProbeError> {
        let sites = self.hash_entries::<WaitKey, WaitStats>(map::WAIT_SITES)?;
        Ok(sites.iter().map(|(site, _)| site.waker_tgid).collect())
    }

    /// The files blocked calls on a descriptor waited on, so far; entries of several lanes
    /// or epochs apart (the caller adds them up).
    pub fn fd_waits(&self) -> Result<Vec<OnFile>, ProbeError> {
        let fd_waits = self.hash_entries::<FdWaitKey, WaitStats>(map::FD_WAITS)?;
        Ok(fd_waits
            .into_iter()
            .map(|(on, stats)| OnFile {
                key: StatsKey::unpack(on.key),
                fd: on.fd,
                ino: on.ino,
                mode: on.mode,
                calls: stats.calls,
                blocked_ns: stats.blocked_ns,
            })
            .collect())
    }

    /// Entries the kernel side added so far to the wait-site table and to the per-descriptor
    /// table: when neither moved, reading them again finds nothing new to name.
    pub(crate) fn waits_added(&self) -> (u64, u64) {
        (
            self.counter(counter::WAIT_SITES_ADDED),
            self.counter(counter::FD_WAITS_ADDED),
        )
    }

    /// Blocked calls whose wait site could not be recorded (a table full, or a stack
    /// colliding with another).
    pub fn wait_sites_lost(&self) -> u64 {
        self.counter(counter::WAIT_SITES_LOST)
    }

    /// Every wait site recorded so far of the processes `wanted`, its stack named. Entries of one (process, syscall)
    /// and stack from several lanes or epochs are added up.
    pub fn wait_sites(&self, wanted: &dyn Fn(u32) -> bool) -> Result<Vec<RawWaitSite>, ProbeError> {
        let sites = self.hash_entries::<WaitKey, WaitStats>(map::WAIT_SITES)?;
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
        for (site, stats) in sites {
            if !wanted(StatsKey::unpack(site.key).tgid) {
                continue;
            }
            let sum = summed
                .entry((StatsKey::unpack(site.key), site.stack_id, site.waker_tgid))
                .or_default();
            sum.calls += stats.calls;
            sum.blocked_ns += stats.blocked_ns;
        }
        let symbols = self.kernel_symbols.get_or_init(KernelSymbols::read);
        let mut named: StdHashMap<u32, Vec<String>> = StdHashMap::new();
        let mut found = Vec::with_capacity(summed.len());
        for ((key, stack_id, waker_tgid), stats) in summed {
            let frames = named
                .entry(stack_id)
                .or_insert_with(|| match stacks.get(&stack_id, 0) {
                    Ok(stack) => stack.frames().iter().map(|frame| symbol(symbols, frame.ip)).collect(),
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

/// The function an address is in, or the address.
fn symbol(symbols: &KernelSymbols, address: u64) -> String {
    match symbols.name_of(address) {
        Some(name) => name.to_owned(),
        None => format!("{address:#x}"),
    }
}
