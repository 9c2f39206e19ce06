//! Types shared by the eBPF programs (`profiler-ebpf`) and the userspace agent (`profiler`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into BPF maps and the
//! agent reads the same bytes back. The latency histogram's bucket layout also lives here so
//! that both sides compute it with the same code.
#![no_std]

/// Bit set in [`StatsKey::nr`] when the call came through the 32-bit (ia32) entry point.
/// Such a call's number indexes the i386 syscall table, not the x86_64 one.
pub const NR_IA32_FLAG: u32 = 1 << 31;

/// Bit the kernel sets in the syscall number of an x32-ABI call (`__X32_SYSCALL_BIT`).
pub const NR_X32_FLAG: u32 = 0x4000_0000;

/// `__USER32_CS` on x86_64: the code segment of 32-bit user code. A syscall whose saved
/// `pt_regs.cs` is this came from a 32-bit (ia32) task.
pub const USER32_CS: u64 = 0x23;

/// Sub-buckets per power of two in the latency histogram, as a number of bits (4 sub-buckets).
pub const HIST_SUB_BITS: u32 = 2;
const HIST_SUB: u64 = 1 << HIST_SUB_BITS;
/// Largest power of two the histogram resolves; longer calls land in the last bucket
/// (their exact maximum is kept in [`SyscallStats::max_ns`]). 2^40 ns is about 18 minutes.
pub const HIST_MAX_POW: u32 = 40;
/// Number of buckets: 4 exact buckets for 0..4 ns, then 4 per power of two from 2^2 to 2^40.
pub const HIST_BUCKETS: usize = (HIST_SUB as usize) * (HIST_MAX_POW as usize);

/// Bucket index of a duration in nanoseconds.
///
/// Log-linear: values below 4 get their own bucket, above that each power of two
/// `[2^e, 2^(e+1))` is split into 4 equal sub-buckets, so a bucket is at most 25% wide
/// relative to its lower bound.
#[inline(always)]
pub fn hist_bucket(ns: u64) -> usize {
    if ns < HIST_SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= HIST_SUB_BITS
    let sub = (ns >> (exp - HIST_SUB_BITS)) & (HIST_SUB - 1);
    let idx = ((exp - HIST_SUB_BITS + 1) as u64) * HIST_SUB + sub;
    if idx >= HIST_BUCKETS as u64 {
        HIST_BUCKETS - 1
    } else {
        idx as usize
    }
}

/// Inclusive lower and exclusive upper bound, in nanoseconds, of bucket `idx`.
pub fn hist_bucket_bounds(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < HIST_SUB {
        return (idx, idx + 1);
    }
    let exp = idx / HIST_SUB + (HIST_SUB_BITS as u64) - 1;
    let sub = idx % HIST_SUB;
    let width = 1u64 << (exp - HIST_SUB_BITS as u64);
    let low = (1u64 << exp) + sub * width;
    (low, low + width)
}

/// A (process, syscall) pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    /// Thread-group id: the process id as userspace knows it.
    pub tgid: u32,
    /// Syscall number as the task passed it, with [`NR_IA32_FLAG`] set for ia32 calls.
    pub nr: u32,
}

impl StatsKey {
    /// The key as one `u64`, the form stored in [`StatsSlot::key`] (compared and claimed
    /// with single 8-byte atomic operations).
    #[inline(always)]
    pub const fn packed(self) -> u64 {
        (self.tgid as u64) | ((self.nr as u64) << 32)
    }

    pub const fn unpack(packed: u64) -> StatsKey {
        StatsKey {
            tgid: packed as u32,
            nr: (packed >> 32) as u32,
        }
    }
}

/// [`StatsSlot::key`] of a slot never used. (pid 0, the idle task, makes no syscalls.)
pub const SLOT_EMPTY: u64 = 0;
/// [`StatsSlot::key`] of a slot the agent freed (its process exited): reusable, but lookups
/// probe past it.
pub const SLOT_FREED: u64 = u32::MAX as u64;
/// Slots a lookup probes (linear probing from the key's hash) before giving up as full.
pub const STATS_PROBES: u32 = 16;

/// Start of the probe sequence of a packed key in a table of `mask + 1` slots.
#[inline(always)]
pub fn stats_hash(packed: u64, mask: u32) -> u32 {
    // Fibonacci hashing: multiply by 2^64/phi and keep the high bits.
    ((packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32) & mask
}

/// Aggregated statistics of one (process, syscall); updated with atomic adds.
///
/// `entry` time is not here: the tracepoints cannot see it, so the agent charges the
/// calibrated boundary cost per call. The number of calls is the sum of the histogram.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallStats {
    /// Calls that returned -4095..=-1.
    pub errors: u64,
    /// On-CPU time between sys_enter and sys_exit: wall time minus blocked and runqueue.
    pub handler_ns: u64,
    /// Time asleep (switched out in a sleeping state) until woken.
    pub blocked_ns: u64,
    /// Time runnable but not running: after a wakeup or an involuntary preemption.
    pub runqueue_ns: u64,
    /// Longest wall time between the tracepoints (racy max: good enough for a maximum).
    pub max_ns: u64,
    /// Counts per [`hist_bucket`] of the wall time between the tracepoints. `u32` keeps the
    /// value small; the agent reads them often enough to take wrapping deltas.
    pub hist: [u32; HIST_BUCKETS],
}

impl SyscallStats {
    pub const ZERO: SyscallStats = SyscallStats {
        errors: 0,
        handler_ns: 0,
        blocked_ns: 0,
        runqueue_ns: 0,
        max_ns: 0,
        hist: [0; HIST_BUCKETS],
    };

    /// Calls counted (modulo 2^32 per bucket: see [`SyscallStats::hist`]).
    pub fn calls(&self) -> u64 {
        self.hist.iter().map(|&count| count as u64).sum()
    }
}

/// One slot of the statistics table: an open-addressing hash table kept in a
/// memory-mappable array, so the hot path finds its entry with a few inline instructions
/// instead of a hash map call, and the agent reads it without a syscall per entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StatsSlot {
    /// [`StatsKey::packed`], [`SLOT_EMPTY`] or [`SLOT_FREED`].
    pub key: u64,
    pub stats: SyscallStats,
}

/// Key of the per-(process, syscall, errno) error counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrnoKey {
    pub tgid: u32,
    pub nr: u32,
    /// Positive errno (the syscall returned `-errno`).
    pub errno: u32,
    pub _pad: u32,
}

/// Per-process facts recorded by the kernel side the first time a process is seen, so that
/// processes that exit before the agent reads the maps still have a name.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcInfo {
    pub comm: [u8; 16],
    /// cgroup v2 id (the inode number of its directory in the cgroup filesystem).
    pub cgroup_id: u64,
}

/// The thread running on a CPU, as the last `sched_switch` there said (per-CPU). Lets the
/// syscall tracepoints know who is calling without a helper call; `tid == 0` (the idle task,
/// or nothing seen yet) means unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Current {
    pub tid: u32,
    pub tgid: u32,
}

/// Where a thread that is inside a syscall is, for the time split.
pub mod thread_state {
    /// On a CPU.
    pub const RUNNING: u32 = 0;
    /// Switched out in a sleeping state, waiting for a wakeup.
    pub const SLEEPING: u32 = 1;
    /// Woken or preempted, waiting on a runqueue for a CPU.
    pub const RUNNABLE: u32 = 2;
}

/// In-flight state of one thread that is inside a syscall. One slot per thread, in an array
/// indexed by `tid & (slots - 1)`; `enter_ns == 0` marks a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub tid: u32,
    pub nr: u32,
    /// Thread-group id of the thread.
    pub tgid: u32,
    /// One of [`thread_state`].
    pub state: u32,
    pub enter_ns: u64,
    /// When the thread entered its current `state` (SLEEPING or RUNNABLE).
    pub state_since_ns: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
}

/// Indices of the per-CPU drop/overflow counters. Nothing is dropped silently: every
/// place the kernel side gives up on an event bumps one of these.
pub mod counter {
    /// A thread's in-flight slot was held by another thread inside a syscall; the call was
    /// not measured.
    pub const SLOT_COLLISION: u32 = 0;
    /// The statistics table had no free slot within [`STATS_PROBES`](super::STATS_PROBES) of
    /// a new (process, syscall): its call was not counted.
    pub const STATS_FULL: u32 = 1;
    /// The errno map was full: an error was counted but not its errno.
    pub const ERRNO_FULL: u32 = 2;
    /// The process-name map was full.
    pub const PROC_FULL: u32 = 3;
    /// The followed-processes map was full: a child of a followed process was not followed.
    pub const FOLLOW_FULL: u32 = 4;
    /// Number of counters.
    pub const COUNT: u32 = 5;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C) plain data without padding holes that matter and valid for any
    // bit pattern.
    unsafe impl aya::Pod for super::StatsKey {}
    unsafe impl aya::Pod for super::SyscallStats {}
    unsafe impl aya::Pod for super::StatsSlot {}
    unsafe impl aya::Pod for super::ErrnoKey {}
    unsafe impl aya::Pod for super::ProcInfo {}
    unsafe impl aya::Pod for super::InFlight {}
}
