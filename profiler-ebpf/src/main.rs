//! Kernel side of the syscall profiler: aggregates, never streams.
//!
//! - `sys_enter`/`sys_exit` time every syscall and add it
//!   to a per-(process, syscall) entry of `STATS`: calls, errors, the handler/blocked/runqueue
//!   split and a log-linear latency histogram. Errors go per errno into `ERRNOS`.
//! - `sched_switch`/`sched_wakeup` split the wall time of an in-flight call into on-CPU
//!   (handler), asleep (blocked) and waiting for a CPU (runqueue).
//! - `sched_process_exit`/`sched_wakeup_new`/`sched_process_exec` keep the per-thread
//!   in-flight slots from leaking when a thread dies or changes tid inside a syscall.
//! - `sched_process_fork` follows the children of followed processes (`--pid`, `-- CMD`).
//!
//! All programs are BTF-enabled raw tracepoints (`tp_btf`, Linux 5.5+; no tracefs needed): the
//! kernel hands them typed pointers, so task and register fields are plain loads rather than
//! `bpf_probe_read_kernel` calls. Helper calls are the hot path's main cost (each costs about
//! as much as a tracepoint's dispatch on mitigated CPUs), so the syscall programs make only
//! the two `bpf_ktime_get_ns` calls they cannot avoid: who is calling comes from a per-CPU
//! record that `sched_switch` keeps (`CURRENT`).
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
    helpers::{bpf_get_current_comm, bpf_get_current_task_btf, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::{BtfTracePointContext, RawTracePointContext},
    Global,
};
use profiler_common::{
    counter, hist_bucket, stats_hash, thread_state, Current, ErrnoKey, InFlight, ProcInfo, StatsKey, StatsSlot,
    HIST_BUCKETS, NR_IA32_FLAG, SLOT_EMPTY, SLOT_FREED, STATS_PROBES, USER32_CS,
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
/// `SLOTS` size minus one; the size is a power of two.
#[no_mangle]
static SLOT_MASK: Global<u32> = Global::new(0);
/// `STATS` size minus one; the size is a power of two.
#[no_mangle]
static STATS_MASK: Global<u32> = Global::new(0);
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
/// Who runs on each CPU, kept by `sched_switch` (see `current_thread`).
#[map]
static CURRENT: PerCpuArray<Current> = PerCpuArray::with_max_entries(1, 0);

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

/// The slot of `tid` if that thread is inside a syscall we are timing.
#[inline(always)]
fn in_flight(tid: u32) -> Option<&'static mut InFlight> {
    let slot = slot_of(tid)?;
    if slot.enter_ns != 0 && slot.tid == tid {
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

/// `(tid, tgid)` of the calling thread. Helper calls cost about as much as the rest of the
/// hot path together, so this reads the per-CPU record `sched_switch` keeps (an inlined
/// array access), and asks the kernel only until the CPU's first switch after attaching.
#[inline(always)]
fn current_thread() -> (u32, u32) {
    let Some(current) = CURRENT.get_ptr_mut(0) else {
        return (0, 0);
    };
    let current = unsafe { &mut *current };
    if current.tid == 0 {
        let task = unsafe { bpf_get_current_task_btf() as *const u8 };
        current.tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
        current.tgid = unsafe { task_u32(task, TASK_TGID_OFFSET.load()) };
    }
    (current.tid, current.tgid)
}

#[inline(always)]
fn set_current(tid: u32, tgid: u32) {
    if let Some(current) = CURRENT.get_ptr_mut(0) {
        unsafe { *current = Current { tid, tgid } };
    }
}

#[inline(always)]
fn atomic_add<T: Copy>(target: &mut T, value: T) {
    unsafe { atomic_xadd::<T, T, { AtomicOrdering::Relaxed }>(target, value) };
}

// sys_enter(struct pt_regs *regs, long id)
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    let (tid, tgid) = current_thread();
    if FOLLOW_ONLY.load() != 0 && unsafe { FOLLOWED.get(&tgid) }.is_none() {
        return 0;
    }
    let Some(slot) = slot_of(tid) else {
        return 0;
    };
    if slot.enter_ns != 0 && slot.tid != tid {
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
    slot.tid = tid;
    slot.tgid = tgid;
    slot.nr = nr;
    slot.state = thread_state::RUNNING;
    slot.blocked_ns = 0;
    slot.runqueue_ns = 0;
    slot.enter_ns = unsafe { bpf_ktime_get_ns() };
    0
}

// sys_exit(struct pt_regs *regs, long ret)
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    let (tid, _) = current_thread();
    let Some(slot) = in_flight(tid) else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let ret: i64 = ctx.arg(1);
    record(slot, now, ret);
    0
}

/// Adds the call in `slot`, ending at `now` with return value `ret`, to the statistics and
/// frees the slot.
#[inline(always)]
fn record(slot: &mut InFlight, now: u64, ret: i64) {
    let wall_ns = now.saturating_sub(slot.enter_ns);
    let key = StatsKey {
        tgid: slot.tgid,
        nr: slot.nr,
    };
    let blocked_ns = slot.blocked_ns;
    let runqueue_ns = slot.runqueue_ns;
    slot.enter_ns = 0;
    let handler_ns = wall_ns.saturating_sub(blocked_ns + runqueue_ns);

    let Some(entry) = stats_slot(key) else {
        return;
    };
    let stats = &mut entry.stats;
    atomic_add(&mut stats.handler_ns, handler_ns);
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
        atomic_add(&mut stats.hist[bucket], 1u32);
    }
    if (-4095..0).contains(&ret) {
        atomic_add(&mut stats.errors, 1u64);
        count_errno(key, (-ret) as u32);
    }
}

/// The statistics slot of `key`: linear probing from the key's hash over at most
/// `STATS_PROBES` slots; a new key claims the first empty or freed slot with a
/// compare-and-swap, so two CPUs never both take it. (A key may end up in two slots when
/// it claims a freed slot before reaching its older one; the agent adds slots up by key.)
#[inline(always)]
fn stats_slot(key: StatsKey) -> Option<&'static mut StatsSlot> {
    let packed = key.packed();
    let mask = STATS_MASK.load();
    let start = stats_hash(packed, mask);
    for probe in 0..STATS_PROBES {
        let slot = unsafe { &mut *STATS.get_ptr_mut((start + probe) & mask)? };
        let current = unsafe { core::ptr::read_volatile(&slot.key) };
        if current == packed {
            return Some(slot);
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
                remember_process(key.tgid);
                return Some(slot);
            }
            if previous == packed {
                return Some(slot);
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
    set_current(next_tid, unsafe { task_u32(next, TASK_TGID_OFFSET.load()) });
    let prev_slot = in_flight(unsafe { task_u32(prev, pid_offset) });
    let next_slot = in_flight(next_tid);
    if prev_slot.is_none() && next_slot.is_none() {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = prev_slot {
        // Preempted, or gave up the CPU while still TASK_RUNNING: it waits for a CPU.
        // Any other state means it went to sleep.
        slot.state = if preempt & 1 != 0 || prev_state as u32 == 0 {
            thread_state::RUNNABLE
        } else {
            thread_state::SLEEPING
        };
        slot.state_since_ns = now;
    }
    if let Some(slot) = next_slot {
        let waited_ns = now.saturating_sub(slot.state_since_ns);
        match slot.state {
            thread_state::RUNNABLE => slot.runqueue_ns += waited_ns,
            // No wakeup seen (it happened before we attached): all of it was asleep.
            thread_state::SLEEPING => slot.blocked_ns += waited_ns,
            _ => {}
        }
        slot.state = thread_state::RUNNING;
    }
    0
}

// sched_wakeup(struct task_struct *p): p was put on a runqueue.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    if let Some(slot) = in_flight(unsafe { task_u32(task, TASK_PID_OFFSET.load()) }) {
        if slot.state == thread_state::SLEEPING {
            let now = unsafe { bpf_ktime_get_ns() };
            slot.blocked_ns += now.saturating_sub(slot.state_since_ns);
            slot.state = thread_state::RUNNABLE;
            slot.state_since_ns = now;
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
        slot.enter_ns = 0;
    }
    0
}

// sched_process_exit(struct task_struct *p): runs in the exiting thread. exit and
// exit_group never reach sys_exit, so they are counted here; any other call the thread
// dies in is dropped with its slot.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    if let Some(slot) = in_flight(unsafe { task_u32(task, TASK_PID_OFFSET.load()) }) {
        match slot.nr {
            NR_EXIT_64 | NR_EXIT_GROUP_64 | NR_EXIT_32 | NR_EXIT_GROUP_32 => {
                record(slot, unsafe { bpf_ktime_get_ns() }, 0)
            }
            _ => slot.enter_ns = 0,
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
    let task: *const u8 = ctx.arg(0);
    let old_tid: u64 = ctx.arg(1);
    let old_tid = old_tid as u32;
    let tid = unsafe { task_u32(task, TASK_PID_OFFSET.load()) };
    let tgid = unsafe { task_u32(task, TASK_TGID_OFFSET.load()) };
    // A non-leader thread that execs takes the leader's tid: keep the per-CPU record true.
    set_current(tid, tgid);
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
    old_slot.enter_ns = 0;
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
