//! Kernel side of the syscall profiler: aggregates, never streams.
//!
//! - `sys_enter`/`sys_exit` count every syscall in a per-(process, syscall) entry of `STATS`
//!   (calls, errors; errors per errno into `ERRNOS`), and time it into the same entry: the
//!   handler/blocked/runqueue split and a log-linear latency histogram.
//! - What is timed: every call, or with sampling on (`SAMPLING`), every call that leaves the
//!   CPU, the first calls of each (process, syscall), and 1 in N of the rest, which count N
//!   times. Reading the clock is most of the hot path's cost; sampling skips it on the short
//!   calls that stay on the CPU, where it would cost more than the call itself.
//! - `sched_switch` tracks the time an in-flight call spends off the CPU, on the scheduler's
//!   own clock (`rq->clock`, a plain load: no clock read); the time the scheduler records a
//!   task was queued (`sched_info.last_queued`) says how much of it was spent waiting for a
//!   CPU (runqueue), the rest was asleep (blocked). No wakeup hook is needed.
//! - `sched_process_exit`/`sched_wakeup_new`/`sched_process_exec` keep the per-thread
//!   in-flight slots from leaking when a thread dies or changes tid inside a syscall.
//! - `sched_process_fork` follows the children of followed processes (`--pid`, `-- CMD`).
//!
//! All programs are BTF-enabled raw tracepoints (`tp_btf`, Linux 5.5+; no tracefs needed): the
//! kernel hands them typed pointers, so task and register fields are plain loads rather than
//! `bpf_probe_read_kernel` calls. Helper calls are much of the hot path's cost on mitigated
//! CPUs (a call and a return each pay for the mitigations), so an untimed call of a task its
//! CPU has seen before makes none (see `caller`).
//! Kernel struct offsets come from the kernel's BTF at load time (globals below); nothing is
//! hard-coded. The empty `floor_*` programs are classic raw tracepoints, for the benchmark.
#![no_std]
#![no_main]
// Atomic adds: core's Atomic* types have no read-modify-write methods on the BPF target.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_prandom_u32,
        bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::{BtfTracePointContext, RawTracePointContext},
    Global,
};
use profiler_common::{
    counter, flight, hist_bucket, known_task_index, stats_hash, thread_state, xorshift32, Current, Epochs, ErrnoKey,
    InFlight, KnownTask, ProcInfo, StatsKey, StatsSlot, HIST_BUCKETS, NR_IA32_FLAG, NR_LANE_BITS, NR_OUT_OF_RANGE,
    NR_X32_FLAG, SLOT_EMPTY, SLOT_FREED, STATS_PROBES, TIMED_FIRST_CALLS, USER32_CS,
};

// ---- load-time configuration (read-only globals, set by the agent before loading) ----

/// Offset of `pt_regs.cs`; 0 when unknown (no ia32 detection).
#[no_mangle]
static REGS_CS_OFFSET: Global<u32> = Global::new(0);
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
/// `SLOTS` size minus one; the size is a power of two.
#[no_mangle]
static SLOT_MASK: Global<u32> = Global::new(0);
/// `STATS` size minus one; the size is a power of two.
#[no_mangle]
static STATS_MASK: Global<u32> = Global::new(0);
/// Statistics lanes minus one (a power of two minus one; see `STATS_LANES`): a CPU's calls go
/// to lane `cpu & STATS_LANE_MASK`.
#[no_mangle]
static STATS_LANE_MASK: Global<u32> = Global::new(0);
/// Non-zero: only processes in `FOLLOWED` are measured.
#[no_mangle]
static FOLLOW_ONLY: Global<u32> = Global::new(0);
/// Non-zero: children forked by followed processes are followed too.
#[no_mangle]
static FOLLOW_FORKS: Global<u32> = Global::new(0);

// ---- maps; the agent sets their sizes at load time ----

// Both arrays can be memory-mapped: the agent reads them without a syscall per entry.
#[map]
static SLOTS: Array<InFlight> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// Open-addressing hash table of (process, syscall) statistics; see `stats_slot`.
#[map]
static STATS: Array<StatsSlot> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map]
static ERRNOS: HashMap<ErrnoKey, u64> = HashMap::with_max_entries(1, 0);
#[map]
static PROCS: HashMap<u32, ProcInfo> = HashMap::with_max_entries(1, 0);
#[map]
static FOLLOWED: HashMap<u32, u8> = HashMap::with_max_entries(1, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Per-CPU state of the syscall programs (see `current`).
#[map]
static CURRENT: PerCpuArray<Current> = PerCpuArray::with_max_entries(1, 0);
/// A recent pair of readings (CLOCK_MONOTONIC, scheduler clock) taken together on one CPU at
/// the end of a timed call that slept (refreshed every 50 ms at most): lets the agent place
/// the scheduler-clock times of `InFlight::first_off_ns` in monotonic time, to within a tick
/// (the scheduler clock read there may be that old). Index 0: monotonic (0 until the first
/// pair), 1: scheduler clock.
#[map]
static CLOCK_PAIR: Array<u64> = Array::with_max_entries(2, 0);
/// Invalidation counters of the per-CPU records of who is calling (see `caller`).
#[map]
static EPOCHS: Array<Epochs> = Array::with_max_entries(1, 0);
/// Sampling period minus one (a power of two minus one): 0 times every call. A map, not a
/// load-time constant, so that the agent calibrates with every call timed and then turns
/// sampling on.
#[map]
static SAMPLING: Array<u32> = Array::with_max_entries(1, 0);

// x86_64 and i386 numbers of the calls that never return.
const NR_EXIT_64: u32 = 60;
const NR_EXIT_GROUP_64: u32 = 231;
const NR_EXIT_32: u32 = 1 | NR_IA32_FLAG;
const NR_EXIT_GROUP_32: u32 = 252 | NR_IA32_FLAG;

#[inline(always)]
fn bump(counter: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter) {
        unsafe { *value += 1 };
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

/// Who is calling: (tid, tgid) of the task whose syscall has its `pt_regs` at `regs`.
///
/// Asking the kernel (`bpf_get_current_pid_tgid`) is a helper call (a call and a return
/// through the CPU's mitigations, on every syscall twice); each CPU remembers its last few
/// callers by their `pt_regs` address instead ([`KnownTask`]: an address no two live tasks
/// share), and asks only for a task it has not seen since the last task exit or exec anywhere
/// ([`Epochs`]). It does not depend on seeing every context switch: a record of who runs
/// where kept by `sched_switch` went stale under load (BENCHMARKS.md, step 9).
#[inline(always)]
fn caller(current: &mut Current, regs: u64) -> Option<(u32, u32)> {
    let epochs = EPOCHS.get_ptr(0)?;
    // The verifier refuses arithmetic on a kernel pointer (the hash below) but lets a
    // privileged program subtract two pointers: the distance from a fixed address names the
    // pt_regs as well as their address does.
    let regs_key = regs.wrapping_sub(epochs as u64);
    let epochs = unsafe { *epochs };
    let known = &mut current.known[known_task_index(regs_key)];
    if let Some(ids) = known.ids_of(regs_key, epochs) {
        return Some(ids);
    }
    // The epochs were read before asking: an exit in between makes this record stale at
    // once, never valid for too long.
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    *known = KnownTask::new(regs_key, epochs, tid, tgid);
    Some((tid, tgid))
}

/// Invalidates every CPU's [`KnownTask`] records: a task exited (its stack may be reused) or
/// exec'd (its tid may have changed).
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
    let mask = SAMPLING.get(0).copied().unwrap_or(0);
    if mask == 0 || calls < TIMED_FIRST_CALLS {
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
    let Some((tid, tgid)) = caller(current, ctx.arg(0)) else {
        return 0;
    };
    if FOLLOW_ONLY.load() != 0 && unsafe { FOLLOWED.get(&tgid) }.is_none() {
        return 0;
    }
    let Some(slot) = slot_of(tid) else {
        return 0;
    };
    if slot.flags & flight::IN_FLIGHT != 0 && slot.tid != tid {
        bump(counter::SLOT_COLLISION);
        return 0;
    }
    let id: i64 = ctx.arg(1);
    let mut nr = id as u32;
    // A 32-bit task's calls index the i386 table. (A 64-bit task issuing `int 0x80` is not
    // told apart: that would need a helper call on every syscall.)
    let cs_offset = REGS_CS_OFFSET.load();
    if cs_offset != 0 {
        let regs: *const u8 = ctx.arg(0);
        if unsafe { *(regs.add(cs_offset as usize) as *const u64) } == USER32_CS {
            nr |= NR_IA32_FLAG;
        }
    }
    if nr & NR_LANE_BITS != 0 {
        nr = (nr & (NR_IA32_FLAG | NR_X32_FLAG)) | NR_OUT_OF_RANGE;
    }
    if current.lane == 0 {
        current.lane = (unsafe { bpf_get_smp_processor_id() } & STATS_LANE_MASK.load()) + 1;
        // once per CPU
    }
    let key = StatsKey { tgid, nr };
    let Some((stats_index, entry)) = stats_slot(key.packed_in_lane(current.lane - 1), tgid) else {
        return 0;
    };
    let flags = timing(current, entry.stats.calls);
    slot.tid = tid;
    slot.tgid = tgid;
    slot.nr = nr;
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
    let Some(current) = current() else {
        return 0;
    };
    let Some((tid, _)) = caller(current, ctx.arg(0)) else {
        return 0;
    };
    let Some(slot) = in_flight(tid) else {
        return 0;
    };
    let ret: i64 = ctx.arg(1);
    record(slot, ret);
    0
}

/// Adds the call in `slot`, returning `ret` now, to its statistics and frees the slot.
#[inline(always)]
fn record(slot: &mut InFlight, ret: i64) {
    let flags = slot.flags;
    slot.flags = 0;
    // The clock first: what follows is the profiler's own work, and the errno count (a
    // hash-map call, failed calls only) would otherwise sit inside the window of failed calls
    // alone - among them the calibration's call without a handler, whose window is
    // subtracted from every call's handler time.
    let now_ns = if flags & flight::TIMED != 0 {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    let Some(entry) = STATS.get_ptr_mut(slot.stats_index) else {
        return;
    };
    let entry = unsafe { &mut *entry };
    let key = StatsKey {
        tgid: slot.tgid,
        nr: slot.nr,
    };
    // The agent frees the entries of processes that are gone; ours cannot be one of them,
    // unless its pid was reused in between.
    if StatsKey::unpack(unsafe { core::ptr::read_volatile(&entry.key) }) != key {
        return;
    }
    let stats = &mut entry.stats;
    atomic_add(&mut stats.calls, 1u64);
    if (-4095..0).contains(&ret) {
        atomic_add(&mut stats.errors, 1u64);
        count_errno(key, (-ret) as u32);
    }
    if flags & (flight::TIMED | flight::SWITCHED) == 0 {
        return;
    }
    let (blocked_ns, runqueue_ns) = if flags & flight::SWITCHED != 0 {
        (slot.blocked_ns, slot.runqueue_ns)
    } else {
        (0, 0)
    };
    let mut weight = 1u32;
    let handler_ns = if flags & flight::TIMED != 0 {
        let wall_ns = now_ns.saturating_sub(slot.enter_ns);
        let handler_ns = wall_ns.saturating_sub(blocked_ns + runqueue_ns);
        if flags & flight::SWITCHED != 0 {
            remember_clock_pair(now_ns);
            atomic_add(&mut stats.switched_handler_ns, handler_ns);
            atomic_add(&mut stats.switched_timed_calls, 1u64);
        } else if flags & flight::SAMPLED != 0 {
            weight = (flags >> 16) + 1;
        }
        handler_ns
    } else {
        // Left the CPU, not timed: its time off the CPU is exact; for its time on the CPU
        // take the mean of the timed calls of the same kind that left the CPU.
        let timed = stats.switched_timed_calls;
        if timed != 0 {
            stats.switched_handler_ns / timed
        } else {
            0
        }
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

/// The statistics slot of the packed key `packed` (of process `tgid`), and its index: linear
/// probing from the key's hash over at most `STATS_PROBES` slots; a new key claims the first
/// empty or freed slot with a compare-and-swap, so two CPUs never both take it. (A key may end
/// up in two slots when it claims a freed slot before reaching its older one; the agent adds
/// slots up by key.)
#[inline(always)]
fn stats_slot(packed: u64, tgid: u32) -> Option<(u32, &'static mut StatsSlot)> {
    let mask = STATS_MASK.load();
    let start = stats_hash(packed, mask);
    for probe in 0..STATS_PROBES {
        let index = (start + probe) & mask;
        let slot = unsafe { &mut *STATS.get_ptr_mut(index)? };
        let current = unsafe { core::ptr::read_volatile(&slot.key) };
        if current == packed {
            return Some((index, slot));
        }
        if current == SLOT_EMPTY || current == SLOT_FREED {
            let (previous, claimed) = unsafe {
                atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                    &mut slot.key,
                    current,
                    packed,
                )
            };
            if claimed {
                remember_process(tgid);
                return Some((index, slot));
            }
            if previous == packed {
                return Some((index, slot));
            }
        }
    }
    bump(counter::STATS_FULL);
    None
}

#[inline(always)]
fn count_errno(key: StatsKey, errno: u32) {
    let errno_key = ErrnoKey {
        tgid: key.tgid,
        nr: key.nr,
        errno,
        _pad: 0,
    };
    if let Some(count) = ERRNOS.get_ptr_mut(&errno_key) {
        atomic_add(unsafe { &mut *count }, 1u64);
        return;
    }
    if ERRNOS.insert(&errno_key, &1, BPF_NOEXIST as u64).is_err() {
        match ERRNOS.get_ptr_mut(&errno_key) {
            Some(count) => atomic_add(unsafe { &mut *count }, 1u64),
            None => bump(counter::ERRNO_FULL),
        }
    }
}

/// Records the name of a process the first time one of its calls is counted, so that a
/// process that exits before the agent reads the maps keeps its name.
#[inline(never)]
fn remember_process(tgid: u32) {
    if unsafe { PROCS.get(&tgid) }.is_some() {
        return;
    }
    let info = ProcInfo {
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        cgroup_id: unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() },
    };
    if PROCS.insert(&tgid, &info, BPF_NOEXIST as u64).is_err() && unsafe { PROCS.get(&tgid) }.is_none() {
        bump(counter::PROC_FULL);
    }
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
    let prev_slot = in_flight(unsafe { task_u32(prev, pid_offset) });
    let next_slot = in_flight(next_tid);
    if prev_slot.is_none() && next_slot.is_none() {
        return 0;
    }
    let now = unsafe { scheduler_clock_ns(prev) };
    if let Some(slot) = prev_slot {
        if slot.flags & flight::SWITCHED == 0 {
            slot.flags |= flight::SWITCHED;
            slot.first_off_ns = now;
            slot.blocked_ns = 0;
            slot.runqueue_ns = 0;
        }
        slot.off_since_ns = now;
        // Preempted, or gave up the CPU while still TASK_RUNNING: it waits for a CPU.
        // Any other state means it went to sleep.
        slot.state = if preempt & 1 != 0 || prev_state as u32 == 0 {
            thread_state::RUNNABLE
        } else {
            thread_state::SLEEPING
        };
    }
    if let Some(slot) = next_slot {
        // `state` is stale until the call has left the CPU once.
        if slot.flags & flight::SWITCHED != 0 && slot.state != thread_state::RUNNING {
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

// sched_process_exit(struct task_struct *p): runs in the exiting thread. exit and
// exit_group never reach sys_exit, so they are counted here; any other call the thread
// dies in is dropped with its slot.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    forget_known_tasks();
    let task: *const u8 = ctx.arg(0);
    if let Some(slot) = in_flight(unsafe { task_u32(task, TASK_PID_OFFSET.load()) }) {
        match slot.nr {
            NR_EXIT_64 | NR_EXIT_GROUP_64 | NR_EXIT_32 | NR_EXIT_GROUP_32 => record(slot, 0),
            _ => slot.flags = 0,
        }
    }
    // FOLLOWED is pruned by the agent: a leader may exit before its other threads.
    0
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm):
// the process has its new name; and a non-leader thread that execs takes the leader's tid,
// so its in-flight execve moves along.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    forget_known_tasks();
    let task: *const u8 = ctx.arg(0);
    let old_tid: u64 = ctx.arg(1);
    let old_tid = old_tid as u32;
    let tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
    let tgid = unsafe { task_u32(task, TASK_TGID_OFFSET.load()) };
    if let Some(info) = PROCS.get_ptr_mut(&tgid) {
        if let Ok(comm) = bpf_get_current_comm() {
            unsafe { (*info).comm = comm };
        }
    }
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
// followed process are followed too.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    if FOLLOW_FORKS.load() == 0 {
        return 0;
    }
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let tgid_offset = TASK_TGID_OFFSET.load();
    let parent_tgid = unsafe { task_u32(parent, tgid_offset) };
    if unsafe { FOLLOWED.get(&parent_tgid) }.is_none() {
        return 0;
    }
    let child_tgid = unsafe { task_u32(child, tgid_offset) };
    if child_tgid != parent_tgid && FOLLOWED.insert(&child_tgid, &1, 0).is_err() {
        bump(counter::FOLLOW_FULL);
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
