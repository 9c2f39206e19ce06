//! The one place that talks to the kernel: loads the embedded eBPF object, attaches its
//! programs to the raw tracepoints, and reads and prunes its maps.
//!
//! Requires Linux 5.8+ with BTF (`/sys/kernel/btf/vmlinux`), root or `CAP_BPF` +
//! `CAP_PERFMON`. No tracefs: the programs are BTF-enabled raw tracepoints (`tp_btf`); the
//! two empty floor programs are classic raw tracepoints.
use std::{collections::HashSet, io, path::Path};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{
        raw_trace_point::RawTracePointLinkId, tp_btf::BtfTracePointLinkId, BtfTracePoint, ProgramError, RawTracePoint,
    },
    Btf, Ebpf, EbpfError, EbpfLoader,
};
use profiler_common::{
    counter, Epochs, ErrnoKey, InFlight, ProcInfo, StatsKey, StatsSlot, SyscallStats, MAX_SAMPLE_EVERY, SLOT_EMPTY,
    SLOT_FREED, STATS_LANES,
};

use crate::kernel::btf::{BtfError, TaskOffsets, VMLINUX_BTF};

static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// The profiler's programs, `(program, tracepoint)`, all `tp_btf`.
///
/// Attached in this order and detached in reverse: `sched_switch` first, so that a call in
/// progress never leaves the CPU unseen.
pub const PROGRAMS: [(&str, &str); 7] = [
    ("sched_switch", "sched_switch"),
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("sched_wakeup_new", "sched_wakeup_new"),
    ("sched_process_exit", "sched_process_exit"),
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
];

/// Empty classic raw tracepoint programs on the two syscall tracepoints: the cost floor any
/// profiler built on them pays, measured by `cargo xtask bench`.
pub const FLOOR_PROGRAMS: [(&str, &str); 2] = [("floor_sys_enter", "sys_enter"), ("floor_sys_exit", "sys_exit")];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("permission denied loading eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON)")]
    NotPermitted,
    #[error("this kernel does not support eBPF (the bpf() system call is unavailable)")]
    NoBpf,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("cannot load the eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach {program} to raw tracepoint {tracepoint}: {reason}")]
    Attach {
        program: &'static str,
        tracepoint: &'static str,
        reason: String,
    },
    #[error("cannot read map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// Map sizes; together they bound the kernel-side memory (see [`crate::kernel::memory`]). The two
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
    pub fn rounded(self) -> MapSizes {
        MapSizes {
            threads: self.threads.max(1).next_power_of_two(),
            syscalls: self.syscalls.max(1).next_power_of_two(),
            ..self
        }
    }
}

/// Which processes are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every process on the machine.
    SystemWide,
    /// Only processes added with [`Probe::follow`]; with `children`, also everything they
    /// fork from then on.
    Followed { children: bool },
}

/// Snapshot of the overflow counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Overflow {
    pub slot_collisions: u64,
    pub stats_full: u64,
    pub errno_full: u64,
    pub process_full: u64,
    pub follow_full: u64,
}

impl Overflow {
    pub fn any(&self) -> bool {
        *self != Overflow::default()
    }
}

/// An attachment, to detach by.
enum Link {
    Btf(BtfTracePointLinkId),
    Raw(RawTracePointLinkId),
}

/// Loaded (and possibly attached) eBPF programs with their maps.
pub struct Probe {
    stats: MappedArray<StatsSlot>,
    slots: MappedArray<InFlight>,
    ebpf: Ebpf,
    links: Vec<(&'static str, Link)>,
    pub sizes: MapSizes,
}

fn is_errno(err: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(errno) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Whether `err` is the verifier turning a program down (it says why in its log; the errno,
/// often EACCES, says nothing about the caller's permissions).
fn is_verifier_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(ProgramError::LoadError { verifier_log, .. }) = err.downcast_ref::<ProgramError>() {
            return !verifier_log.to_string().trim().is_empty();
        }
        source = err.source();
    }
    false
}

fn classify_load_error(err: &(dyn std::error::Error + 'static)) -> ProbeError {
    if (is_errno(err, libc::EPERM) || is_errno(err, libc::EACCES)) && !is_verifier_rejection(err) {
        ProbeError::NotPermitted
    } else if is_errno(err, libc::ENOSYS) {
        ProbeError::NoBpf
    } else {
        // A verifier rejection carries the whole verifier log; its last lines say why.
        let mut text = err.to_string();
        if text.len() > 600 {
            text = format!("...{}", &text[text.len() - 600..]);
        }
        let mut source = err.source();
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        ProbeError::Load(text)
    }
}

fn program_as<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, ProbeError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|err: ProgramError| ProbeError::Load(err.to_string()))
}

/// A map the object should have but does not.
fn missing_map(map: &'static str) -> ProbeError {
    ProbeError::Map {
        map,
        source: MapError::InvalidName { name: map.into() },
    }
}

fn attach_error(program: &'static str, tracepoint: &'static str, err: &ProgramError) -> ProbeError {
    match classify_load_error(err) {
        ProbeError::Load(reason) => ProbeError::Attach {
            program,
            tracepoint,
            reason,
        },
        other => other,
    }
}

impl Probe {
    /// Loads and verifies the programs (not attached yet). `btf_path` is normally
    /// [`VMLINUX_BTF`].
    pub fn load(sizes: MapSizes, scope: Scope, btf_path: &Path) -> Result<Probe, ProbeError> {
        let offsets = TaskOffsets::from_btf_file(btf_path)?;
        let sizes = sizes.rounded();
        let slot_mask = sizes.threads - 1;
        let stats_mask = sizes.syscalls - 1;
        let lane_mask = sizes.lanes.clamp(1, STATS_LANES).next_power_of_two() - 1;
        let regs_cs_offset = offsets.regs_cs.unwrap_or(0);
        let [cfs_rq_offset, rq_offset, rq_clock_offset] = offsets.scheduler_clock.unwrap_or([0; 3]);
        let last_queued_offset = offsets.last_queued.unwrap_or(0);
        let (follow_only, follow_forks) = match scope {
            Scope::SystemWide => (0u32, 0u32),
            Scope::Followed { children } => (1, u32::from(children)),
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global("REGS_CS_OFFSET", &regs_cs_offset, true)
            .override_global("TASK_PID_OFFSET", &offsets.pid, true)
            .override_global("TASK_TGID_OFFSET", &offsets.tgid, true)
            .override_global("TASK_CFS_RQ_OFFSET", &cfs_rq_offset, true)
            .override_global("CFS_RQ_RQ_OFFSET", &rq_offset, true)
            .override_global("RQ_CLOCK_OFFSET", &rq_clock_offset, true)
            .override_global("TASK_LAST_QUEUED_OFFSET", &last_queued_offset, true)
            .override_global("SLOT_MASK", &slot_mask, true)
            .override_global("STATS_MASK", &stats_mask, true)
            .override_global("STATS_LANE_MASK", &lane_mask, true)
            .override_global("FOLLOW_ONLY", &follow_only, true)
            .override_global("FOLLOW_FORKS", &follow_forks, true)
            .map_max_entries("SLOTS", sizes.threads)
            .map_max_entries("STATS", sizes.syscalls)
            .map_max_entries("ERRNOS", sizes.errnos)
            .map_max_entries("PROCS", sizes.processes)
            .map_max_entries("FOLLOWED", sizes.processes);
        let mut ebpf = loader
            .load(PROGRAM_OBJECT)
            .map_err(|err: EbpfError| classify_load_error(&err))?;
        let kernel_btf = Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|err| BtfError::Parse {
            path: btf_path.to_owned(),
            reason: err.to_string(),
        })?;
        for (name, tracepoint) in PROGRAMS {
            let program: &mut BtfTracePoint = program_as(&mut ebpf, name)?;
            program
                .load(tracepoint, &kernel_btf)
                .map_err(|err| classify_load_error(&err))?;
        }
        for (name, _) in FLOOR_PROGRAMS {
            let program: &mut RawTracePoint = program_as(&mut ebpf, name)?;
            program.load().map_err(|err| classify_load_error(&err))?;
        }
        drop(kernel_btf);
        // Parsing the kernel's BTF briefly takes tens of MiB; hand them back to the system.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        Ok(Probe {
            stats: MappedArray::new(&ebpf, "STATS", sizes.syscalls)?,
            slots: MappedArray::new(&ebpf, "SLOTS", sizes.threads)?,
            ebpf,
            links: Vec::new(),
            sizes,
        })
    }

    /// Loads with default BTF location.
    pub fn load_default(sizes: MapSizes, scope: Scope) -> Result<Probe, ProbeError> {
        let btf = std::env::var_os("SYSCALL_PROFILER_BTF").unwrap_or_else(|| VMLINUX_BTF.into());
        Probe::load(sizes, scope, Path::new(&btf))
    }

    /// Attaches the profiler's programs ([`PROGRAMS`]).
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        if PROGRAMS.iter().all(|(name, _)| self.is_attached(name)) {
            return Ok(());
        }
        // Tasks may have exited unseen while detached: what the syscall programs remember
        // about who is calling must not outlive that (see `profiler_common::KnownTask`).
        self.count_attach()?;
        for (name, tracepoint) in PROGRAMS {
            if self.is_attached(name) {
                continue;
            }
            let link = program_as::<BtfTracePoint>(&mut self.ebpf, name)?
                .attach()
                .map_err(|err| attach_error(name, tracepoint, &err))?;
            self.links.push((name, Link::Btf(link)));
        }
        Ok(())
    }

    /// Bumps `Epochs::attaches`, which invalidates every record of who is calling. The
    /// write of the pair may undo an `exits` bump the kernel side makes at the same time;
    /// harmless, as no record was ever made with the new `attaches`.
    fn count_attach(&mut self) -> Result<(), ProbeError> {
        let map_error = |source| ProbeError::Map { map: "EPOCHS", source };
        let data = self.ebpf.map_mut("EPOCHS").ok_or_else(|| missing_map("EPOCHS"))?;
        let mut epochs: Array<&mut MapData, Epochs> = Array::try_from(data).map_err(map_error)?;
        let mut value = epochs.get(&0, 0).map_err(map_error)?;
        value.attaches += 1;
        epochs.set(0, value, 0).map_err(map_error)
    }

    /// Attaches the empty floor programs ([`FLOOR_PROGRAMS`]), for the benchmark.
    pub fn attach_floor(&mut self) -> Result<(), ProbeError> {
        for (name, tracepoint) in FLOOR_PROGRAMS {
            if self.is_attached(name) {
                continue;
            }
            let link = program_as::<RawTracePoint>(&mut self.ebpf, name)?
                .attach(tracepoint)
                .map_err(|err| attach_error(name, tracepoint, &err))?;
            self.links.push((name, Link::Raw(link)));
        }
        Ok(())
    }

    fn is_attached(&self, name: &str) -> bool {
        self.links.iter().any(|(attached, _)| *attached == name)
    }

    /// Detaches every program; the maps keep their contents.
    pub fn detach(&mut self) {
        for (name, link) in std::mem::take(&mut self.links).into_iter().rev() {
            let _ = match link {
                Link::Btf(link) => program_as::<BtfTracePoint>(&mut self.ebpf, name).map(|p| p.detach(link)),
                Link::Raw(link) => program_as::<RawTracePoint>(&mut self.ebpf, name).map(|p| p.detach(link)),
            };
        }
    }

    /// Times 1 in `every` of the calls that stay on the CPU (`every` a power of two up to
    /// [`MAX_SAMPLE_EVERY`]; 1 times every call). Calls that leave the CPU and the first
    /// calls of each (process, syscall) are always timed; counts are always exact. Takes
    /// effect at once, attached or not.
    pub fn set_sample_every(&mut self, every: u32) -> Result<(), ProbeError> {
        assert!(
            every.is_power_of_two() && every <= MAX_SAMPLE_EVERY,
            "bad sampling period {every}"
        );
        let map_error = |source| ProbeError::Map {
            map: "SAMPLING",
            source,
        };
        let data = self.ebpf.map_mut("SAMPLING").ok_or_else(|| missing_map("SAMPLING"))?;
        let mut sampling: Array<&mut MapData, u32> = Array::try_from(data).map_err(map_error)?;
        sampling.set(0, every - 1, 0).map_err(map_error)
    }

    pub fn attached_programs(&self) -> usize {
        self.links.len()
    }

    /// Run count and total run time of every attached program, as the kernel accounts them
    /// while run-time statistics are on (see [`enable_run_stats`]).
    pub fn run_stats(&mut self) -> Vec<(&'static str, u64, std::time::Duration)> {
        let names: Vec<&'static str> = self.links.iter().map(|(name, _)| *name).collect();
        names
            .into_iter()
            .filter_map(|name| {
                let program = self.ebpf.program(name)?;
                let info = program.info().ok()?;
                Some((name, info.run_count(), info.run_time()))
            })
            .collect()
    }

    fn hash<K: aya::Pod, V: aya::Pod>(&self, map: &'static str) -> Result<HashMap<&MapData, K, V>, ProbeError> {
        let data = self.ebpf.map(map).ok_or_else(|| missing_map(map))?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    fn hash_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, ProbeError> {
        let data = self.ebpf.map_mut(map).ok_or_else(|| missing_map(map))?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    /// Measures the processes with these tgids (in [`Scope::Followed`]).
    pub fn follow(&mut self, tgid: u32) -> Result<(), ProbeError> {
        let mut followed = self.hash_mut::<u32, u8>("FOLLOWED")?;
        followed.insert(tgid, 1, 0).map_err(|source| ProbeError::Map {
            map: "FOLLOWED",
            source,
        })
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

    pub fn read_errnos(&self) -> Result<Vec<(ErrnoKey, u64)>, ProbeError> {
        Ok(self
            .hash::<ErrnoKey, u64>("ERRNOS")?
            .iter()
            .filter_map(Result::ok)
            .collect())
    }

    pub fn read_processes(&self) -> Result<Vec<(u32, ProcInfo)>, ProbeError> {
        Ok(self
            .hash::<u32, ProcInfo>("PROCS")?
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
    pub fn monotonic_minus_scheduler_ns(&self) -> Option<i64> {
        let data = self.ebpf.map("CLOCK_PAIR")?;
        let pair: Array<&MapData, u64> = Array::try_from(data).ok()?;
        let monotonic = pair.get(&0, 0).ok()?;
        let scheduler = pair.get(&1, 0).ok()?;
        (monotonic != 0).then(|| monotonic.wrapping_sub(scheduler) as i64)
    }

    /// The overflow counters, summed over CPUs.
    pub fn overflow(&self) -> Result<Overflow, ProbeError> {
        let data = self.ebpf.map("COUNTERS").ok_or_else(|| missing_map("COUNTERS"))?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(data).map_err(|source| ProbeError::Map {
            map: "COUNTERS",
            source,
        })?;
        let read = |index: u32| -> Result<u64, ProbeError> {
            let values = counters.get(&index, 0).map_err(|source| ProbeError::Map {
                map: "COUNTERS",
                source,
            })?;
            Ok(values.iter().sum())
        };
        Ok(Overflow {
            slot_collisions: read(counter::SLOT_COLLISION)?,
            stats_full: read(counter::STATS_FULL)?,
            errno_full: read(counter::ERRNO_FULL)?,
            process_full: read(counter::PROC_FULL)?,
            follow_full: read(counter::FOLLOW_FULL)?,
        })
    }

    /// Frees these statistics slots and deletes every other map entry of the processes in
    /// `tgids`, after the agent has folded them into its own totals, so that processes that
    /// come and go do not fill the maps.
    pub fn forget(&mut self, slots: &[u32], tgids: &HashSet<u32>) -> Result<(), ProbeError> {
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
        remove_matching(self.hash_mut::<ErrnoKey, u64>("ERRNOS")?, |key| {
            tgids.contains(&key.tgid)
        });
        remove_matching(self.hash_mut::<u32, ProcInfo>("PROCS")?, |tgid| tgids.contains(tgid));
        remove_matching(self.hash_mut::<u32, u8>("FOLLOWED")?, |tgid| tgids.contains(tgid));
        Ok(())
    }

    /// Frees every slot and entry of the processes in `tgids`.
    pub fn forget_processes(&mut self, tgids: &HashSet<u32>) -> Result<(), ProbeError> {
        let slots: Vec<u32> = self
            .read_stats()
            .iter()
            .filter(|(_, slot)| tgids.contains(&StatsKey::unpack(slot.key).tgid))
            .map(|(index, _)| *index)
            .collect();
        self.forget(&slots, tgids)
    }
}

/// A memory-mapped BPF array (created with `BPF_F_MMAPABLE`): reads and writes without a
/// syscall per entry.
struct MappedArray<T> {
    base: std::ptr::NonNull<T>,
    entries: usize,
    bytes: usize,
}

impl<T: Copy> MappedArray<T> {
    fn new(ebpf: &Ebpf, map: &'static str, entries: u32) -> Result<MappedArray<T>, ProbeError> {
        use std::os::fd::{AsFd, AsRawFd};
        let data = ebpf.map(map).ok_or_else(|| missing_map(map))?;
        let aya::maps::Map::Array(data) = data else {
            return Err(ProbeError::Load(format!("map {map} is not an array")));
        };
        // The kernel lays values out every round_up(size, 8) bytes.
        assert_eq!(std::mem::size_of::<T>() % 8, 0, "array values must be 8-byte multiples");
        let page = 4096;
        let bytes = (entries as usize * std::mem::size_of::<T>()).div_ceil(page) * page;
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: mapping a BPF array fd; the kernel keeps the map alive while it is mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ProbeError::Load(format!(
                "cannot mmap map {map}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(MappedArray {
            base: std::ptr::NonNull::new(ptr.cast()).expect("mmap returned a pointer"),
            entries: entries as usize,
            bytes,
        })
    }

    fn entries(&self) -> usize {
        self.entries
    }

    /// A copy of entry `index`; fields the kernel is updating come out as of some moment.
    fn read(&self, index: usize) -> T {
        assert!(index < self.entries);
        // SAFETY: in bounds of the mapping; T is plain data valid for any bits.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index)) }
    }
}

impl MappedArray<StatsSlot> {
    fn key_of(&self, index: usize) -> u64 {
        assert!(index < self.entries);
        // SAFETY: in bounds; `key` is the first field, an aligned u64.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index).cast::<u64>()) }
    }

    /// Zeroes the slot, then marks it free for the kernel to reuse. Only for slots of
    /// processes that are gone, which nothing updates any more.
    fn free(&mut self, index: usize) {
        assert!(index < self.entries);
        // SAFETY: in bounds; the statistics are plain data.
        unsafe {
            let slot = self.base.as_ptr().add(index);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*slot).stats), SyscallStats::ZERO);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*slot).key), SLOT_FREED);
        }
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// Turns on the kernel's per-program run-time accounting while the returned fd is open. The
/// accounting itself adds two clock reads per program run.
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd, ProbeError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|err| classify_load_error(&err))
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_error(errno: i32, log: &str) -> ProgramError {
        ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(log.to_owned()),
        }
    }

    #[test]
    fn a_verifier_rejection_is_not_a_permission_problem() {
        // The verifier says EACCES for most rejections; its log says why.
        let rejected = load_error(libc::EACCES, "23: (77) r1 >>= 15\nR1 pointer arithmetic prohibited\n");
        match classify_load_error(&rejected) {
            ProbeError::Load(text) => assert!(text.contains("pointer arithmetic prohibited"), "{text}"),
            other => panic!("{other:?}"),
        }
        // No log: the kernel refused the caller.
        for errno in [libc::EPERM, libc::EACCES] {
            assert!(matches!(
                classify_load_error(&load_error(errno, "")),
                ProbeError::NotPermitted
            ));
        }
        assert!(matches!(
            classify_load_error(&io::Error::from_raw_os_error(libc::EPERM)),
            ProbeError::NotPermitted
        ));
        assert!(matches!(
            classify_load_error(&load_error(libc::ENOSYS, "")),
            ProbeError::NoBpf
        ));
    }
}
