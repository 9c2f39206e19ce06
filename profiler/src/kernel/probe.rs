//! The loaded programs: loading the embedded eBPF object with the offsets and sizes it needs,
//! attaching and detaching its programs, and the settings the agent changes while they run
//! (sampling, followed processes).
use std::path::Path;

use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{
        raw_trace_point::RawTracePointLinkId, tp_btf::BtfTracePointLinkId, BtfTracePoint, ProgramError, RawTracePoint,
    },
    Btf, Ebpf, EbpfError, EbpfLoader,
};
use profiler_common::{
    counter, fill,
    object::{global, map, program},
    proc_state, InFlight, ProcSlot, StatsSlot, MAX_SAMPLE_EVERY, STATS_LANES,
};

use crate::kernel::{
    btf::{BtfError, ExitPathOffsets, FileOffsets, TaskOffsets, VMLINUX_BTF},
    error::{attach_error, check_kernel_release, classify_load_error, missing_map, release_version, ProbeError},
    fill_alarm::FillAlarm,
    mapped::MappedArray,
    sizes::MapSizes,
};

static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Which processes are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every process on the machine.
    SystemWide,
    /// Only processes the agent follows (`Probe::follow`); with `children`, also everything they
    /// fork from then on.
    Followed { children: bool },
}

/// An attachment, to detach by.
enum Link {
    Btf(BtfTracePointLinkId),
    Raw(RawTracePointLinkId),
}

/// Loaded (and possibly attached) eBPF programs with their maps, the tables memory-mapped.
pub struct Probe {
    pub(super) stats: MappedArray<StatsSlot>,
    /// A byte per statistics slot: used (see `profiler_common::object::map::STATS_USED`).
    pub(super) stats_used: MappedArray<u64>,
    pub(super) slots: MappedArray<InFlight>,
    pub(super) procs: MappedArray<ProcSlot>,
    /// `counter::ROW` per possible CPU.
    pub(super) counters: MappedArray<u64>,
    pub(super) clock_pair: MappedArray<u64>,
    /// `Epochs` as two words: exits, attaches.
    epochs: MappedArray<u64>,
    /// Entries claimed since the last read by table, then whether each table's alarm was
    /// raised since (`profiler_common::fill`).
    pub(super) claims: MappedArray<u64>,
    /// The ring buffer of fill alarms, until a command takes it to wait on
    /// ([`Probe::take_fill_alarm`]).
    fill_alarms: Option<RingBuf<MapData>>,
    pub(super) ebpf: Ebpf,
    links: Vec<(&'static str, Link)>,
    pub sizes: MapSizes,
    /// `/proc/kallsyms`, read once, when a stack is first named.
    pub(super) kernel_symbols: std::cell::OnceCell<crate::kernel::symbols::KernelSymbols>,
}

/// Words of the used-slot bytes of a statistics table of `slots` slots (eight to a word).
pub(crate) fn stats_used_words(slots: u32) -> u32 {
    slots.div_ceil(8).max(1)
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

impl Probe {
    /// Loads and verifies the programs (not attached yet). `btf_path` is normally
    /// [`VMLINUX_BTF`].
    pub(crate) fn load(sizes: MapSizes, scope: Scope, btf_path: &Path) -> Result<Probe, ProbeError> {
        if let Some(release) = kernel_release() {
            check_kernel_release(&release)?;
        }
        let offsets = TaskOffsets::from_btf_file(btf_path)?;
        let sizes = sizes.rounded();
        let slot_mask = sizes.threads - 1;
        let stats_mask = sizes.syscalls - 1;
        let procs_mask = sizes.processes - 1;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, err)| ProbeError::Load(format!("cannot count the possible CPUs: {err}")))?
            as u32;
        let lane_mask = sizes.lanes.clamp(1, STATS_LANES).next_power_of_two() - 1;
        let regs_mode_offset = offsets.regs_mode.unwrap_or(0);
        let [cfs_rq_offset, rq_offset, rq_clock_offset] = offsets.scheduler_clock.unwrap_or([0; 3]);
        let last_queued_offset = offsets.last_queued.unwrap_or(0);
        let exit_path = offsets.exit_path.unwrap_or(ExitPathOffsets {
            thread_flags: 0,
            regs_orig_ax: 0,
        });
        let files = offsets.files.unwrap_or(FileOffsets {
            regs_arg0: 0,
            task_stack: 0,
            task_files: 0,
            files_fdt: 0,
            fdt_max_fds: 0,
            fdt_fd: 0,
            file_inode: 0,
            inode_ino: 0,
            inode_mode: 0,
        });
        let need_resched_mask = match offsets.exit_path {
            Some(_) => need_resched_mask(kernel_release().as_deref()),
            None => 0,
        };
        let (follow_only, follow_forks) = match scope {
            Scope::SystemWide => (0u32, 0u32),
            Scope::Followed { children } => (1, u32::from(children)),
        };
        let thread_rows = u32::from(sizes.thread_rows > 0);
        let tid_by_helper = u32::from(exit_tid_by_helper());
        let has_task_pt_regs = u32::from(kernel_release().as_deref().and_then(release_version) >= Some((5, 15)));
        let (stats_alarm_at, procs_alarm_at) = (fill::alarm_at(sizes.syscalls), fill::alarm_at(sizes.processes));
        let mut loader = EbpfLoader::new();
        loader
            .override_global(global::REGS_MODE_OFFSET, &regs_mode_offset, true)
            .override_global(global::TASK_PID_OFFSET, &offsets.pid, true)
            .override_global(global::TASK_TGID_OFFSET, &offsets.tgid, true)
            .override_global(global::TASK_CFS_RQ_OFFSET, &cfs_rq_offset, true)
            .override_global(global::CFS_RQ_RQ_OFFSET, &rq_offset, true)
            .override_global(global::RQ_CLOCK_OFFSET, &rq_clock_offset, true)
            .override_global(global::TASK_LAST_QUEUED_OFFSET, &last_queued_offset, true)
            .override_global(global::TASK_GROUP_LEADER_OFFSET, &offsets.group_leader, true)
            .override_global(global::TASK_REAL_PARENT_OFFSET, &offsets.real_parent, true)
            .override_global(global::TASK_COMM_OFFSET, &offsets.comm, true)
            .override_global(global::TASK_SIGNAL_OFFSET, &offsets.signal, true)
            .override_global(global::SIGNAL_LIVE_OFFSET, &offsets.signal_live, true)
            .override_global(global::TASK_TI_FLAGS_OFFSET, &exit_path.thread_flags, true)
            .override_global(global::NEED_RESCHED_MASK, &need_resched_mask, true)
            .override_global(global::REGS_ORIG_AX_OFFSET, &exit_path.regs_orig_ax, true)
            .override_global(global::SLOT_MASK, &slot_mask, true)
            .override_global(global::PROCS_MASK, &procs_mask, true)
            .override_global(global::STATS_MASK, &stats_mask, true)
            .override_global(global::STATS_LANE_MASK, &lane_mask, true)
            .override_global(global::FOLLOW_ONLY, &follow_only, true)
            .override_global(global::FOLLOW_FORKS, &follow_forks, true)
            .override_global(global::REGS_ARG0_OFFSET, &files.regs_arg0, true)
            .override_global(global::TASK_STACK_OFFSET, &files.task_stack, true)
            .override_global(global::TASK_FILES_OFFSET, &files.task_files, true)
            .override_global(global::FILES_FDT_OFFSET, &files.files_fdt, true)
            .override_global(global::FDT_MAX_FDS_OFFSET, &files.fdt_max_fds, true)
            .override_global(global::FDT_FD_OFFSET, &files.fdt_fd, true)
            .override_global(global::FILE_INODE_OFFSET, &files.file_inode, true)
            .override_global(global::INODE_INO_OFFSET, &files.inode_ino, true)
            .override_global(global::INODE_MODE_OFFSET, &files.inode_mode, true)
            .override_global(global::THREAD_ROWS, &thread_rows, true)
            .override_global(global::TID_BY_HELPER, &tid_by_helper, true)
            .override_global(global::HAS_TASK_PT_REGS, &has_task_pt_regs, true)
            .override_global(global::STATS_ALARM_AT, &stats_alarm_at, true)
            .override_global(global::PROCS_ALARM_AT, &procs_alarm_at, true)
            .map_max_entries(map::SLOTS, sizes.threads)
            .map_max_entries(map::WAIT_STACK_OF, sizes.threads)
            .map_max_entries(map::STATS, sizes.syscalls)
            .map_max_entries(map::STATS_USED, stats_used_words(sizes.syscalls))
            .map_max_entries(map::PROCS, sizes.processes)
            .map_max_entries(map::THREADS, sizes.thread_rows.max(1))
            .map_max_entries(map::COUNTERS, cpus * counter::ROW);
        let mut ebpf = loader
            .load(PROGRAM_OBJECT)
            .map_err(|err: EbpfError| classify_load_error(&err))?;
        let kernel_btf = Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|err| BtfError::Parse {
            path: btf_path.to_owned(),
            reason: err.to_string(),
        })?;
        for (name, tracepoint) in program::PROFILER.iter().chain(&program::WAKERS) {
            let program: &mut BtfTracePoint = program_as(&mut ebpf, name)?;
            program
                .load(tracepoint, &kernel_btf)
                .map_err(|err| classify_load_error(&err))?;
        }
        for (name, _) in program::FLOOR {
            let program: &mut RawTracePoint = program_as(&mut ebpf, name)?;
            program.load().map_err(|err| classify_load_error(&err))?;
        }
        drop(kernel_btf);
        // Parsing the kernel's BTF briefly takes tens of MiB; hand them back to the system.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        // Mapped now, while the agent may still create mappings of BPF maps.
        let fill_alarms = ebpf
            .take_map(map::FILL_ALARMS)
            .ok_or_else(|| missing_map(map::FILL_ALARMS))
            .and_then(|data| {
                RingBuf::try_from(data).map_err(|source| ProbeError::Map {
                    map: map::FILL_ALARMS,
                    source,
                })
            })?;
        Ok(Probe {
            stats: MappedArray::new(&ebpf, map::STATS, sizes.syscalls)?,
            stats_used: MappedArray::new(&ebpf, map::STATS_USED, stats_used_words(sizes.syscalls))?,
            slots: MappedArray::new(&ebpf, map::SLOTS, sizes.threads)?,
            procs: MappedArray::new(&ebpf, map::PROCS, sizes.processes)?,
            counters: MappedArray::new(&ebpf, map::COUNTERS, cpus * counter::ROW)?,
            clock_pair: MappedArray::new(&ebpf, map::CLOCK_PAIR, 2)?,
            epochs: MappedArray::new(&ebpf, map::EPOCHS, 2)?,
            claims: MappedArray::new(&ebpf, map::CLAIMS, 2 * fill::TABLES)?,
            fill_alarms: Some(fill_alarms),
            ebpf,
            links: Vec::new(),
            sizes,
            kernel_symbols: std::cell::OnceCell::new(),
        })
    }

    /// The fill alarm to wait on (once: `None` after the first call). Inside a tokio runtime.
    pub fn take_fill_alarm(&mut self) -> Option<std::io::Result<FillAlarm>> {
        self.fill_alarms.take().map(FillAlarm::new)
    }

    /// Loads with default BTF location.
    pub fn load_default(sizes: MapSizes, scope: Scope) -> Result<Probe, ProbeError> {
        let btf = std::env::var_os("SYSCALL_PROFILER_BTF").unwrap_or_else(|| VMLINUX_BTF.into());
        Probe::load(sizes, scope, Path::new(&btf))
    }

    /// Attaches the profiler's programs ([`program::PROFILER`]).
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        if program::PROFILER.iter().all(|(name, _)| self.is_attached(name)) {
            return Ok(());
        }
        // Tasks may have exited unseen while detached: what the syscall programs remember
        // about who is calling must not outlive that (see `profiler_common::KnownTask`).
        self.forget_callers();
        self.attach_btf(&program::PROFILER)
    }

    /// Attaches those of `programs` (BTF tracepoints) not attached yet, in order.
    fn attach_btf(&mut self, programs: &[(&'static str, &'static str)]) -> Result<(), ProbeError> {
        for &(name, tracepoint) in programs {
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

    /// Bumps `Epochs::attaches`, which invalidates every record of who is calling.
    fn forget_callers(&self) {
        self.epochs.add(1, 1);
    }

    /// Attaches the program that sees who wakes a call asleep ([`program::WAKERS`]).
    pub(crate) fn attach_wakers(&mut self) -> Result<(), ProbeError> {
        self.attach_btf(&program::WAKERS)
    }

    /// Detaches the program [`Probe::attach_wakers`] attached.
    pub(crate) fn detach_wakers(&mut self) {
        let (wakers, kept) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(name, _)| program::WAKERS.iter().any(|(waker, _)| waker == name));
        self.links = kept;
        for (name, link) in wakers {
            if let Link::Btf(link) = link {
                let _ = program_as::<BtfTracePoint>(&mut self.ebpf, name).map(|p| p.detach(link));
            }
        }
    }

    /// Attaches the empty floor programs ([`program::FLOOR`]), for the benchmark.
    pub(crate) fn attach_floor(&mut self) -> Result<(), ProbeError> {
        for (name, tracepoint) in program::FLOOR {
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
    pub(crate) fn set_sample_every(&mut self, every: u32) -> Result<(), ProbeError> {
        assert!(
            every.is_power_of_two() && every <= MAX_SAMPLE_EVERY,
            "bad sampling period {every}"
        );
        self.set_sampling(0, every - 1)
    }

    /// Sets word `index` of the `SAMPLING` map (0: the sampling mask; see
    /// `profiler_common::SAMPLING_WAIT_SITES`).
    pub(super) fn set_sampling(&mut self, index: u32, value: u32) -> Result<(), ProbeError> {
        let map_error = |source| ProbeError::Map {
            map: map::SAMPLING,
            source,
        };
        let data = self
            .ebpf
            .map_mut(map::SAMPLING)
            .ok_or_else(|| missing_map(map::SAMPLING))?;
        let mut sampling: Array<&mut MapData, u32> = Array::try_from(data).map_err(map_error)?;
        sampling.set(index, value, 0).map_err(map_error)
    }

    pub(crate) fn attached_programs(&self) -> usize {
        self.links.len()
    }

    /// Run count and total run time of every attached program, as the kernel accounts them
    /// while run-time statistics are on (see [`enable_run_stats`]).
    pub(crate) fn run_stats(&mut self) -> Vec<(&'static str, u64, std::time::Duration)> {
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
    /// Stops measuring the process `tgid` (in [`Scope::Followed`]), and the children it forks
    /// from then on.
    pub(crate) fn unfollow(&mut self, tgid: u32) {
        for index in 0..self.procs.entries() {
            loop {
                let state = self.procs.state_of(index);
                let ours = state != profiler_common::PROC_EMPTY
                    && state != profiler_common::PROC_FREED
                    && proc_state::tgid(state) == tgid
                    && state & proc_state::FOLLOWED != 0;
                if !ours || self.procs.swap_state(index, state, state & !proc_state::FOLLOWED) {
                    break;
                }
            }
        }
        self.forget_callers();
    }

    /// Measures the process `tgid` (in [`Scope::Followed`]), named `comm`, in cgroup
    /// `cgroup_id`, from its next call: its process table entry, taken (or revived, for a
    /// reused pid) as the kernel side takes them, marked followed.
    pub(crate) fn follow(&mut self, tgid: u32, comm: [u8; 16], cgroup_id: u64) -> Result<(), ProbeError> {
        let mask = self.sizes.processes - 1;
        let start = profiler_common::proc_hash(tgid, mask);
        let table_full = || ProbeError::Load(format!("cannot follow {tgid}: the process table is full"));
        for _attempt in 0..4 {
            let mut free = None;
            let mut found = None;
            for probe in 0..profiler_common::PROC_PROBES {
                let index = ((start + probe) & mask) as usize;
                let state = self.procs.state_of(index);
                // Past empty entries too, as the kernel side searches (its `find_process`).
                if state == profiler_common::PROC_EMPTY || state == profiler_common::PROC_FREED {
                    free = free.or(Some((index, state)));
                } else if proc_state::tgid(state) == tgid {
                    found = Some((index, state));
                    break;
                }
            }
            let (index, expected, new_state) = match (found, free) {
                (Some((index, state)), _) if state & proc_state::DEAD != 0 => (
                    index,
                    state,
                    ((state & proc_state::EPOCH_MASK) + proc_state::EPOCH_ONE) | tgid as u64 | proc_state::FOLLOWED,
                ),
                (Some((index, state)), _) => (index, state, state | proc_state::FOLLOWED),
                (None, Some((index, state))) => (index, state, tgid as u64 | proc_state::FOLLOWED),
                (None, None) => return Err(table_full()),
            };
            if self.procs.swap_state(index, expected, new_state) {
                if found.is_none_or(|(_, state)| state & proc_state::DEAD != 0) {
                    self.procs.name(index, comm, cgroup_id);
                }
                self.forget_callers();
                return Ok(());
            }
        }
        Err(table_full())
    }
}

/// Turns on the kernel's per-program run-time accounting while the returned fd is open. The
/// accounting itself adds two clock reads per program run.
pub(crate) fn enable_run_stats() -> Result<std::os::fd::OwnedFd, ProbeError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|err| classify_load_error(&err))
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|text| text.trim().to_owned())
}

/// The thread flags that make the way out of a syscall call the scheduler. The bits are
/// macros, not in BTF, so they go by architecture and release. x86_64: TIF_NEED_RESCHED is
/// bit 3 up to Linux 6.12; 6.13 added TIF_NEED_RESCHED_LAZY as bit 4; 6.18 moved x86 to the
/// generic TIF bits, with the two at bits 4 and 5 (checked on this machine's 6.18: bit 3
/// alone misses every wait on the way out; `tests/split.rs` fails then). arm64:
/// TIF_NEED_RESCHED is bit 1 before 6.18 (arm64 has no lazy preemption there); from 6.18 on
/// arm64 is not checked, and gets 0 like every other architecture: the way out untimed.
fn need_resched_mask(release: Option<&str>) -> u64 {
    let version = release.and_then(release_version);
    if cfg!(target_arch = "aarch64") {
        return match version {
            Some(version) if version < (6, 18) => 1 << 1,
            _ => 0,
        };
    }
    if !cfg!(target_arch = "x86_64") {
        return 0;
    }
    match version {
        Some(version) if version >= (6, 18) => 1 << 4 | 1 << 5,
        Some(version) if version >= (6, 13) => 1 << 3 | 1 << 4,
        _ => 1 << 3,
    }
}

/// Where `SYSCALL_PROFILER_EXIT_TID` (`helper` or `records`) overrides the choice of
/// [`exit_tid_by_helper`]: to measure or test either way on one machine.
pub const EXIT_TID_ENV: &str = "SYSCALL_PROFILER_EXIT_TID";

/// Whether `sys_exit` should ask the kernel for the thread id with a helper call rather than
/// look it up in the per-CPU records of recent callers (see the `TID_BY_HELPER` global): yes,
/// unless the CPU's mitigations make calls and returns expensive.
fn exit_tid_by_helper() -> bool {
    match std::env::var(EXIT_TID_ENV).as_deref() {
        Ok("helper") => return true,
        Ok("records") => return false,
        _ => {}
    }
    let read = |name: &str| std::fs::read_to_string(format!("/sys/devices/system/cpu/vulnerabilities/{name}")).ok();
    !returns_are_costly(read("spec_rstack_overflow").as_deref(), read("retbleed").as_deref())
}

/// Whether the kernel's mitigations (the contents of
/// `/sys/devices/system/cpu/vulnerabilities/{spec_rstack_overflow,retbleed}`) put a cost on
/// every return or call: AMD's Safe RET and untrained return thunk, Intel's call-depth
/// stuffing. There a helper call cost 70-100 ns on a machine we measured (BENCHMARKS.md).
pub(crate) fn returns_are_costly(spec_rstack_overflow: Option<&str>, retbleed: Option<&str>) -> bool {
    let says = |text: Option<&str>, what: &str| text.is_some_and(|text| text.contains(what));
    says(spec_rstack_overflow, "Safe RET") || says(retbleed, "untrained return thunk") || says(retbleed, "Stuffing")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    #[test]
    fn helper_calls_are_avoided_where_returns_are_mitigated() {
        let cases = [
            // (spec_rstack_overflow, retbleed, costly)
            (Some("Not affected\n"), Some("Vulnerable\n"), false), // Intel Xeon under KVM here
            (
                Some("Mitigation: Safe RET\n"),
                Some("Mitigation: untrained return thunk; SMT enabled with STIBP protection\n"),
                true,
            ),
            (Some("Mitigation: Safe RET\n"), Some("Not affected\n"), true), // Zen 3/4
            (
                Some("Vulnerable: Safe RET, no microcode\n"),
                Some("Not affected\n"),
                true,
            ),
            (Some("Not affected\n"), Some("Mitigation: Stuffing\n"), true),
            (Some("Not affected\n"), Some("Mitigation: Enhanced IBRS\n"), false),
            (Some("Mitigation: IBPB\n"), Some("Mitigation: IBPB\n"), false),
            (None, None, false), // no such files (old kernels, other architectures)
        ];
        for (srso, retbleed, costly) in cases {
            assert_eq!(returns_are_costly(srso, retbleed), costly, "{srso:?} {retbleed:?}");
        }
    }

    #[test]
    fn the_reschedule_bits_follow_the_kernel_release() {
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        assert_eq!(need_resched_mask(Some("6.1.0-28-amd64")), 1 << 3);
        assert_eq!(need_resched_mask(Some("6.12.48+deb13-amd64")), 1 << 3);
        assert_eq!(need_resched_mask(Some("6.13.0")), 1 << 3 | 1 << 4);
        assert_eq!(need_resched_mask(Some("6.17.9")), 1 << 3 | 1 << 4);
        assert_eq!(need_resched_mask(Some("6.18.0-rc4")), 1 << 4 | 1 << 5);
        assert_eq!(need_resched_mask(Some("7.0.1")), 1 << 4 | 1 << 5);
        assert_eq!(need_resched_mask(None), 1 << 3);
    }

    /// The names the agent uses are the object's: every map and program, and every global
    /// (patching one that does not exist fails).
    #[test]
    fn the_shared_names_are_the_objects() {
        let mut object = aya_obj::Object::parse(PROGRAM_OBJECT).expect("the embedded object parses");
        let maps: BTreeSet<&str> = object
            .maps
            .keys()
            .map(String::as_str)
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert_eq!(maps, map::ALL.into_iter().collect());
        let programs: BTreeSet<&str> = object.programs.keys().map(String::as_str).collect();
        let named: BTreeSet<&str> = program::PROFILER
            .iter()
            .chain(&program::FLOOR)
            .chain(&program::WAKERS)
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(programs, named);
        let zero = 0u32.to_ne_bytes();
        let globals: HashMap<&str, (&[u8], bool)> = global::ALL.iter().map(|name| (*name, (&zero[..], true))).collect();
        object.patch_map_data(globals).expect("every global exists, a u32");
        let missing = HashMap::from([("NO_SUCH_GLOBAL", (&zero[..], true))]);
        assert!(object.patch_map_data(missing).is_err());
    }
}
