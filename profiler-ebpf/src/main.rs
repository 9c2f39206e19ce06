//! Kernel side of the syscall profiler: aggregates, never streams.
//!
//! - `sys_enter`/`sys_exit` count every syscall in a per-(process, syscall) entry of `STATS`
//!   (calls, errors, the first few errnos), and time it into the same entry: the
//!   handler/blocked/runqueue split and a log-linear latency histogram.
//! - What is timed: every call, or with sampling on (`SAMPLING`), every call that leaves the
//!   CPU, the first calls of each (process, syscall), and 1 in N of the rest, which count N
//!   times. Reading the clock is most of the hot path's cost; sampling skips it on the short
//!   calls that stay on the CPU, where it would cost more than the call itself.
//! - `sched_switch` tracks the time an in-flight call spends off the CPU, on the scheduler's
//!   own clock (`rq->clock`, a plain load: no clock read); the time the scheduler records a
//!   task was queued (`sched_info.last_queued`) says how much of it was spent waiting for a
//!   CPU (runqueue), the rest was asleep (blocked). No wakeup hook is needed.
//! - A call that returns with a reschedule pending (`sys_exit` looks at the thread's
//!   TIF_NEED_RESCHED) waits for a CPU after `sys_exit`, on its way back to user mode: its time
//!   stays in its slot (`flight::EXITING`) until `sched_switch` brings the thread back, and
//!   that wait is its runqueue time too.
//! - `PROCS`, the process table, gives each process an entry at its first call: its name,
//!   cgroup, and an *epoch* that `task_rename` moves on when the process execs or renames
//!   itself. Statistics keys carry the epoch, so each epoch's calls are counted apart, under
//!   the name they were made under. `sched_process_exit` marks the entry dead when the last
//!   thread exits: the agent then knows the process's statistics are final, folds them and
//!   frees the entries, without asking `/proc`.
//! - `sched_process_exit`/`sched_wakeup_new`/`sched_process_exec` keep the per-thread
//!   in-flight slots from leaking when a thread dies or changes tid inside a syscall.
//! - `sched_process_fork` follows the children of followed processes (`--pid`, `-- CMD`).
//! - In a report (`SAMPLING[SAMPLING_WAIT_SITES]` on), `sched_switch` takes the kernel stack
//!   a call goes to sleep on (the first calls of each entry, then 1 in 256; or every call of
//!   one process, whose tgid the same word holds: `syscall-top`'s view of a process) and,
//!   for a call on a descriptor (`FD_CALLS`), the descriptor and its file's inode; `sched_waking`
//!   (attached only then) notes who wakes it, and the call's end adds it to `WAIT_SITES` and
//!   `FD_WAITS`.
//! - With `THREAD_ROWS` (`report --threads`, a load-time switch the verifier prunes when
//!   off), each thread's calls, errors and time off the CPU per syscall go to `THREADS` too,
//!   and `task_rename` notes the names threads give themselves there.
//!
//! Every map the counting modes read is a memory-mappable array: after attaching, `top` and
//! `serve` need no `bpf()` call, and so no capability. The wait-site and per-thread maps
//! (hash maps and a stack-trace map) are read with `bpf()` by `report`, which keeps its
//! capabilities, and by `syscall-top`'s view of a process.
//!
//! All programs are BTF-enabled raw tracepoints (`tp_btf`, Linux 5.5+; no tracefs needed): the
//! kernel hands them typed pointers, so task and register fields are plain loads rather than
//! `bpf_probe_read_kernel` calls. Helper calls are much of the hot path's cost on CPUs whose
//! mitigations put a price on every return, so `sys_enter` makes none for an untimed call of
//! a task its CPU has seen before (see `caller`), and `sys_exit` one where returns are cheap
//! (`TID_BY_HELPER`).
//! Kernel struct offsets come from the kernel's BTF at load time (globals below); nothing is
//! hard-coded. The empty `floor_*` programs are classic raw tracepoints, for the benchmark.
#![no_std]
#![no_main]
// Atomic adds: core's Atomic* types have no read-modify-write methods on the BPF target.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::{atomic_cxchg, atomic_or, atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task_btf,
        bpf_get_prandom_u32, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, bpf_task_pt_regs,
    },
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext, RawTracePointContext},
    Global,
};
#[cfg(bpf_target_arch = "aarch64")]
use profiler_common::PSR_MODE32_BIT;
#[cfg(not(bpf_target_arch = "aarch64"))]
use profiler_common::USER32_CS;
use profiler_common::{
    counter, fill, flight, hist_bucket, known_task_index, proc_hash, proc_state, stats_hash, thread_state, xorshift32,
    Caller, Current, Epochs, FdWaitKey, InFlight, KnownTask, ProcSlot, StatsKey, StatsSlot, SyscallStats, ThreadKey,
    ThreadStats, WaitKey, WaitOf, WaitStats, CALLER_FOLLOWED, ERRNO_SLOTS, FD_CALLS_BITS, FD_WAITS_ENTRIES,
    HIST_BUCKETS, KEY_EPOCH_MASK, NO_FD, NO_PROC, NR_COMPAT_FLAG, NR_KEY_BITS, NR_OUT_OF_RANGE, NR_X32_FLAG,
    PROC_EMPTY, PROC_FREED, PROC_PROBES, SAMPLING_WAIT_SITES, SAMPLING_WORDS, SLOT_EMPTY, SLOT_FREED, STATS_PROBES,
    THREAD_NAME_ROW, TIMED_FIRST_CALLS, WAIT_SITES_ENTRIES, WAIT_SITE_SAMPLE_EVERY, WAIT_STACKS_ENTRIES,
    WAIT_STACK_SAMPLED,
};

// ---- load-time configuration (read-only globals, set by the agent before loading) ----

/// Offset of the register that tells a 32-bit compat task's call (`pt_regs.cs` on x86_64,
/// `.pstate` on arm64; see `is_compat`); 0 when unknown (no compat detection).
#[no_mangle]
static REGS_MODE_OFFSET: Global<u32> = Global::new(0);
/// Offset of `task_struct.pid` (the thread id).
#[no_mangle]
static TASK_PID_OFFSET: Global<u32> = Global::new(0);
/// Offset of `task_struct.tgid` (the process id).
#[no_mangle]
static TASK_TGID_OFFSET: Global<u32> = Global::new(0);
/// Offsets of `task_struct.se.cfs_rq`, `cfs_rq.rq` and `rq.clock`: the way from a task to
/// its CPU's scheduler clock. 0 when unknown (no CONFIG_FAIR_GROUP_SCHED), and then time off
/// the CPU is timed with `bpf_ktime_get_ns` instead.
#[no_mangle]
static TASK_CFS_RQ_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static CFS_RQ_RQ_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static RQ_CLOCK_OFFSET: Global<u32> = Global::new(0);
/// Offset of `task_struct.sched_info.last_queued` (CONFIG_SCHED_INFO), on the scheduler's
/// clock; 0 when unknown, and then all time off the CPU counts as blocked.
#[no_mangle]
static TASK_LAST_QUEUED_OFFSET: Global<u32> = Global::new(0);
/// Offsets of `task_struct.group_leader`, `.real_parent` and `.comm`.
#[no_mangle]
static TASK_GROUP_LEADER_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static TASK_REAL_PARENT_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static TASK_COMM_OFFSET: Global<u32> = Global::new(0);
/// Offsets of `task_struct.signal` and `signal_struct.live` (the threads still running).
#[no_mangle]
static TASK_SIGNAL_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static SIGNAL_LIVE_OFFSET: Global<u32> = Global::new(0);
/// Offset of `task_struct.thread_info.flags` (the TIF bits), and the bits among them that
/// make the way out of a syscall call the scheduler: TIF_NEED_RESCHED (and
/// TIF_NEED_RESCHED_LAZY since Linux 6.13). Mask 0: the wait for a CPU on the way out of a
/// call is not timed.
#[no_mangle]
static TASK_TI_FLAGS_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static NEED_RESCHED_MASK: Global<u64> = Global::new(0);
/// Offset of `pt_regs.orig_ax` (`.syscallno` on arm64): the number of the call (see
/// `still_returning`).
#[no_mangle]
static REGS_ORIG_AX_OFFSET: Global<u32> = Global::new(0);
/// Offset of the first argument register in `pt_regs` (`di` on x86_64, `regs[0]` on
/// arm64), and the way from a task to the file behind a descriptor: `task_struct.stack` (its
/// `pt_regs` are at a fixed distance from it), `.files`, `files_struct.fdt`, `fdtable.max_fds` and `.fd`,
/// `file.f_inode`, `inode.i_ino` and `.i_mode`. `TASK_FILES_OFFSET` 0: not known, no
/// descriptor is read.
#[no_mangle]
static REGS_ARG0_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static TASK_STACK_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static TASK_FILES_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static FILES_FDT_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static FDT_MAX_FDS_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static FDT_FD_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static FILE_INODE_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static INODE_INO_OFFSET: Global<u32> = Global::new(0);
#[no_mangle]
static INODE_MODE_OFFSET: Global<u32> = Global::new(0);
/// 1: `sys_exit` asks the kernel for the thread id (`bpf_get_current_pid_tgid`); 0: it looks
/// the caller up in this CPU's records (`caller`), as `sys_enter` does. The helper call is
/// ~5 ns cheaper where a call and a return cost little; the agent sets 0 where the CPU's
/// mitigations make every return expensive (AMD's Safe RET, return thunks, call-depth
/// stuffing), where the records were measured to pay.
#[no_mangle]
static TID_BY_HELPER: Global<u32> = Global::new(0);
/// 1: the kernel has `bpf_task_pt_regs` (Linux 5.15): `still_returning` reads a switched-out
/// task's registers with it and a plain load instead of `bpf_probe_read_kernel`. 0: the
/// verifier drops that call, unknown to older kernels.
#[no_mangle]
static HAS_TASK_PT_REGS: Global<u32> = Global::new(0);
/// 1: count each thread's calls apart too (`THREADS`, `report --threads`); 0: not (the
/// verifier then drops that code).
#[no_mangle]
static THREAD_ROWS: Global<u32> = Global::new(0);
/// `SLOTS` size minus one; the size is a power of two.
#[no_mangle]
static SLOT_MASK: Global<u32> = Global::new(0);
/// `PROCS` size minus one; the size is a power of two.
#[no_mangle]
static PROCS_MASK: Global<u32> = Global::new(0);
/// `STATS` size minus one; the size is a power of two.
#[no_mangle]
static STATS_MASK: Global<u32> = Global::new(0);
/// Statistics lanes minus one (a power of two minus one; see `STATS_LANES`): a thread's calls
/// go to lane `tid & STATS_LANE_MASK`.
#[no_mangle]
static STATS_LANE_MASK: Global<u32> = Global::new(0);
/// Non-zero: only followed processes (`proc_state::FOLLOWED`) are measured.
#[no_mangle]
static FOLLOW_ONLY: Global<u32> = Global::new(0);
/// Non-zero: children forked by followed processes are followed too.
#[no_mangle]
static FOLLOW_FORKS: Global<u32> = Global::new(0);
/// Claims since the agent's last read at which a table raises its fill alarm (an eighth of
/// it; see `count_claim`).
#[no_mangle]
static STATS_ALARM_AT: Global<u32> = Global::new(0);
#[no_mangle]
static PROCS_ALARM_AT: Global<u32> = Global::new(0);

// ---- maps; the agent sets their sizes at load time ----

// Every map the agent reads is memory-mappable: it reads them without a syscall per entry,
// and without any `bpf()` call once attached.
#[map]
static SLOTS: Array<InFlight> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Open-addressing hash table of (process, syscall) statistics; see `stats_slot`.
#[map]
static STATS: Array<StatsSlot> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// A byte per `STATS` slot (eight to an entry), set when the slot is claimed and cleared by the
/// agent before it frees the slot: the agent finds the used slots in these few pages instead
/// of reading a key on every page of the table.
#[map]
static STATS_USED: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Open-addressing table of processes, by tgid; see `process_of`.
#[map]
static PROCS: Array<ProcSlot> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Overflow counters, one row of `counter::ROW` per CPU.
#[map]
static COUNTERS: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Per-CPU state of the syscall programs (see `current`).
#[map]
static CURRENT: PerCpuArray<Current> = PerCpuArray::with_max_entries(1, 0);
/// A recent pair of readings (CLOCK_MONOTONIC, scheduler clock) taken together on one CPU at
/// the end of a timed call that slept (refreshed every 50 ms at most): lets the agent place
/// the scheduler-clock times of `InFlight::first_off_ns` in monotonic time, to within a tick
/// (the scheduler clock read there may be that old). Index 0: monotonic (0 until the first
/// pair), 1: scheduler clock.
#[map]
static CLOCK_PAIR: Array<u64> = Array::with_max_entries(2, BPF_F_MMAPABLE);
/// Entries claimed since the agent's last read, per table (`fill::STATS`, `fill::PROCS`),
/// then per table whether its alarm was raised since: the agent zeroes them all as it starts
/// a read.
#[map]
static CLAIMS: Array<u64> = Array::with_max_entries(2 * fill::TABLES, BPF_F_MMAPABLE);
/// One record (the table, a `u32`) when a table's claims since the last read reach its alarm
/// (`STATS_ALARM_AT`, `PROCS_ALARM_AT`): a fork storm that would fill it before the agent's
/// next read wakes the agent at once, which otherwise sleeps until then.
#[map]
static FILL_ALARMS: RingBuf = RingBuf::with_byte_size(fill::ALARMS_BYTES, 0);
/// Invalidation counters of the per-CPU records of who is calling (see `caller`).
#[map]
static EPOCHS: Array<Epochs> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Sampling period minus one (a power of two minus one): 0 times every call. A map, not a
/// load-time constant, so that the agent calibrates with every call timed and then turns
/// sampling on.
#[map]
static SAMPLING: Array<u32> = Array::with_max_entries(SAMPLING_WORDS, 0);
/// Kernel stacks blocked calls went to sleep on (`SAMPLING[SAMPLING_WAIT_SITES]` on).
#[map]
static WAIT_STACKS: StackTrace = StackTrace::with_max_entries(WAIT_STACKS_ENTRIES, 0);
/// Each thread's call in flight whose wait site is recorded, by the index of its `SLOTS`
/// slot (apart from the slot: it keeps one cache line): see [`WaitOf`].
#[map]
static WAIT_STACK_OF: Array<WaitOf> = Array::with_max_entries(1, 0);
/// Calls and time asleep per (statistics entry, stack): where blocked calls waited.
#[map]
static WAIT_SITES: HashMap<WaitKey, WaitStats> = HashMap::with_max_entries(WAIT_SITES_ENTRIES, 0);
/// Calls and time asleep per (statistics entry, descriptor, file): what they waited on.
#[map]
static FD_WAITS: HashMap<FdWaitKey, WaitStats> = HashMap::with_max_entries(FD_WAITS_ENTRIES, 0);
/// Each thread's calls per syscall, with `THREAD_ROWS` (sized by the agent).
#[map]
static THREADS: HashMap<ThreadKey, ThreadStats> = HashMap::with_max_entries(1, 0);
/// Which native syscalls take a descriptor as their first argument: one bit per number
/// (`FD_CALLS_BITS`), set by the agent from its syscall table.
#[map]
static FD_CALLS: Array<u64> = Array::with_max_entries(FD_CALLS_BITS / 64, 0);

// The native and compat numbers of the calls that never return: x86_64 and i386, or arm64
// and arm EABI. (`bpf_target_arch` is the agent's target architecture, set by aya-build.)
#[cfg(not(bpf_target_arch = "aarch64"))]
mod never_return {
    use super::NR_COMPAT_FLAG;
    pub const NR_EXIT_64: u32 = 60;
    pub const NR_EXIT_GROUP_64: u32 = 231;
    pub const NR_EXIT_32: u32 = 1 | NR_COMPAT_FLAG;
    pub const NR_EXIT_GROUP_32: u32 = 252 | NR_COMPAT_FLAG;
}
#[cfg(bpf_target_arch = "aarch64")]
mod never_return {
    use super::NR_COMPAT_FLAG;
    pub const NR_EXIT_64: u32 = 93;
    pub const NR_EXIT_GROUP_64: u32 = 94;
    pub const NR_EXIT_32: u32 = 1 | NR_COMPAT_FLAG;
    pub const NR_EXIT_GROUP_32: u32 = 248 | NR_COMPAT_FLAG;
}
use never_return::*;

/// Whether the saved mode register of a call's `pt_regs` (see `REGS_MODE_OFFSET`) is a
/// 32-bit compat task's: `cs` is `__USER32_CS` on x86_64, `pstate` has `PSR_MODE32_BIT` on
/// arm64.
#[cfg(not(bpf_target_arch = "aarch64"))]
#[inline(always)]
fn is_compat(mode: u64) -> bool {
    mode == USER32_CS
}
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
fn is_compat(mode: u64) -> bool {
    mode & PSR_MODE32_BIT != 0
}

/// Counts a call the kernel side could not count, or a claim (see `counter`).
#[inline(always)]
fn bump(counter: u32) {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(value) = COUNTERS.get_ptr_mut(cpu * counter::ROW + counter) {
        atomic_add(unsafe { &mut *value }, 1u64);
    }
}

/// Counts a claim in `table` since the agent's last read; past `alarm_at`, raises the table's
/// alarm once (a compare-and-swap of its flag, which the agent clears at its read): one
/// record per read, however many CPUs claim at once. (Not a fetch-and-add: the programs are
/// built for BPF's first instruction set, which has none.)
#[inline(never)]
fn count_claim(table: u32, alarm_at: u32) {
    let (Some(claims), Some(raised)) = (CLAIMS.get_ptr_mut(table), CLAIMS.get_ptr_mut(table + fill::TABLES)) else {
        return;
    };
    let claims = unsafe { &mut *claims };
    atomic_add(claims, 1u64);
    let raised = unsafe { &mut *raised };
    // Past the alarm, a plain read of the flag first: a storm's claims do not all swap it.
    if unsafe { core::ptr::read_volatile(claims) } < u64::from(alarm_at)
        || unsafe { core::ptr::read_volatile(raised) } != 0
    {
        return;
    }
    let (_, first) =
        unsafe { atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(raised, 0, 1) };
    if first {
        // BPF_RB_FORCE_WAKEUP: the agent waits for this one record.
        let _ = FILL_ALARMS.output::<u32>(table, 2);
    }
}

#[inline(always)]
fn slot_of(tid: u32) -> Option<&'static mut InFlight> {
    let slot = SLOTS.get_ptr_mut(tid & SLOT_MASK.load())?;
    Some(unsafe { &mut *slot })
}

/// The slot of `tid` if that thread is inside a syscall we are measuring.
#[inline(always)]
fn in_flight(tid: u32) -> Option<&'static mut InFlight> {
    let slot = slot_of(tid)?;
    if slot.flags & flight::IN_FLIGHT != 0 && slot.tid == tid {
        Some(slot)
    } else {
        None
    }
}

/// The slot of `tid` if that thread is inside a syscall we are measuring, or on its way out
/// of one with its time pending ([`flight::EXITING`]).
#[inline(always)]
fn tracked(tid: u32) -> Option<&'static mut InFlight> {
    let slot = slot_of(tid)?;
    if slot.flags & (flight::IN_FLIGHT | flight::EXITING) != 0 && slot.tid == tid {
        Some(slot)
    } else {
        None
    }
}

/// A `u32` field of a task the kernel handed us (a trusted BTF pointer): a plain load, which
/// the verifier checks against the kernel's BTF. `offset` must be a load-time constant.
#[inline(always)]
unsafe fn task_u32(task: *const u8, offset: u32) -> u32 {
    *(task.add(offset as usize) as *const u32)
}

/// The per-CPU record of the syscall programs.
#[inline(always)]
fn current() -> Option<&'static mut Current> {
    Some(unsafe { &mut *CURRENT.get_ptr_mut(0)? })
}

/// Who is calling: the thread whose syscall has its `pt_regs` at `regs`, its process, and
/// the process's entry in the process table.
///
/// Asking the kernel (`bpf_get_current_pid_tgid`) is a helper call (a call and a return
/// through the CPU's mitigations, on every syscall twice), and the process table is a probe
/// of its own; each CPU remembers its last few callers by their `pt_regs` address instead
/// ([`KnownTask`]: an address no two live tasks share), and asks only for a task it has not
/// seen since the last task exit, exec or process rename anywhere ([`Epochs`]). It does not
/// depend on seeing every context switch: a record of who runs where kept by `sched_switch`
/// went stale under load (BENCHMARKS.md, step 9).
#[inline(always)]
fn caller(current: &mut Current, regs: u64) -> Option<Caller> {
    let epochs = EPOCHS.get_ptr(0)?;
    // The verifier refuses arithmetic on a kernel pointer (the hash below) but lets a
    // privileged program subtract two pointers: the distance from a fixed address names the
    // pt_regs as well as their address does.
    let regs_key = regs.wrapping_sub(epochs as u64);
    let epochs = unsafe { *epochs };
    let known = &mut current.known[known_task_index(regs_key)];
    if let Some(caller) = known.caller_of(regs_key, epochs) {
        return Some(caller);
    }
    // The epochs were read before asking: an exit in between makes this record stale at
    // once, never valid for too long.
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let (proc, flags) = process_of(tgid);
    let caller = Caller {
        tid: pid_tgid as u32,
        tgid,
        proc,
        flags,
    };
    *known = KnownTask::new(regs_key, epochs, caller);
    if current.regs_from_stack == 0 {
        learn_regs_from_stack(current, regs);
    }
    Some(caller)
}

/// Learns where a task's `pt_regs` are from the base of its kernel stack, from the caller's
/// (`regs`): the same distance for every task. Read back from a map value, the pointers are
/// plain numbers the verifier lets a program subtract.
#[inline(never)]
fn learn_regs_from_stack(current: &mut Current, regs: u64) {
    if TASK_FILES_OFFSET.load() == 0 {
        return;
    }
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let Ok(stack) = (unsafe { bpf_probe_read_kernel(task.add(TASK_STACK_OFFSET.load() as usize) as *const u64) })
    else {
        return;
    };
    current.scratch = regs;
    let regs = unsafe { core::ptr::read_volatile(&current.scratch) };
    current.regs_from_stack = regs.wrapping_sub(stack);
}

/// [`Caller::flags`] bit: the process is not followed, but its parent was when it forked (the
/// process table was full): its calls are counted as lost (`counter::FOLLOW_FULL`).
const CALLER_LOST_FOLLOW: u32 = 1 << 30;

/// The process table entry of `tgid` and its caller flags, for the process's first call
/// since the records were last invalidated. System-wide, a process gets an entry here at its
/// first call; a dead entry with its tgid is a pid reused, taken over as a new process (a new
/// epoch). Following, only followed processes have entries (from `follow` or their fork).
#[inline(never)]
fn process_of(tgid: u32) -> (u32, u32) {
    let following = FOLLOW_ONLY.load() != 0;
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    for _attempt in 0..2 {
        match find_process(tgid) {
            Found::Entry(index, state) if state & proc_state::DEAD == 0 => return (index, caller_flags(state)),
            Found::Entry(index, state) if !following => {
                // A dead process's pid, reused.
                let revived = (state & proc_state::EPOCH_MASK) + proc_state::EPOCH_ONE | tgid as u64;
                if claim_process(index, state, revived, unsafe { group_leader(task) }) {
                    return (index, caller_flags(revived));
                }
            }
            Found::Entry(..) => break,
            Found::Free(index, state) if !following => {
                if claim_process(index, state, tgid as u64, unsafe { group_leader(task) }) {
                    return (index, caller_flags(tgid as u64));
                }
            }
            Found::Free(..) => break,
            Found::Full => {
                if !following {
                    bump(counter::PROC_FULL);
                }
                break;
            }
        }
    }
    if following && parent_followed(task) {
        return (NO_PROC, CALLER_LOST_FOLLOW);
    }
    (NO_PROC, 0)
}

/// What a search of the process table found.
enum Found {
    /// The entry of the tgid, and its state.
    Entry(u32, u64),
    /// No entry: the first free one on the tgid's probe sequence, and its state.
    Free(u32, u64),
    /// No entry, and no free one within `PROC_PROBES`.
    Full,
}

/// The entry of `tgid`: the first on its probe sequence, searched whole, past empty entries
/// too, so that no interleaving with the agent can hide an entry behind an empty one. (When
/// the agent made freed entries empty again, one emptied while a search went past it hid the
/// entry that search then claimed beyond it from every later search: a followed child's calls
/// could be lost.) Only a miss reads all `PROC_PROBES`: a process's first call, a fork.
#[inline(always)]
fn find_process(tgid: u32) -> Found {
    let mask = PROCS_MASK.load();
    let start = proc_hash(tgid, mask);
    let mut free = None;
    for probe in 0..PROC_PROBES {
        let index = (start + probe) & mask;
        let Some(entry) = PROCS.get_ptr(index) else {
            break;
        };
        let state = unsafe { core::ptr::read_volatile(&(*entry).state) };
        if state == PROC_EMPTY || state == PROC_FREED {
            free = free.or(Some((index, state)));
        } else if proc_state::tgid(state) == tgid {
            return Found::Entry(index, state);
        }
    }
    match free {
        Some((index, state)) => Found::Free(index, state),
        None => Found::Full,
    }
}

/// Takes entry `index` from `expected` to `state` with a compare-and-swap, and fills in the
/// name (of `task`) and cgroup of the process claiming it.
#[inline(always)]
fn claim_process(index: u32, expected: u64, state: u64, task: *const u8) -> bool {
    let Some(entry) = PROCS.get_ptr_mut(index) else {
        return false;
    };
    let entry = unsafe { &mut *entry };
    let (_, claimed) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(&mut entry.state, expected, state)
    };
    if claimed {
        entry.comm = unsafe { comm_of(task) };
        entry.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        count_claim(fill::PROCS, PROCS_ALARM_AT.load());
    }
    claimed
}

/// The caller flags of a process table state.
#[inline(always)]
fn caller_flags(state: u64) -> u32 {
    let followed = if state & proc_state::FOLLOWED != 0 {
        CALLER_FOLLOWED
    } else {
        0
    };
    (proc_state::epoch(state) & KEY_EPOCH_MASK) | followed
}

/// The main thread of `task`'s process.
#[inline(always)]
unsafe fn group_leader(task: *const u8) -> *const u8 {
    *(task.add(TASK_GROUP_LEADER_OFFSET.load() as usize) as *const *const u8)
}

/// `task->comm`.
#[inline(always)]
unsafe fn comm_of(task: *const u8) -> [u8; 16] {
    *(task.add(TASK_COMM_OFFSET.load() as usize) as *const [u8; 16])
}

/// Whether the parent of the current task's process is followed.
#[inline(always)]
fn parent_followed(task: *const u8) -> bool {
    let parent_tgid = unsafe {
        let parent = *(task.add(TASK_REAL_PARENT_OFFSET.load() as usize) as *const *const u8);
        task_u32(parent, TASK_TGID_OFFSET.load())
    };
    matches!(find_process(parent_tgid), Found::Entry(_, state) if state & proc_state::FOLLOWED != 0)
}

/// Invalidates every CPU's [`KnownTask`] records: a task exited (its stack may be reused) or
/// exec'd (its tid may have changed), or a process's epoch moved on.
#[inline(always)]
fn forget_known_tasks() {
    if let Some(epochs) = EPOCHS.get_ptr_mut(0) {
        atomic_add(unsafe { &mut (*epochs).exits }, 1u64);
    }
}

/// The scheduler clock of the CPU `task` is on: three plain loads instead of a clock read,
/// which is a helper call and then some. In `sched_switch` the scheduler has just updated it:
/// it is now. Elsewhere it is as of the CPU's last scheduler event or tick (at most a tick
/// old). Without the offsets, `bpf_ktime_get_ns`.
#[inline(always)]
unsafe fn scheduler_clock_ns(task: *const u8) -> u64 {
    let cfs_rq_offset = TASK_CFS_RQ_OFFSET.load();
    if cfs_rq_offset == 0 {
        return bpf_ktime_get_ns();
    }
    let cfs_rq = *(task.add(cfs_rq_offset as usize) as *const *const u8);
    let rq = *(cfs_rq.add(CFS_RQ_RQ_OFFSET.load() as usize) as *const *const u8);
    *(rq.add(RQ_CLOCK_OFFSET.load() as usize) as *const u64)
}

/// How old the pair in `CLOCK_PAIR` may get. The two clocks drift apart only slowly (NTP
/// slews the monotonic clock, not the scheduler's); rewriting one cache line shared by all
/// CPUs on every timed call that slept would cost more than it buys.
const CLOCK_PAIR_REFRESH_NS: u64 = 50_000_000;

/// Records `(monotonic_ns, the scheduler clock now)` in `CLOCK_PAIR`, unless the pair there
/// is recent.
#[inline(always)]
fn remember_clock_pair(monotonic_ns: u64) {
    let (Some(monotonic), Some(scheduler)) = (CLOCK_PAIR.get_ptr_mut(0), CLOCK_PAIR.get_ptr_mut(1)) else {
        return;
    };
    unsafe {
        // saturating: another CPU may have just written a slightly later reading.
        if monotonic_ns.saturating_sub(*monotonic) < CLOCK_PAIR_REFRESH_NS {
            return;
        }
        let task = bpf_get_current_task_btf() as *const u8;
        *scheduler = scheduler_clock_ns(task);
        *monotonic = monotonic_ns;
    }
}

/// When `task` was put on a runqueue, on the scheduler clock; 0 if it is not queued or
/// unknown.
#[inline(always)]
unsafe fn last_queued_ns(task: *const u8) -> u64 {
    let offset = TASK_LAST_QUEUED_OFFSET.load();
    if offset == 0 || TASK_CFS_RQ_OFFSET.load() == 0 {
        return 0;
    }
    *(task.add(offset as usize) as *const u64)
}

/// The in-flight flags of a new call of the (process, syscall) whose entry has seen `calls`
/// calls: whether it is timed, and if it was sampled, the sampling period minus one (its
/// weight minus one) in the high half.
#[inline(always)]
fn timing(current: &mut Current, calls: u64) -> u32 {
    if calls < TIMED_FIRST_CALLS {
        return flight::IN_FLIGHT | flight::TIMED | flight::FIRST_CALLS;
    }
    let mask = SAMPLING.get(0).copied().unwrap_or(0);
    if mask == 0 {
        return flight::IN_FLIGHT | flight::TIMED;
    }
    let mut rng = current.rng;
    if rng == 0 {
        rng = unsafe { bpf_get_prandom_u32() } | 1; // once per CPU
    }
    rng = xorshift32(rng);
    current.rng = rng;
    if (rng >> 8) & mask == 0 {
        // The weight rides in the high half of the flags: it must be the one sampled with.
        flight::IN_FLIGHT | flight::TIMED | flight::SAMPLED | (mask << 16)
    } else {
        flight::IN_FLIGHT
    }
}

#[inline(always)]
fn atomic_add<T: Copy>(target: &mut T, value: T) {
    unsafe { atomic_xadd::<T, T, { AtomicOrdering::Relaxed }>(target, value) };
}

// sys_enter(struct pt_regs *regs, long id)
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    let Some(current) = current() else {
        return 0;
    };
    let Some(caller) = caller(current, ctx.arg(0)) else {
        return 0;
    };
    if FOLLOW_ONLY.load() != 0 && !caller.followed() {
        if caller.flags & CALLER_LOST_FOLLOW != 0 {
            bump(counter::FOLLOW_FULL);
        }
        return 0;
    }
    let tid = caller.tid;
    let Some(slot) = slot_of(tid) else {
        return 0;
    };
    if slot.flags & flight::EXITING != 0 {
        // The last call of this thread (or of one sharing its slot) went back to user mode
        // without switching: it had no wait on its way out.
        finish_exiting(slot, NO_EXIT_WAIT);
    }
    if slot.flags & flight::IN_FLIGHT != 0 {
        if slot.tid != tid {
            bump(counter::SLOT_COLLISION);
            return 0;
        }
        // Its previous call is still here: its sys_exit did not find it.
        bump(counter::EXIT_UNSEEN);
    }
    let id: i64 = ctx.arg(1);
    let mut nr = id as u32;
    // A 32-bit task's calls index its ABI's table. (On x86_64 a 64-bit task issuing
    // `int 0x80` is not told apart: that would need a helper call on every syscall.)
    let mode_offset = REGS_MODE_OFFSET.load();
    if mode_offset != 0 {
        let regs: *const u8 = ctx.arg(0);
        if is_compat(unsafe { *(regs.add(mode_offset as usize) as *const u64) }) {
            nr |= NR_COMPAT_FLAG;
        }
    }
    if nr & NR_KEY_BITS != 0 {
        nr = (nr & (NR_COMPAT_FLAG | NR_X32_FLAG)) | NR_OUT_OF_RANGE;
    }
    let key = StatsKey { tgid: caller.tgid, nr }.packed(tid & STATS_LANE_MASK.load(), caller.epoch());
    let Some((stats_index, entry)) = stats_slot(key, caller.proc) else {
        return 0;
    };
    let flags = timing(current, entry.stats.calls);
    slot.tid = tid;
    slot.key = key;
    slot.stats_index = stats_index;
    // `state`, `blocked_ns` and `runqueue_ns` are left as they are: they mean something only
    // once the call has left the CPU (`flight::SWITCHED`), and `sched_switch` resets them
    // then: three stores fewer on every call (BENCHMARKS.md, step 12).
    slot.flags = flags;
    if flags & flight::TIMED != 0 {
        slot.enter_ns = unsafe { bpf_ktime_get_ns() };
    }
    0
}

// sys_exit(struct pt_regs *regs, long ret)
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    // All the way out needs is the thread id (its slot holds the rest): one helper call,
    // or where calls and returns are costly, this CPU's record of its callers.
    let tid = if TID_BY_HELPER.load() != 0 {
        bpf_get_current_pid_tgid() as u32
    } else {
        match current().and_then(|current| caller(current, ctx.arg(0))) {
            Some(caller) => caller.tid,
            None => return 0,
        }
    };
    let Some(slot) = in_flight(tid) else {
        return 0;
    };
    let ret: i64 = ctx.arg(1);
    let regs: *const u8 = ctx.arg(0);
    record(slot, ret, must_reschedule().then_some(regs));
    0
}

/// Whether the current thread will call the scheduler before it is back in user mode: a
/// task was woken that should run before it, or its time slice ran out, during the call. On
/// kernels without in-kernel preemption (most distribution kernels) that is where a call's
/// wait for a CPU happens, after `sys_exit`.
#[inline(always)]
fn must_reschedule() -> bool {
    let mask = NEED_RESCHED_MASK.load();
    if mask == 0 {
        return false;
    }
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let thread_flags = unsafe { *(task.add(TASK_TI_FLAGS_OFFSET.load() as usize) as *const u64) };
    thread_flags & mask != 0
}

/// Adds the call in `slot`, returning `ret` now, to its statistics and frees the slot. With
/// `exiting` (the call's `pt_regs`: the thread must reschedule on its way out), the call is
/// counted now and its time is kept in the slot until the thread is back on a CPU
/// ([`flight::EXITING`]).
#[inline(always)]
fn record(slot: &mut InFlight, ret: i64, exiting: Option<*const u8>) {
    let flags = slot.flags;
    slot.flags = 0;
    // The clock first: what follows is the profiler's own work, and the errno count (failed
    // calls only) would otherwise sit inside the window of failed calls alone - among them the
    // calibration's call without a handler, whose window is subtracted from every call's
    // handler time.
    let now_ns = if flags & flight::TIMED != 0 {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    let Some((index, entry)) = entry_of(slot) else {
        return;
    };
    let stats = &mut entry.stats;
    atomic_add(&mut stats.calls, 1u64);
    let failed = (-4095..0).contains(&ret);
    if failed {
        atomic_add(&mut stats.errors, 1u64);
        count_errno(stats, (-ret) as u32);
    }
    if THREAD_ROWS.load() != 0 {
        count_thread_call(slot, failed);
    }
    if flags & (flight::TIMED | flight::SWITCHED) == 0 && exiting.is_none() {
        return;
    }
    let (blocked_ns, runqueue_ns) = if flags & flight::SWITCHED != 0 {
        (slot.blocked_ns, slot.runqueue_ns)
    } else {
        (0, 0)
    };
    let handler_ns = if flags & flight::TIMED != 0 {
        if stats.first_enter_ns == 0 || slot.enter_ns < stats.first_enter_ns {
            stats.first_enter_ns = slot.enter_ns;
        }
        let wall_ns = now_ns.saturating_sub(slot.enter_ns);
        if flags & flight::SWITCHED != 0 {
            remember_clock_pair(now_ns);
        }
        wall_ns.saturating_sub(blocked_ns + runqueue_ns)
    } else {
        0
    };
    if let Some(regs) = exiting {
        // See `InFlight::enter_ns` and `first_off_ns`: what they hold once EXITING.
        slot.stats_index = index;
        slot.enter_ns = handler_ns;
        slot.first_off_ns = regs as u64;
        slot.blocked_ns = blocked_ns;
        slot.runqueue_ns = runqueue_ns;
        slot.state = thread_state::RUNNING;
        slot.flags = (flags & !flight::IN_FLIGHT) | flight::EXITING;
        return;
    }
    add_wait_site(slot.key, slot.tid, flags, blocked_ns);
    add_time(stats, flags, handler_ns, blocked_ns, runqueue_ns);
    add_thread_time(slot, blocked_ns, runqueue_ns);
}

/// Counts a call of the current thread (in `slot`) in its per-thread row, creating it with
/// the thread's name.
#[inline(never)]
fn count_thread_call(slot: &InFlight, failed: bool) {
    let key = ThreadKey {
        tid: slot.tid,
        nr: StatsKey::unpack(slot.key).nr,
    };
    if let Some(row) = THREADS.get_ptr_mut(&key) {
        let row = unsafe { &mut *row };
        atomic_add(&mut row.calls, 1u64);
        if failed {
            atomic_add(&mut row.errors, 1u64);
        }
        return;
    }
    let row = ThreadStats {
        tgid: StatsKey::unpack(slot.key).tgid,
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or_default(),
        calls: 1,
        errors: u64::from(failed),
        blocked_ns: 0,
        runqueue_ns: 0,
    };
    // Only this thread creates its rows: no other CPU can have added it meanwhile.
    if THREADS.insert(&key, &row, 0).is_err() {
        bump(counter::THREADS_LOST);
    }
}

/// Adds a finished call's time off the CPU to its thread's row (counted at its `sys_exit`).
#[inline(always)]
fn add_thread_time(slot: &InFlight, blocked_ns: u64, runqueue_ns: u64) {
    if THREAD_ROWS.load() == 0 || blocked_ns + runqueue_ns == 0 {
        return;
    }
    let key = ThreadKey {
        tid: slot.tid,
        nr: StatsKey::unpack(slot.key).nr,
    };
    if let Some(row) = THREADS.get_ptr_mut(&key) {
        let row = unsafe { &mut *row };
        atomic_add(&mut row.blocked_ns, blocked_ns);
        atomic_add(&mut row.runqueue_ns, runqueue_ns);
    }
}

/// The statistics entry of the call in `slot`, and its index. The agent frees the entries of
/// an epoch once it has ended (the process exec'd, renamed itself or exited): a call that
/// straddled the change finds its entry gone, and takes a fresh one for the old epoch, which
/// the agent folds next time.
#[inline(always)]
fn entry_of(slot: &InFlight) -> Option<(u32, &'static mut StatsSlot)> {
    let entry = unsafe { &mut *STATS.get_ptr_mut(slot.stats_index)? };
    if unsafe { core::ptr::read_volatile(&entry.key) } == slot.key {
        Some((slot.stats_index, entry))
    } else {
        stats_slot(slot.key, NO_PROC)
    }
}

/// [`finish_exiting`]'s `exit_wait_ns` of a call that went back to user mode without
/// switching (or went to sleep on its way out: a stop signal's wait is not the call's). Not
/// an `Option`: a BPF-to-BPF call would pass its value uninitialised, which the verifier
/// refuses.
const NO_EXIT_WAIT: u64 = u64::MAX;

/// Adds the time of a call whose way out is over ([`flight::EXITING`]): `exit_wait_ns`, its
/// wait for a CPU on the way out, or [`NO_EXIT_WAIT`].
#[inline(never)]
fn finish_exiting(slot: &mut InFlight, exit_wait_ns: u64) {
    let mut flags = slot.flags & !flight::EXITING;
    slot.flags = 0;
    let Some((_, entry)) = entry_of(slot) else {
        return;
    };
    let mut runqueue_ns = slot.runqueue_ns;
    if exit_wait_ns != NO_EXIT_WAIT {
        // It left the CPU: like any call that did, it counts once, with its own times.
        flags |= flight::SWITCHED;
        runqueue_ns += exit_wait_ns;
    }
    if flags & (flight::TIMED | flight::SWITCHED) == 0 {
        return; // a short call sampling did not time: the sampled ones stand for it
    }
    add_wait_site(slot.key, slot.tid, flags, slot.blocked_ns);
    add_time(&mut entry.stats, flags, slot.enter_ns, slot.blocked_ns, runqueue_ns);
    add_thread_time(slot, slot.blocked_ns, runqueue_ns);
}

/// Adds one call's time to its statistics. `flags`: the call's [`flight`] bits, `SWITCHED`
/// if it left the CPU during the call or on its way out; `timed_handler_ns`: its handler time
/// if it was `TIMED`.
#[inline(always)]
fn add_time(stats: &mut SyscallStats, flags: u32, timed_handler_ns: u64, blocked_ns: u64, runqueue_ns: u64) {
    let mut weight = 1u32;
    let handler_ns = if flags & flight::TIMED != 0 {
        if flags & flight::SWITCHED != 0 {
            atomic_add(&mut stats.switched_handler_ns, timed_handler_ns);
            atomic_add(&mut stats.switched_timed_calls, 1u64);
            // Racy reads of the two sums: another CPU's call may be half added; a mean that
            // is one call off is as good an estimate.
            let mean_ns = stats.switched_handler_ns / stats.switched_timed_calls.max(1);
            stats.switched_handler_mean_ns = mean_ns.min(u32::MAX as u64) as u32;
        } else if flags & flight::SAMPLED != 0 {
            weight = (flags >> 16) + 1;
            atomic_add(&mut stats.extrapolated_ns, timed_handler_ns * (weight - 1) as u64);
            let threads = running_threads();
            if threads > stats.max_threads {
                stats.max_threads = threads;
            }
        }
        timed_handler_ns
    } else {
        // Left the CPU, not timed: its time off the CPU is exact; for its time on the CPU
        // take the mean of the timed calls of the same kind that left the CPU.
        u64::from(stats.switched_handler_mean_ns)
    };
    let wall_ns = handler_ns + blocked_ns + runqueue_ns;
    atomic_add(&mut stats.handler_ns, handler_ns * weight as u64);
    if blocked_ns != 0 {
        atomic_add(&mut stats.blocked_ns, blocked_ns);
    }
    if runqueue_ns != 0 {
        atomic_add(&mut stats.runqueue_ns, runqueue_ns);
    }
    if wall_ns > stats.max_ns {
        stats.max_ns = wall_ns;
    }
    // black_box: the compiler can prove the bound, the verifier cannot follow its proof
    // (ctlz is open-coded on BPF); keep an explicit check the verifier sees.
    let bucket = core::hint::black_box(hist_bucket(wall_ns));
    if bucket < HIST_BUCKETS {
        atomic_add(&mut stats.hist[bucket], weight);
    }
}

/// The threads of the current task's process still running (`signal->live`). A sampled call
/// is always counted by its own thread (in `sys_exit`, or as the thread enters its next call
/// or exits): the current task is the caller.
#[inline(always)]
fn running_threads() -> u32 {
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let live = unsafe {
        let signal = *(task.add(TASK_SIGNAL_OFFSET.load() as usize) as *const *const u8);
        *(signal.add(SIGNAL_LIVE_OFFSET.load() as usize) as *const i32)
    };
    live.max(1) as u32
}

/// The statistics slot of the packed key `packed` (of the process at `proc` in the process
/// table), and its index: linear probing from the key's hash over at most `STATS_PROBES`
/// slots. The key is looked for past freed slots (the agent frees, never empties, so an
/// empty slot ends every chain); only a key not found claims the first freed or empty slot it
/// passed, with a compare-and-swap, and writes the process's name and cgroup in it. Claiming
/// the first freed slot at once would put a key in two slots whenever a slot before its own
/// was freed - half a busy table went that way. Two CPUs claiming the same new key at once
/// can still give it two slots (the agent adds slots up by key); a lost race for a free slot
/// is retried once.
#[inline(always)]
fn stats_slot(packed: u64, proc: u32) -> Option<(u32, &'static mut StatsSlot)> {
    let mask = STATS_MASK.load();
    let start = stats_hash(packed, mask);
    for _attempt in 0..2 {
        let mut free_index = 0u32;
        let mut free_key = SLOT_FREED;
        let mut found_free = false;
        for probe in 0..STATS_PROBES {
            let index = (start + probe) & mask;
            let slot = unsafe { &mut *STATS.get_ptr_mut(index)? };
            let current = unsafe { core::ptr::read_volatile(&slot.key) };
            if current == packed {
                return Some((index, slot));
            }
            if (current == SLOT_EMPTY || current == SLOT_FREED) && !found_free {
                found_free = true;
                free_index = index;
                free_key = current;
            }
            if current == SLOT_EMPTY {
                break;
            }
        }
        if !found_free {
            break;
        }
        let slot = unsafe { &mut *STATS.get_ptr_mut(free_index)? };
        let (previous, claimed) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                &mut slot.key,
                free_key,
                packed,
            )
        };
        if claimed {
            name_slot(slot, proc);
            mark_used(free_index);
            count_claim(fill::STATS, STATS_ALARM_AT.load());
            return Some((free_index, slot));
        }
        if previous == packed {
            return Some((free_index, slot));
        }
    }
    bump(counter::STATS_FULL);
    None
}

/// Marks statistics slot `index` used in `STATS_USED` (after claiming its key: a reader that
/// sees the mark may still see the slot empty, and then finds it at its next read).
#[inline(always)]
fn mark_used(index: u32) {
    if let Some(word) = STATS_USED.get_ptr_mut(index / 8) {
        unsafe { core::ptr::write_volatile((word as *mut u8).add((index & 7) as usize), 1) };
    }
}

/// Writes the process's name and cgroup into a statistics slot it has just claimed: from its
/// process table entry, or for a process without one, the calling thread's.
#[inline(never)]
fn name_slot(slot: &mut StatsSlot, proc: u32) {
    match PROCS.get_ptr(proc) {
        Some(entry) => unsafe {
            slot.comm = (*entry).comm;
            slot.cgroup_id = (*entry).cgroup_id;
        },
        None => {
            slot.comm = bpf_get_current_comm().unwrap_or([0; 16]);
            slot.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        }
    }
}

/// Counts an error by errno in the first `ERRNO_SLOTS` distinct errnos of the entry (each
/// claimed with a compare-and-swap), or as another errno.
#[inline(always)]
fn count_errno(stats: &mut SyscallStats, errno: u32) {
    for i in 0..ERRNO_SLOTS {
        let errno = errno as u64;
        let code = unsafe { core::ptr::read_volatile(&stats.errno_codes[i]) };
        let mine = code == errno
            || code == 0 && {
                let (previous, claimed) = unsafe {
                    atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                        &mut stats.errno_codes[i],
                        0,
                        errno,
                    )
                };
                claimed || previous == errno
            };
        if mine {
            atomic_add(&mut stats.errno_counts[i], 1u32);
            return;
        }
    }
    atomic_add(&mut stats.errno_other, 1u64);
}

/// The thread's `WAIT_STACK_OF` entry.
#[inline(always)]
fn wait_stack_of(tid: u32) -> Option<&'static mut WaitOf> {
    WAIT_STACK_OF
        .get_ptr_mut(tid & SLOT_MASK.load())
        .map(|entry| unsafe { &mut *entry })
}

/// Records the kernel stack a thread goes to sleep on in its call, when wait sites are on:
/// decided once per call, at its first sleep; taken for the first calls of its statistics
/// entry, then for 1 in [`WAIT_SITE_SAMPLE_EVERY`] - or, for one process alone
/// (`SAMPLING[SAMPLING_WAIT_SITES]` names it), for every call. A call whose stack is not taken
/// touches nothing but its own flags.
#[inline(always)]
fn take_wait_stack(ctx: &BtfTracePointContext, slot: &mut InFlight, task: *const u8) {
    if slot.flags & flight::STACK_DECIDED != 0 {
        return;
    }
    // One word says whether, and for which processes (see `SAMPLING_WAIT_SITES`).
    let recording = SAMPLING.get(SAMPLING_WAIT_SITES).copied().unwrap_or(0);
    if recording == 0 {
        return;
    }
    slot.flags |= flight::STACK_DECIDED;
    let mut sampled = 0;
    let Some(current) = current() else {
        return;
    };
    let only = recording >> 1;
    if only != 0 {
        if StatsKey::unpack(slot.key).tgid != only {
            return;
        }
    } else if slot.flags & flight::FIRST_CALLS == 0 {
        let mut rng = current.rng;
        if rng == 0 {
            rng = unsafe { bpf_get_prandom_u32() } | 1;
        }
        rng = xorshift32(rng);
        current.rng = rng;
        if (rng >> 8) & (WAIT_SITE_SAMPLE_EVERY - 1) != 0 {
            return;
        }
        sampled = WAIT_STACK_SAMPLED;
    }
    let Some(stack) = wait_stack_of(slot.tid) else {
        return;
    };
    match ctx.get_stackid(&WAIT_STACKS, 0) {
        Ok(id) => {
            stack.stack = u64::from(id as u32 | sampled);
            note_file(current.regs_from_stack, task, slot.key, stack);
            slot.flags |= flight::STACK_TAKEN;
        }
        // A collision in the stack table, or it is full.
        Err(_) => bump(counter::WAIT_SITES_LOST),
    }
}

/// Notes in `wait` the descriptor and file a call going to sleep (of statistics entry `key`,
/// made by `task`, the current task) works on, if its syscall takes one first (`FD_CALLS`);
/// `regs_from_stack`: see [`Current::regs_from_stack`]. Only for calls whose stack is taken:
/// a handful of reads beside the stack's microsecond.
#[inline(always)]
fn note_file(regs_from_stack: u64, task: *const u8, key: u64, wait: &mut WaitOf) {
    wait.fd = NO_FD;
    let nr = StatsKey::unpack(key).nr;
    if nr >= FD_CALLS_BITS || regs_from_stack == 0 {
        return; // ia32 and x32 numbers carry flag bits above
    }
    match FD_CALLS.get(nr / 64) {
        Some(bits) if bits >> (nr % 64) & 1 != 0 => {}
        _ => return,
    }
    let read_u64 = |address: u64| unsafe { bpf_probe_read_kernel(address as *const u64) }.ok();
    let task = task as u64;
    let Some(stack) = read_u64(task + TASK_STACK_OFFSET.load() as u64) else {
        return;
    };
    let Some(fd) = read_u64(stack.wrapping_add(regs_from_stack) + REGS_ARG0_OFFSET.load() as u64) else {
        return;
    };
    let Some(files) = read_u64(task + TASK_FILES_OFFSET.load() as u64) else {
        return;
    };
    let Some(fdt) = read_u64(files + FILES_FDT_OFFSET.load() as u64) else {
        return;
    };
    let Ok(max_fds) = (unsafe { bpf_probe_read_kernel((fdt + FDT_MAX_FDS_OFFSET.load() as u64) as *const u32) }) else {
        return;
    };
    if fd as u32 as u64 != fd || fd as u32 >= max_fds {
        return;
    }
    let Some(file) = read_u64(fdt + FDT_FD_OFFSET.load() as u64).and_then(|array| read_u64(array + fd * 8)) else {
        return;
    };
    let Some(inode) = read_u64(file + FILE_INODE_OFFSET.load() as u64) else {
        return;
    };
    let (Some(ino), Ok(mode)) = (read_u64(inode + INODE_INO_OFFSET.load() as u64), unsafe {
        bpf_probe_read_kernel((inode + INODE_MODE_OFFSET.load() as u64) as *const u16)
    }) else {
        return;
    };
    if file == 0 || inode == 0 {
        return;
    }
    wait.fd = fd as u32;
    wait.ino = ino;
    wait.mode = u32::from(mode);
}

/// Adds a finished call that slept (`blocked_ns`) and whose stack was taken (`flags`: its
/// [`flight`] bits) to the wait site of its statistics entry (`key`), its stack and waker
/// (in its thread's `WAIT_STACK_OF` entry; `tid`).
#[inline(always)]
fn add_wait_site(key: u64, tid: u32, flags: u32, blocked_ns: u64) {
    if flags & flight::STACK_TAKEN == 0 || blocked_ns == 0 {
        return;
    }
    let Some(stack) = wait_stack_of(tid) else {
        return;
    };
    let (stack_id, waker_tgid) = (stack.stack as u32, (stack.stack >> 32) as u32);
    let weight = if stack_id & WAIT_STACK_SAMPLED != 0 {
        u64::from(WAIT_SITE_SAMPLE_EVERY)
    } else {
        1
    };
    let added = WaitStats {
        calls: weight,
        blocked_ns: blocked_ns * weight,
    };
    let site = WaitKey {
        key,
        stack_id: stack_id & !WAIT_STACK_SAMPLED,
        waker_tgid,
    };
    match add_wait(&WAIT_SITES, &site, &added) {
        None => bump(counter::WAIT_SITES_LOST),
        Some(true) => bump(counter::WAIT_SITES_ADDED),
        Some(false) => {}
    }
    if stack.fd != NO_FD {
        let on = FdWaitKey {
            key,
            ino: stack.ino,
            fd: stack.fd,
            mode: stack.mode,
        };
        match add_wait(&FD_WAITS, &on, &added) {
            None => bump(counter::WAIT_SITES_LOST),
            Some(true) => bump(counter::FD_WAITS_ADDED),
            Some(false) => {}
        }
    }
}

/// Adds `added` to `key`'s entry of `map`, creating it: whether it created it, or `None` if
/// the map is full.
#[inline(always)]
fn add_wait<K>(map: &HashMap<K, WaitStats>, key: &K, added: &WaitStats) -> Option<bool> {
    for _attempt in 0..2 {
        if let Some(stats) = map.get_ptr_mut(key) {
            let stats = unsafe { &mut *stats };
            atomic_add(&mut stats.calls, added.calls);
            atomic_add(&mut stats.blocked_ns, added.blocked_ns);
            return Some(false);
        }
        // BPF_NOEXIST: another CPU may have added it meanwhile; then add to it.
        if map.insert(key, added, 1).is_ok() {
            return Some(true);
        }
    }
    None
}

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
//              unsigned int prev_state); runs on the CPU switching.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let preempt: u64 = ctx.arg(0);
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let pid_offset = TASK_PID_OFFSET.load();
    let next_tid = unsafe { task_u32(next, pid_offset) };
    let prev_slot = tracked(unsafe { task_u32(prev, pid_offset) });
    let next_slot = tracked(next_tid);
    if prev_slot.is_none() && next_slot.is_none() {
        return 0;
    }
    let now = unsafe { scheduler_clock_ns(prev) };
    // Preempted, or gave up the CPU while still TASK_RUNNING: it waits for a CPU. Any other
    // state means it went to sleep.
    let prev_runnable = preempt & 1 != 0 || prev_state as u32 == 0;
    if let Some(slot) = prev_slot {
        if slot.flags & flight::EXITING != 0 {
            if prev_runnable && slot.state == thread_state::RUNNING && still_returning(slot, prev) {
                slot.off_since_ns = now;
                slot.state = thread_state::RUNNABLE;
            } else {
                finish_exiting(slot, NO_EXIT_WAIT);
            }
        } else {
            if slot.flags & flight::SWITCHED == 0 {
                slot.flags |= flight::SWITCHED;
                slot.first_off_ns = now;
                slot.blocked_ns = 0;
                slot.runqueue_ns = 0;
            }
            if !prev_runnable {
                take_wait_stack(&ctx, slot, prev);
            }
            slot.off_since_ns = now;
            slot.state = if prev_runnable {
                thread_state::RUNNABLE
            } else {
                thread_state::SLEEPING
            };
        }
    }
    if let Some(slot) = next_slot {
        if slot.flags & flight::EXITING != 0 {
            if slot.state == thread_state::RUNNABLE {
                let off_cpu_ns = now.saturating_sub(slot.off_since_ns);
                finish_exiting(slot, off_cpu_ns);
            }
        } else if slot.flags & flight::SWITCHED != 0 && slot.state != thread_state::RUNNING {
            // `state` is stale until the call has left the CPU once.
            let off_cpu_ns = now.saturating_sub(slot.off_since_ns);
            // Since it was queued (woken, or preempted) it waited for a CPU; before that it
            // was asleep. The scheduler clears last_queued after this tracepoint.
            let queued_ns = unsafe { last_queued_ns(next) };
            let runqueue_ns = if queued_ns != 0 {
                now.saturating_sub(queued_ns.max(slot.off_since_ns)).min(off_cpu_ns)
            } else if slot.state == thread_state::RUNNABLE {
                // Preempted, and the scheduler's queue time unknown (no CONFIG_SCHED_INFO or
                // no way to its clock): all of it was a wait for a CPU.
                off_cpu_ns
            } else {
                0
            };
            slot.runqueue_ns += runqueue_ns;
            slot.blocked_ns += off_cpu_ns - runqueue_ns;
            slot.state = thread_state::RUNNING;
        }
    }
    0
}

/// Whether a thread whose call returned with a reschedule pending ([`flight::EXITING`]) is
/// still on its way out of that call: its `pt_regs` still hold the call's number. If the
/// scheduler kept it on the CPU, it went back to user mode, and the next entry to the kernel
/// rewrote them before this switch: an interrupt or exception (-1, a vector or an error code;
/// a rare one that matches the number lets a wait in user mode count) or its next call
/// (which finishes the pending one first).
/// `task` is the thread being switched out (a trusted pointer).
#[inline(always)]
fn still_returning(slot: &InFlight, task: *const u8) -> bool {
    let orig_ax_offset = REGS_ORIG_AX_OFFSET.load() as usize;
    // The low 32 bits: arm64's `syscallno` is an `s32` (x86_64's `orig_ax` a `long`), and
    // the verifier refuses a load past the end of the member.
    let number = if HAS_TASK_PT_REGS.load() != 0 {
        // A trusted pointer to the task's registers: a plain load, no copy.
        let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
        if regs.is_null() {
            return false;
        }
        unsafe { *(regs.add(orig_ax_offset) as *const u32) }
    } else {
        let regs = slot.first_off_ns as *const u8;
        match unsafe { bpf_probe_read_kernel(regs.add(orig_ax_offset) as *const u32) } {
            Ok(number) => number,
            Err(_) => return false,
        }
    };
    number == StatsKey::unpack(slot.key).nr & !NR_COMPAT_FLAG
}

// sched_waking(struct task_struct *p): runs in the waker (or in whatever task an interrupt
// found on the CPU), before the wakee is queued. Attached only while wait sites are recorded.
// A call asleep with its stack taken remembers the waker's process (0 for an interrupt: see
// `interrupted_in_user_mode`); the last one counts.
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
    match tracked(tid) {
        Some(slot) if slot.flags & flight::STACK_TAKEN != 0 && slot.state == thread_state::SLEEPING => {}
        _ => return 0,
    }
    let Some(stack) = wait_stack_of(tid) else {
        return 0;
    };
    let waker_tgid = if interrupted_in_user_mode() {
        0
    } else {
        (bpf_get_current_pid_tgid() >> 32) as u32
    };
    stack.stack = u64::from(stack.stack as u32) | (u64::from(waker_tgid) << 32);
    0
}

/// Whether the current task is in the kernel because an interrupt came while it ran in user
/// mode, not for a call of its own: then the interrupt (a timer, mostly) is the waker, not the
/// task it happened to find on the CPU. The registers saved at its entry from user mode say
/// so: -1 (x86_64's system vectors, the local timer's among them; arm64's every interrupt
/// and exception from user mode), where a call leaves its number (and an x86_64 page fault
/// its error code, the task's own work; a kernel thread has zeroes). Not told apart: an
/// interrupt while the task is inside a call, x86_64's device interrupts below vector 0x80
/// (saved as the positive vector), and on arm64 a wakeup the task makes while handling its
/// own page fault (counted as an interrupt's). Needs `bpf_task_pt_regs` (Linux 5.15); false
/// without.
#[inline(always)]
fn interrupted_in_user_mode() -> bool {
    if HAS_TASK_PT_REGS.load() == 0 {
        return false;
    }
    let task = unsafe { bpf_get_current_task_btf() };
    let regs = unsafe { bpf_task_pt_regs(task) } as *const u8;
    if regs.is_null() {
        return false;
    }
    // The low 32 bits, as `still_returning` reads them.
    let number = unsafe { *(regs.add(REGS_ORIG_AX_OFFSET.load() as usize) as *const u32) };
    (number as i32) < 0
}

// sched_wakeup_new(struct task_struct *p): a new thread starts. Its first sys_exit (the
// return from clone/fork) has no sys_enter, so whatever its slot holds is stale.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    if let Some(slot) = in_flight(unsafe { task_u32(task, TASK_PID_OFFSET.load()) }) {
        slot.flags = 0;
    }
    0
}

// sched_process_exit(struct task_struct *p[, bool group_dead]): runs in the exiting thread.
// exit and exit_group never reach sys_exit, so they are counted here; any other call the
// thread dies in is dropped with its slot. When the last thread of a process exits, its
// process table entry is marked dead: its statistics are final.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    forget_known_tasks();
    let task: *const u8 = ctx.arg(0);
    if let Some(slot) = tracked(unsafe { task_u32(task, TASK_PID_OFFSET.load()) }) {
        if slot.flags & flight::EXITING != 0 {
            finish_exiting(slot, NO_EXIT_WAIT);
        } else {
            match StatsKey::unpack(slot.key).nr {
                NR_EXIT_64 | NR_EXIT_GROUP_64 | NR_EXIT_32 | NR_EXIT_GROUP_32 => record(slot, 0, None),
                _ => slot.flags = 0,
            }
        }
    }
    // The threads still running, counted down before this tracepoint (`group_dead`, an
    // argument only since Linux 6.16, is read from the same counter). Two threads exiting at
    // once may both see 0: marking dead twice does no harm.
    let live = unsafe {
        let signal = *(task.add(TASK_SIGNAL_OFFSET.load() as usize) as *const *const u8);
        *(signal.add(SIGNAL_LIVE_OFFSET.load() as usize) as *const i32)
    };
    if live == 0 {
        let tgid = unsafe { task_u32(task, TASK_TGID_OFFSET.load()) };
        if let Found::Entry(index, _) = find_process(tgid) {
            if let Some(entry) = PROCS.get_ptr_mut(index) {
                unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(&mut (*entry).state, proc_state::DEAD) };
            }
        }
    }
    0
}

// task_rename(struct task_struct *task, const char *comm): a thread takes a new name (before
// it is copied in). For a process's main thread - an exec, prctl(PR_SET_NAME), a write to
// /proc/PID/comm - the process starts a new epoch under the new name.
#[btf_tracepoint(function = "task_rename")]
pub fn task_rename(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let comm: *const u8 = ctx.arg(1);
    let tgid = unsafe { task_u32(task, TASK_TGID_OFFSET.load()) };
    let tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
    if THREAD_ROWS.load() != 0 {
        name_thread(tid, tgid, comm);
    }
    if tid != tgid {
        return 0;
    }
    // The records cache the epoch.
    forget_known_tasks();
    let Found::Entry(index, state) = find_process(tgid) else {
        return 0;
    };
    if state & proc_state::DEAD != 0 {
        return 0;
    }
    let Some(entry) = PROCS.get_ptr_mut(index) else {
        return 0;
    };
    let entry = unsafe { &mut *entry };
    atomic_add(&mut entry.state, proc_state::EPOCH_ONE);
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(comm, &mut entry.comm) };
    if task == unsafe { bpf_get_current_task_btf() } as *const u8 {
        // An exec (or the process naming itself): the new epoch gets the cgroup the process
        // is in now. A container's first process is moved into the container's cgroup by
        // its runtime after its first calls, before it execs the container's program.
        entry.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    }
    0
}

/// Notes the name a thread gives itself in its name row ([`THREAD_NAME_ROW`]).
#[inline(never)]
fn name_thread(tid: u32, tgid: u32, comm: *const u8) {
    let mut row = ThreadStats {
        tgid,
        ..ThreadStats::default()
    };
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(comm, &mut row.comm) };
    let key = ThreadKey {
        tid,
        nr: THREAD_NAME_ROW,
    };
    if THREADS.insert(&key, &row, 0).is_err() {
        bump(counter::THREADS_LOST);
    }
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm): a
// non-leader thread that execs takes the leader's tid, so its in-flight execve moves along.
// (The new name and epoch came with `task_rename`, during the exec.)
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    forget_known_tasks();
    let task: *const u8 = ctx.arg(0);
    let old_tid: u64 = ctx.arg(1);
    let old_tid = old_tid as u32;
    let tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
    if old_tid == tid {
        return 0;
    }
    let Some(old_slot) = in_flight(old_tid) else {
        return 0;
    };
    let moved = InFlight { tid, ..*old_slot };
    old_slot.flags = 0;
    if let Some(slot) = slot_of(tid) {
        *slot = moved;
    }
    0
}

// sched_process_fork(struct task_struct *parent, struct task_struct *child): children of a
// followed process are followed too: they get a process table entry, marked followed.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    if FOLLOW_FORKS.load() == 0 {
        return 0;
    }
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let tgid_offset = TASK_TGID_OFFSET.load();
    let parent_tgid = unsafe { task_u32(parent, tgid_offset) };
    let child_tgid = unsafe { task_u32(child, tgid_offset) };
    if child_tgid == parent_tgid {
        return 0; // a thread
    }
    if !matches!(find_process(parent_tgid), Found::Entry(_, state) if state & proc_state::FOLLOWED != 0) {
        return 0;
    }
    let followed = child_tgid as u64 | proc_state::FOLLOWED;
    // Twice: a claim can lose its entry to another CPU, or to the agent emptying a freed
    // entry at that moment; the second search finds where it stands then.
    let mut claimed = false;
    for _attempt in 0..2 {
        claimed = match find_process(child_tgid) {
            // A dead process's pid, reused.
            Found::Entry(index, state) if state & proc_state::DEAD != 0 => {
                let revived = (state & proc_state::EPOCH_MASK) + proc_state::EPOCH_ONE | followed;
                claim_process(index, state, revived, child)
            }
            Found::Entry(..) => true,
            Found::Free(index, state) => claim_process(index, state, followed, child),
            Found::Full => break,
        };
        if claimed {
            break;
        }
    }
    if !claimed {
        // Its calls are counted as lost (`FOLLOW_FULL`) when they come.
        bump(counter::PROC_FULL);
    }
    0
}

// Empty programs on the same two tracepoints: the overhead floor, for `cargo xtask bench`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
