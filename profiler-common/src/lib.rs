//! Types shared by the eBPF programs (`profiler-ebpf`) and the userspace agent (`profiler`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into BPF maps and the
//! agent reads the same bytes back. The latency histogram's bucket layout also lives here so
//! that both sides compute it with the same code.
#![no_std]

/// Bit set in [`StatsKey::nr`] when the call came from a 32-bit compat task (ia32 on x86_64,
/// AArch32 on arm64). Such a call's number indexes that ABI's table (i386, arm EABI), not the
/// native one.
pub const NR_COMPAT_FLAG: u32 = 1 << 31;

/// Bit the kernel sets in the syscall number of an x32-ABI call (`__X32_SYSCALL_BIT`).
pub const NR_X32_FLAG: u32 = 0x4000_0000;

/// `__USER32_CS` on x86_64: the code segment of 32-bit user code. A syscall whose saved
/// `pt_regs.cs` is this came from a 32-bit (ia32) task.
pub const USER32_CS: u64 = 0x23;

/// `PSR_MODE32_BIT` on arm64: set in the saved `pt_regs.pstate` of an AArch32 (compat) task.
pub const PSR_MODE32_BIT: u64 = 0x10;

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
    /// Syscall number as the task passed it, with [`NR_COMPAT_FLAG`] set for ia32 calls.
    pub nr: u32,
}

impl StatsKey {
    /// The form stored in [`StatsSlot::key`] (compared and claimed with single 8-byte atomic
    /// operations) for the calls made by the threads of `lane` (see [`STATS_LANES`]) of the process
    /// in its `epoch` (see [`ProcSlot`]): `tgid` in bits 0-31, `nr` in 32-47 and its ABI flags
    /// in 62-63, the lane in 48-50, the epoch's low bits in 51-61.
    #[inline(always)]
    pub const fn packed(self, lane: u32, epoch: u32) -> u64 {
        let nr_half =
            self.nr | ((lane & (STATS_LANES - 1)) << NR_LANE_SHIFT) | ((epoch & KEY_EPOCH_MASK) << NR_EPOCH_SHIFT);
        (self.tgid as u64) | ((nr_half as u64) << 32)
    }

    /// The key of a packed [`StatsSlot::key`], whatever its lane and epoch.
    pub const fn unpack(packed: u64) -> StatsKey {
        StatsKey {
            tgid: packed as u32,
            nr: (packed >> 32) as u32 & !NR_KEY_BITS,
        }
    }
}

/// The epoch (its low [`KEY_EPOCH_MASK`] bits) a packed key was made in.
pub const fn epoch_of(packed: u64) -> u32 {
    ((packed >> 32) as u32 >> NR_EPOCH_SHIFT) & KEY_EPOCH_MASK
}

/// Each (process, syscall) has up to this many entries in the statistics table, one per group
/// of its threads (a thread uses lane `tid % STATS_LANES`), which the agent adds up. Threads
/// of one process making the same calls on different CPUs then mostly update different cache
/// lines: one shared entry bounced between CPUs on every call and cost more than the rest of
/// the hot path. A single-threaded process has one entry per syscall, wherever it runs.
pub const STATS_LANES: u32 = 8;
/// Where the lane sits in the `nr` half of a packed key (bits no syscall number uses).
pub const NR_LANE_SHIFT: u32 = 16;
/// Where the process epoch sits in the `nr` half of a packed key, above the lane.
pub const NR_EPOCH_SHIFT: u32 = 19;
/// The epoch bits a key holds: an epoch recurs in keys after 2048 changes of one process's
/// name or image, long after the agent has drained the keys of the old one.
pub const KEY_EPOCH_MASK: u32 = 0x7ff;
/// The bits of [`StatsKey::nr`] the lane and the epoch occupy in a packed key.
pub const NR_KEY_BITS: u32 = 0x3fff << NR_LANE_SHIFT;
/// Syscall numbers that would overlap the lane and epoch bits (no kernel has them; a program
/// can still pass one) are counted as this number.
pub const NR_OUT_OF_RANGE: u32 = 0xffff;

/// [`StatsSlot::key`] of a slot never used. (pid 0, the idle task, makes no syscalls.)
pub const SLOT_EMPTY: u64 = 0;
/// [`StatsSlot::key`] of a slot the agent freed (its process exited): reusable, but lookups
/// probe past it.
pub const SLOT_FREED: u64 = u32::MAX as u64;
/// Slots a lookup probes (linear probing from the key's hash) before giving up as full.
/// Linear probing packs keys into runs: at 45% of a 16,384-slot table used (the soak's churn
/// between two reads) the longest run of used slots is expected near 40, and with 32 probes
/// the soak lost a call or two to `stats_full` in one run of three. Only a search that runs
/// that far pays for the longer bound.
pub const STATS_PROBES: u32 = 64;

/// Start of the probe sequence of a packed key in a table of `mask + 1` slots.
///
/// The key's high half (syscall, lane, epoch, ABI) is folded into its low half first: a
/// multiplication carries bits only upwards, so bits 32-45 of the product (the start, for the
/// default 16,384 slots) never saw the lane, epoch or ABI bits, and every lane of a (process,
/// syscall) started at the same slot. A thread's search then read the key of another lane's
/// entry, in the cache line another CPU was adding that entry's calls to, on every call: in
/// half the runs two threads of one process cost twice what they did in the other half
/// (BENCHMARKS.md, step 19).
#[inline(always)]
pub fn stats_hash(packed: u64, mask: u32) -> u32 {
    // Fibonacci hashing: multiply by 2^64/phi and keep bits of the upper half.
    let folded = packed ^ (packed >> 32);
    ((folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32) & mask
}

/// Aggregated statistics of one (process, syscall); updated with atomic adds.
///
/// `entry` time is not here: the tracepoints cannot see it, so the agent charges the
/// calibrated boundary cost per call.
///
/// Counts are exact. Times come from the timed calls (see [`TIMED_FIRST_CALLS`] and
/// [`flight`]): a call timed by sampling 1 in N is added with weight N, so the times and the
/// histogram are estimates of all calls; with sampling off every call is timed, weight 1.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallStats {
    /// Calls that returned (exit and exit_group: that ended the thread).
    pub calls: u64,
    /// Calls that returned -4095..=-1.
    pub errors: u64,
    /// On-CPU time between sys_enter and sys_exit: wall time minus blocked and runqueue.
    pub handler_ns: u64,
    /// Time asleep (switched out in a sleeping state) until woken.
    pub blocked_ns: u64,
    /// Time runnable but not running: after a wakeup or an involuntary preemption.
    pub runqueue_ns: u64,
    /// Longest wall time between the tracepoints of a timed call (racy max: good enough for
    /// a maximum).
    pub max_ns: u64,
    /// Kernel-side bookkeeping: handler time of the timed calls that left the CPU, and their
    /// number. Their mean stands in for the handler time of the untimed calls that left the
    /// CPU, whose time off the CPU is measured but not their time on it.
    pub switched_handler_ns: u64,
    pub switched_timed_calls: u64,
    /// What the sampling added to `handler_ns` for the calls it did not time: a sampled call
    /// of weight N adds its handler time N-1 times more. Kept apart so that the agent can
    /// bound it (no estimate above what the process's threads could have spent).
    pub extrapolated_ns: u64,
    /// When the earliest timed call entered (`bpf_ktime_get_ns`; 0: none timed yet). The
    /// first calls of an entry are all timed: its calls began no earlier than this.
    pub first_enter_ns: u64,
    /// The most threads its process had running at a sampled call.
    pub max_threads: u32,
    /// `switched_handler_ns / switched_timed_calls` as of the last timed call that left the
    /// CPU (saturating): what an untimed call that left the CPU adds as its handler time. Kept
    /// rather than divided out at each such call: a 64-bit division costs ~15 ns on the CPUs
    /// we measured, more than the rest of that path.
    pub switched_handler_mean_ns: u32,
    /// The first [`ERRNO_SLOTS`] distinct errnos of these calls (positive; 0: not taken yet),
    /// claimed with a compare-and-swap (of 64 bits: the one every BPF target has), and their
    /// counts.
    pub errno_codes: [u64; ERRNO_SLOTS],
    pub errno_counts: [u32; ERRNO_SLOTS],
    /// Errors of any further errno (counted in `errors` too).
    pub errno_other: u64,
    /// Weighted counts per [`hist_bucket`] of the wall time between the tracepoints. `u32`
    /// keeps the value small; the agent reads them often enough to take wrapping deltas.
    pub hist: [u32; HIST_BUCKETS],
}

/// Distinct errnos counted per statistics entry; more than a few for one (process, syscall)
/// is rare, and the rest are counted as `errno_other`.
pub const ERRNO_SLOTS: usize = 4;

impl SyscallStats {
    pub const ZERO: SyscallStats = SyscallStats {
        calls: 0,
        errors: 0,
        handler_ns: 0,
        blocked_ns: 0,
        runqueue_ns: 0,
        max_ns: 0,
        switched_handler_ns: 0,
        switched_timed_calls: 0,
        extrapolated_ns: 0,
        first_enter_ns: 0,
        max_threads: 0,
        switched_handler_mean_ns: 0,
        errno_codes: [0; ERRNO_SLOTS],
        errno_counts: [0; ERRNO_SLOTS],
        errno_other: 0,
        hist: [0; HIST_BUCKETS],
    };
}

/// The first calls of every (process, syscall) are all timed, whatever the sampling: rare
/// calls get exact times, and sampling only thins out the frequent ones.
pub const TIMED_FIRST_CALLS: u64 = 64;

/// Largest sampling period: one call timed in this many.
pub const MAX_SAMPLE_EVERY: u32 = 1024;

/// One slot of the statistics table: an open-addressing hash table kept in a
/// memory-mappable array, so the hot path finds its entry with a few inline instructions
/// instead of a hash map call, and the agent reads it without a syscall per entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StatsSlot {
    /// [`StatsKey::packed`], [`SLOT_EMPTY`] or [`SLOT_FREED`].
    pub key: u64,
    /// The process's name and cgroup in the key's epoch, written when the slot is claimed
    /// (just after the key: a reader can see the key first). They travel with the counts, so
    /// the calls of a process that has since exec'd or renamed itself keep the name they were
    /// made under.
    pub comm: [u8; 16],
    pub cgroup_id: u64,
    pub stats: SyscallStats,
}

/// One process in the process table, an open-addressing table (like the statistics table) in
/// a memory-mappable array, keyed by tgid. The kernel side claims an entry at a process's first
/// call (or at its fork, for followed processes) and marks it dead when its last thread exits;
/// the agent frees dead entries once it has read their statistics.
///
/// A process's *epoch* changes when it execs or renames itself (and so when its name
/// changes): the statistics keys carry it, so each epoch's calls are counted apart, under the
/// name they were made under, and the agent knows an old epoch's entries are final.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSlot {
    /// `tgid | epoch << 32 |` [`proc_state`] flags; [`PROC_EMPTY`] or [`PROC_FREED`] when
    /// unused. Changed with atomic operations only.
    pub state: u64,
    /// cgroup v2 id (the inode number of its directory in the cgroup filesystem).
    pub cgroup_id: u64,
    /// The process's name (its main thread's), as of its latest epoch.
    pub comm: [u8; 16],
}

/// Bits of [`ProcSlot::state`].
pub mod proc_state {
    /// The epoch counter, in bits 32-61 (keys hold its low bits).
    pub const EPOCH_SHIFT: u32 = 32;
    pub const EPOCH_ONE: u64 = 1 << EPOCH_SHIFT;
    pub const EPOCH_MASK: u64 = 0x3fff_ffff << EPOCH_SHIFT;
    /// Measured in `Scope::Followed` (`--pid`, `-- CMD`).
    pub const FOLLOWED: u64 = 1 << 62;
    /// Its last thread has exited: its statistics are final.
    pub const DEAD: u64 = 1 << 63;

    /// The tgid of a state.
    #[inline(always)]
    pub const fn tgid(state: u64) -> u32 {
        state as u32
    }

    /// The epoch of a state.
    #[inline(always)]
    pub const fn epoch(state: u64) -> u32 {
        ((state & EPOCH_MASK) >> EPOCH_SHIFT) as u32
    }
}

/// [`ProcSlot::state`] of an entry never used.
pub const PROC_EMPTY: u64 = 0;
/// [`ProcSlot::state`] of an entry the agent freed: reusable. (Lookups probe past empty and
/// freed entries alike: the agent never makes a freed entry empty again.)
pub const PROC_FREED: u64 = u32::MAX as u64;
/// Entries a lookup of the process table probes, always all of them on a miss.
pub const PROC_PROBES: u32 = 16;

/// Start of the probe sequence of `tgid` in a process table of `mask + 1` entries.
#[inline(always)]
pub fn proc_hash(tgid: u32, mask: u32) -> u32 {
    (((tgid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32) & mask
}

/// Per-CPU record of the syscall programs: the identities of the tasks that called last on
/// this CPU, and the sampling generator.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Current {
    /// xorshift32 state of the sampling decision; 0 until seeded.
    pub rng: u32,
    pub _pad: u32,
    /// Indexed by [`known_task_index`] of the task's `pt_regs` pointer.
    pub known: [KnownTask; KNOWN_TASKS],
    /// Where a task's `pt_regs` sit from the base of its kernel stack (`task_struct.stack`):
    /// the same for every task of a kernel, learned from a caller (0 until then). Finds the
    /// arguments of a call asleep ([`WaitOf`]). After `known`: the hot path's records keep
    /// their place.
    pub regs_from_stack: u64,
    /// A scratch word: a pointer stored here reads back as a plain number.
    pub scratch: u64,
}

/// How many callers one CPU remembers (a power of two): enough for a few tasks taking turns
/// on a CPU (a ping-pong, a pipeline) to keep hitting.
pub const KNOWN_TASKS: usize = 8;

/// Who is calling: a thread, its process, and the process's entry in the process table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub tid: u32,
    pub tgid: u32,
    /// Index of the process's [`ProcSlot`], or [`NO_PROC`].
    pub proc: u32,
    /// The process's epoch (see [`ProcSlot`]) and [`CALLER_FOLLOWED`].
    pub flags: u32,
}

/// [`Caller::proc`] of a process the process table does not hold (it was full, or, when
/// following, the process is not followed).
pub const NO_PROC: u32 = u32::MAX;
/// [`Caller::flags`] bit: the process is followed.
pub const CALLER_FOLLOWED: u32 = 1 << 31;

impl Caller {
    #[inline(always)]
    pub fn epoch(&self) -> u32 {
        self.flags & KEY_EPOCH_MASK
    }

    #[inline(always)]
    pub fn followed(&self) -> bool {
        self.flags & CALLER_FOLLOWED != 0
    }
}

/// Who is calling, remembered by the address of the caller's `pt_regs`: the kernel hands the
/// syscall tracepoints that pointer, and it sits at the top of the task's own kernel stack, so
/// no two live tasks share one. A stack is reused only after its task exits, a task's ids
/// change only when it execs (a non-leader thread takes the leader's tid), and its process's
/// epoch only when the process execs or renames itself, so a record is valid while no task has
/// exited, exec'd or renamed its process since it was made ([`Epochs`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownTask {
    /// The task's `pt_regs` address, less a fixed address (the verifier allows no other
    /// arithmetic on a kernel pointer). 0: no record.
    pub regs: u64,
    /// [`Epochs`] when the record was made.
    pub exits: u64,
    pub attaches: u64,
    pub tid: u32,
    pub tgid: u32,
    pub proc: u32,
    pub flags: u32,
    /// Binds `regs` to the rest ([`KnownTask::check_of`]). Where the kernel lets a program be
    /// preempted (PREEMPT_FULL/LAZY kernels), two programs on one CPU can interleave their
    /// writes of a record; a record that mixes two writes' fields fails the check.
    pub check: u64,
}

impl KnownTask {
    /// The record of `caller`, whose `pt_regs` are at `regs` (see [`KnownTask::regs`]), made
    /// at `epochs`.
    #[inline(always)]
    pub fn new(regs: u64, epochs: Epochs, caller: Caller) -> KnownTask {
        KnownTask {
            regs,
            exits: epochs.exits,
            attaches: epochs.attaches,
            tid: caller.tid,
            tgid: caller.tgid,
            proc: caller.proc,
            flags: caller.flags,
            check: Self::check_of(regs, caller),
        }
    }

    /// The caller whose `pt_regs` are at `regs`, if this record, whole, names it and is valid
    /// at `epochs`.
    #[inline(always)]
    pub fn caller_of(&self, regs: u64, epochs: Epochs) -> Option<Caller> {
        let caller = Caller {
            tid: self.tid,
            tgid: self.tgid,
            proc: self.proc,
            flags: self.flags,
        };
        let valid = regs != 0
            && self.regs == regs
            && self.exits == epochs.exits
            && self.attaches == epochs.attaches
            && self.check == Self::check_of(regs, caller);
        valid.then_some(caller)
    }

    /// `regs` xor bijective mixes of the ids and of the process entry: a record with the
    /// `regs` of one task and the ids of another does not pass (equal checks would need equal
    /// `regs` or equal ids), nor one with another write's entry or epoch for the same task.
    #[inline(always)]
    pub fn check_of(regs: u64, caller: Caller) -> u64 {
        let ids = (caller.tgid as u64) << 32 | caller.tid as u64;
        let process = (caller.proc as u64) << 32 | caller.flags as u64;
        regs ^ ids.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ process.wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

/// Counters whose change invalidates every [`KnownTask`] record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    /// Task exits and execs, and renames of a process, counted by the kernel side (atomic
    /// adds).
    pub exits: u64,
    /// Attaches and changes of the followed processes, counted by the agent (its only writer):
    /// tasks may exit while the programs are detached, unseen.
    pub attaches: u64,
}

/// The [`Current::known`] index of the task whose `pt_regs` are at `regs`.
#[inline(always)]
pub fn known_task_index(regs: u64) -> usize {
    // Kernel stacks are 16 KiB, 16 KiB-aligned, with a guard page after each: tasks' pt_regs
    // are a multiple of 32 KiB apart, and neighbours get different records.
    ((regs >> 15).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize & (KNOWN_TASKS - 1)
}

/// One step of the xorshift32 generator (nonzero state in, nonzero state out). Cheap enough
/// for every syscall, and random enough that sampling does not alias with a program's own
/// periodic pattern of calls (a fixed stride would).
#[inline(always)]
pub fn xorshift32(mut state: u32) -> u32 {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    state
}

/// Where a thread that is inside a syscall is, for the time split.
pub mod thread_state {
    /// On a CPU.
    pub const RUNNING: u32 = 0;
    /// Switched out in a sleeping state (until it is back on a CPU: the wakeup itself is
    /// not traced; the scheduler's own record of when the task was queued splits the time
    /// off the CPU into blocked and runqueue).
    pub const SLEEPING: u32 = 1;
    /// Preempted, waiting on a runqueue for a CPU.
    pub const RUNNABLE: u32 = 2;
}

/// Bits of [`InFlight::flags`].
pub mod flight {
    /// The slot holds a call in progress.
    pub const IN_FLIGHT: u32 = 1;
    /// The call is timed from sys_enter ([`InFlight::enter_ns`] is set).
    pub const TIMED: u32 = 2;
    /// Timed by sampling (1 in N): counts with weight N if it stays on the CPU.
    pub const SAMPLED: u32 = 4;
    /// The call left the CPU at least once. Such calls are always measured and count with
    /// weight 1, so the long, blocking calls are never sampled away: their time off the CPU
    /// is exact; when not `TIMED`, their handler time is the mean of the timed ones.
    pub const SWITCHED: u32 = 8;
    /// The call has returned (it is counted) but the thread must reschedule before it is
    /// back in user mode: another task was woken or its time slice ran out during the call,
    /// and the kernel switches on the way out, after `sys_exit`. Its time is added once the
    /// thread is back on a CPU, with the wait for it as runqueue time (see
    /// [`InFlight::first_off_ns`]). The rest of the flags are the call's own, as at `sys_exit`.
    pub const EXITING: u32 = 16;
    /// One of the first calls of its (process, syscall) ([`TIMED_FIRST_CALLS`]): if it goes
    /// to sleep, its wait site is always taken.
    pub const FIRST_CALLS: u32 = 32;
    /// Whether to take the call's wait site has been decided (at its first sleep) ...
    pub const STACK_DECIDED: u32 = 64;
    /// ... and it was taken: the thread's `WAIT_STACK_OF` entry holds it.
    pub const STACK_TAKEN: u32 = 128;
}

/// In-flight state of one thread that is inside a syscall. One slot per thread, in an array
/// indexed by `tid & (slots - 1)`; [`flight::IN_FLIGHT`] in `flags` marks a call in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub tid: u32,
    /// Index of the call's entry in the statistics table.
    pub stats_index: u32,
    /// The call's statistics key ([`StatsKey::packed`]: process, syscall, lane, epoch).
    pub key: u64,
    /// [`flight`] bits; the high half holds the sampling period minus one of a sampled call.
    pub flags: u32,
    /// One of [`thread_state`]; this and the times off the CPU below are set from the first
    /// time the call leaves the CPU ([`flight::SWITCHED`]) and stale before.
    pub state: u32,
    /// When the call entered the kernel (CLOCK_MONOTONIC), if [`flight::TIMED`]. Once the
    /// call is [`flight::EXITING`], its handler time, measured at `sys_exit`.
    pub enter_ns: u64,
    /// When the call first left the CPU, on the scheduler's clock, if [`flight::SWITCHED`]
    /// (see [`InFlight::since_ns`]). Once the call is [`flight::EXITING`], the address of its
    /// `pt_regs`: a switch that finds the call's number still in them is on the way out of
    /// the call. (Two fields the call no longer needs: a slot stays 64 bytes, one cache line.)
    pub first_off_ns: u64,
    /// When it last left the CPU, on the scheduler's clock.
    pub off_since_ns: u64,
    /// Time asleep so far.
    pub blocked_ns: u64,
    /// Time waiting for a CPU so far.
    pub runqueue_ns: u64,
}

impl InFlight {
    /// The process and syscall of the call.
    pub fn stats_key(&self) -> StatsKey {
        StatsKey::unpack(self.key)
    }

    pub fn in_flight(&self) -> bool {
        self.flags & flight::IN_FLIGHT != 0
    }

    /// Whether the thread is asleep in the call (it left the CPU and has not been woken).
    pub fn sleeping(&self) -> bool {
        self.flags & flight::SWITCHED != 0 && self.state == thread_state::SLEEPING
    }

    /// When the call started (CLOCK_MONOTONIC) as far as it was timed: at sys_enter, or at
    /// the latest when it first left the CPU; `None` for an untimed call that has not left
    /// the CPU (a short one). `monotonic_minus_scheduler_ns`: the difference between the two
    /// clocks (from a pair of readings the kernel side keeps), `None` if unknown yet.
    pub fn since_ns(&self, monotonic_minus_scheduler_ns: Option<i64>) -> Option<u64> {
        if self.flags & flight::TIMED != 0 {
            Some(self.enter_ns)
        } else if self.flags & flight::SWITCHED != 0 {
            Some(self.first_off_ns.saturating_add_signed(monotonic_minus_scheduler_ns?))
        } else {
            None
        }
    }
}

/// Indices of the overflow counters. Nothing is dropped silently: every place the kernel side
/// gives up on an event bumps one of these, once per call it could not count.
pub mod counter {
    /// A thread's in-flight slot was held by another thread inside a syscall; the call was
    /// not measured.
    pub const SLOT_COLLISION: u32 = 0;
    /// The statistics table had no free slot within [`STATS_PROBES`](super::STATS_PROBES) of
    /// a new (process, syscall): its call was not counted.
    pub const STATS_FULL: u32 = 1;
    /// The process table was full: a call was counted, but its process has no name and its
    /// exit is not seen (the agent falls back on `/proc`).
    pub const PROC_FULL: u32 = 2;
    /// A call of a child of a followed process that could not be followed (the process table
    /// was full at its fork): not counted.
    pub const FOLLOW_FULL: u32 = 3;
    /// A thread entered a call while its slot still held its previous call: that call's
    /// `sys_exit` was never matched to it, and it was not counted. Never expected: it makes
    /// any such loss visible rather than silent (every kernel path out of a call but a
    /// thread's death passes `sys_exit`, and a death clears the slot).
    pub const EXIT_UNSEEN: u32 = 4;
    /// Number of counters.
    pub const COUNT: u32 = 5;
    /// Each counter's name, by index: what every output calls it (the JSON report's
    /// `overflow` keys, the metrics' `reason` label).
    pub const NAMES: [&str; COUNT as usize] = [
        "slot_collision",
        "stats_full",
        "process_full",
        "follow_full",
        "exit_unseen",
    ];
    /// Counters are kept per CPU, one row of this many `u64` (two cache lines) each.
    pub const ROW: u32 = 16;
    /// In each row after the overflow counters: blocked calls whose wait site was not
    /// recorded: the wait-site or stack table was full, or a stack collided with another in
    /// the stack table (not an overflow: the call and its times are counted).
    pub const WAIT_SITES_LOST: u32 = COUNT;
    /// Calls of a thread the per-thread table had no room for (`report --threads`): counted
    /// in their process's rows, missing from their thread's.
    pub const THREADS_LOST: u32 = COUNT + 1;
    /// Entries added to the wait-site table and to the per-descriptor table: the agent reads
    /// a table (through `bpf()` calls, two an entry) to name new wakers and files only when
    /// these moved.
    pub const WAIT_SITES_ADDED: u32 = COUNT + 2;
    pub const FD_WAITS_ADDED: u32 = COUNT + 3;
    const _: () = assert!(FD_WAITS_ADDED < ROW, "every counter in its CPU's row");
}

/// The tables' fill alarm: the kernel side counts the entries claimed since the agent's last
/// read (the `CLAIMS` array, by table) and, when a table's count reaches an eighth of it,
/// writes one record to the `FILL_ALARMS` ring buffer (once: a flag per table, after the
/// counts in `CLAIMS`), which wakes the agent to read (and
/// free) at once: a fork storm filling a table between two reads loses no call.
pub mod fill {
    /// `CLAIMS` index and alarm record of the statistics table ...
    pub const STATS: u32 = 0;
    /// ... and of the process table.
    pub const PROCS: u32 = 1;
    pub const TABLES: u32 = 2;
    /// The ring buffer's size (its minimum, a page): an alarm is one small record per table
    /// per read.
    pub const ALARMS_BYTES: u32 = 4096;
    /// The alarm of a table of `entries` entries: an eighth of it claimed since the last read.
    pub const fn alarm_at(entries: u32) -> u32 {
        let eighth = entries / 8;
        if eighth == 0 {
            1
        } else {
            eighth
        }
    }
}

/// Where blocked calls slept and who woke them: the statistics entry's packed key
/// ([`StatsKey::packed`]), the id in the stack table of the kernel stack the call went to
/// sleep on, and the process that last woke it (0: none seen, or the idle task: a wakeup
/// from an interrupt on an idle CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WaitKey {
    pub key: u64,
    pub stack_id: u32,
    pub waker_tgid: u32,
}

/// The calls of a [`WaitKey`] and their time asleep.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    pub calls: u64,
    pub blocked_ns: u64,
}

/// A thread's calls of one syscall (`report --threads`): the thread, and the syscall number
/// as in [`StatsKey::nr`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub tid: u32,
    pub nr: u32,
}

/// [`ThreadKey::nr`] of a thread's name row: the name it last gave itself (its other rows
/// keep its name at their first call).
pub const THREAD_NAME_ROW: u32 = u32::MAX;

/// What a [`ThreadKey`] counts: its process and name (when its first call was counted), its
/// calls and errors (exact) and its time off the CPU in them (measured for every call that
/// left it). Its handler time is not kept: the agent estimates it from its process's mean.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    pub tgid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
    pub calls: u64,
    pub errors: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
}

/// A thread's blocked call whose wait site is recorded (its `WAIT_STACK_OF` entry): the stack
/// id (low half; [`WAIT_STACK_SAMPLED`] set for a sampled call) and the tgid of the process
/// that last woke it (high half); for a call on a file descriptor, the descriptor and its
/// file's inode number and mode (type bits) as they were when it went to sleep.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitOf {
    pub stack: u64,
    pub ino: u64,
    /// [`NO_FD`] for a call not on a descriptor (or whose file could not be read).
    pub fd: u32,
    pub mode: u32,
}

/// [`WaitOf::fd`] of a call without one.
pub const NO_FD: u32 = u32::MAX;

/// The blocked calls of a statistics entry ([`StatsKey::packed`]) on one file: its
/// descriptor, inode number and mode (`S_IFIFO`, `S_IFSOCK`, ... in the type bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdWaitKey {
    pub key: u64,
    pub ino: u64,
    pub fd: u32,
    pub mode: u32,
}

/// Distinct (process, syscall, descriptor, file) kept.
pub const FD_WAITS_ENTRIES: u32 = 4096;
/// Native syscall numbers below this can be marked as taking a descriptor first
/// (`FD_CALLS`, one bit each, in `u64` words).
pub const FD_CALLS_BITS: u32 = 512;

/// Distinct kernel stacks kept (a few hundred cover a busy machine's wait sites), each up to
/// [`WAIT_STACK_DEPTH`] frames.
pub const WAIT_STACKS_ENTRIES: u32 = 1024;
/// Frames a stack-trace map keeps per stack (the kernel's `PERF_MAX_STACK_DEPTH`).
pub const WAIT_STACK_DEPTH: usize = 127;
/// Distinct (process, syscall, stack) kept.
pub const WAIT_SITES_ENTRIES: u32 = 16384;
/// Set in a thread's `WAIT_STACK_OF` stack id (its low half; the high half is the waker's
/// tgid) when the call was sampled: it stands for [`WAIT_SITE_SAMPLE_EVERY`] calls (stack
/// ids are below [`WAIT_STACKS_ENTRIES`]).
pub const WAIT_STACK_SAMPLED: u32 = 1 << 30;
/// Taking a kernel stack costs about 1 µs here (the unwinder, the stack map's hashing): the
/// first calls of each (process, syscall) that go to sleep get theirs
/// ([`TIMED_FIRST_CALLS`]), then 1 in this many, at random, counting this many times. Rare
/// blocking calls are all seen; the wait sites of frequent ones are an unbiased estimate
/// (1 in 64 cost the ping-pong benchmark 5.5 points: BENCHMARKS.md, step 18).
pub const WAIT_SITE_SAMPLE_EVERY: u32 = 256;
/// `SAMPLING[SAMPLING_WAIT_SITES]`: 0 not to record where blocked calls sleep; 1 to record
/// it for every process, sampled (a report); `tgid << 1 | 1` for that process alone, every
/// blocked call of it (`syscall-top`'s view of a process). One word: the decision, at each
/// call's first sleep, reads one map value.
pub const SAMPLING_WAIT_SITES: u32 = 1;
/// Words of the `SAMPLING` map.
pub const SAMPLING_WORDS: u32 = 2;

/// Names the eBPF object and the agent share. The kernel side defines its maps, load-time
/// globals and programs under these names (as statics named so: aya's macros take the name
/// from the static); the agent looks them up by them. The agent's unit tests check every
/// list against the built object.
pub mod object {
    /// Maps.
    pub mod map {
        pub const SLOTS: &str = "SLOTS";
        pub const STATS: &str = "STATS";
        pub const PROCS: &str = "PROCS";
        pub const COUNTERS: &str = "COUNTERS";
        pub const CURRENT: &str = "CURRENT";
        pub const CLOCK_PAIR: &str = "CLOCK_PAIR";
        pub const EPOCHS: &str = "EPOCHS";
        pub const SAMPLING: &str = "SAMPLING";
        pub const WAIT_STACKS: &str = "WAIT_STACKS";
        pub const WAIT_STACK_OF: &str = "WAIT_STACK_OF";
        pub const WAIT_SITES: &str = "WAIT_SITES";
        pub const FD_WAITS: &str = "FD_WAITS";
        pub const FD_CALLS: &str = "FD_CALLS";
        pub const THREADS: &str = "THREADS";
        pub const CLAIMS: &str = "CLAIMS";
        pub const STATS_USED: &str = "STATS_USED";
        pub const FILL_ALARMS: &str = "FILL_ALARMS";
        /// Every map of the object.
        pub const ALL: [&str; 17] = [
            SLOTS,
            STATS,
            PROCS,
            COUNTERS,
            CURRENT,
            CLOCK_PAIR,
            EPOCHS,
            SAMPLING,
            WAIT_STACKS,
            WAIT_STACK_OF,
            WAIT_SITES,
            FD_WAITS,
            FD_CALLS,
            THREADS,
            CLAIMS,
            FILL_ALARMS,
            STATS_USED,
        ];
        /// The maps the agent reads and writes through memory mappings (`BPF_F_MMAPABLE`
        /// arrays): once the programs are attached it needs no `bpf()` call, and so no
        /// capability, on any kernel.
        pub const MAPPED: [&str; 8] = [SLOTS, STATS, PROCS, COUNTERS, CLOCK_PAIR, EPOCHS, CLAIMS, STATS_USED];
    }

    /// Read-only globals the agent sets before loading (all `u32`).
    pub mod global {
        pub const REGS_MODE_OFFSET: &str = "REGS_MODE_OFFSET";
        pub const TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
        pub const TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
        pub const TASK_CFS_RQ_OFFSET: &str = "TASK_CFS_RQ_OFFSET";
        pub const CFS_RQ_RQ_OFFSET: &str = "CFS_RQ_RQ_OFFSET";
        pub const RQ_CLOCK_OFFSET: &str = "RQ_CLOCK_OFFSET";
        pub const TASK_LAST_QUEUED_OFFSET: &str = "TASK_LAST_QUEUED_OFFSET";
        pub const TASK_GROUP_LEADER_OFFSET: &str = "TASK_GROUP_LEADER_OFFSET";
        pub const TASK_REAL_PARENT_OFFSET: &str = "TASK_REAL_PARENT_OFFSET";
        pub const TASK_COMM_OFFSET: &str = "TASK_COMM_OFFSET";
        pub const TASK_SIGNAL_OFFSET: &str = "TASK_SIGNAL_OFFSET";
        pub const SIGNAL_LIVE_OFFSET: &str = "SIGNAL_LIVE_OFFSET";
        pub const TASK_TI_FLAGS_OFFSET: &str = "TASK_TI_FLAGS_OFFSET";
        pub const NEED_RESCHED_MASK: &str = "NEED_RESCHED_MASK";
        pub const REGS_ORIG_AX_OFFSET: &str = "REGS_ORIG_AX_OFFSET";
        pub const SLOT_MASK: &str = "SLOT_MASK";
        pub const PROCS_MASK: &str = "PROCS_MASK";
        pub const STATS_MASK: &str = "STATS_MASK";
        pub const STATS_LANE_MASK: &str = "STATS_LANE_MASK";
        pub const FOLLOW_ONLY: &str = "FOLLOW_ONLY";
        pub const FOLLOW_FORKS: &str = "FOLLOW_FORKS";
        pub const REGS_ARG0_OFFSET: &str = "REGS_ARG0_OFFSET";
        pub const TASK_STACK_OFFSET: &str = "TASK_STACK_OFFSET";
        pub const TASK_FILES_OFFSET: &str = "TASK_FILES_OFFSET";
        pub const FILES_FDT_OFFSET: &str = "FILES_FDT_OFFSET";
        pub const FDT_MAX_FDS_OFFSET: &str = "FDT_MAX_FDS_OFFSET";
        pub const FDT_FD_OFFSET: &str = "FDT_FD_OFFSET";
        pub const FILE_INODE_OFFSET: &str = "FILE_INODE_OFFSET";
        pub const INODE_INO_OFFSET: &str = "INODE_INO_OFFSET";
        pub const INODE_MODE_OFFSET: &str = "INODE_MODE_OFFSET";
        pub const THREAD_ROWS: &str = "THREAD_ROWS";
        pub const TID_BY_HELPER: &str = "TID_BY_HELPER";
        pub const HAS_TASK_PT_REGS: &str = "HAS_TASK_PT_REGS";
        pub const STATS_ALARM_AT: &str = "STATS_ALARM_AT";
        pub const PROCS_ALARM_AT: &str = "PROCS_ALARM_AT";
        /// Every global of the object.
        pub const ALL: [&str; 32] = [
            REGS_MODE_OFFSET,
            TASK_PID_OFFSET,
            TASK_TGID_OFFSET,
            TASK_CFS_RQ_OFFSET,
            CFS_RQ_RQ_OFFSET,
            RQ_CLOCK_OFFSET,
            TASK_LAST_QUEUED_OFFSET,
            TASK_GROUP_LEADER_OFFSET,
            TASK_REAL_PARENT_OFFSET,
            TASK_COMM_OFFSET,
            TASK_SIGNAL_OFFSET,
            SIGNAL_LIVE_OFFSET,
            SLOT_MASK,
            PROCS_MASK,
            STATS_MASK,
            STATS_LANE_MASK,
            FOLLOW_ONLY,
            FOLLOW_FORKS,
            REGS_ARG0_OFFSET,
            TASK_STACK_OFFSET,
            TASK_FILES_OFFSET,
            FILES_FDT_OFFSET,
            FDT_MAX_FDS_OFFSET,
            FDT_FD_OFFSET,
            FILE_INODE_OFFSET,
            INODE_INO_OFFSET,
            INODE_MODE_OFFSET,
            THREAD_ROWS,
            TID_BY_HELPER,
            HAS_TASK_PT_REGS,
            STATS_ALARM_AT,
            PROCS_ALARM_AT,
        ];
    }

    /// Programs, `(program, tracepoint)`.
    pub mod program {
        /// The profiler's programs, all BTF-enabled raw tracepoints (`tp_btf`). Attached in
        /// this order and detached in reverse: `sys_enter`, which starts following a call,
        /// last, so that every call it sees is seen leaving the CPU, exiting (with `sys_exit`
        /// attached after it, a call that began and ended in between stayed in its slot, and
        /// its thread's next call found it there: `counter::EXIT_UNSEEN`), its thread dying,
        /// and its process forking.
        pub const PROFILER: [(&str, &str); 8] = [
            ("sched_switch", "sched_switch"),
            ("sys_exit", "sys_exit"),
            ("sched_wakeup_new", "sched_wakeup_new"),
            ("sched_process_exit", "sched_process_exit"),
            ("sched_process_exec", "sched_process_exec"),
            ("sched_process_fork", "sched_process_fork"),
            ("task_rename", "task_rename"),
            ("sys_enter", "sys_enter"),
        ];
        /// Empty classic raw tracepoint programs on the two syscall tracepoints: the cost
        /// floor any profiler built on them pays, measured by `cargo xtask bench`.
        pub const FLOOR: [(&str, &str); 2] = [("floor_sys_enter", "sys_enter"), ("floor_sys_exit", "sys_exit")];
        /// Attached while wait sites are recorded (a report): who wakes a call asleep. It
        /// runs on every wakeup of the machine, so the modes that do not need it go without.
        pub const WAKERS: [(&str, &str); 1] = [("sched_waking", "sched_waking")];
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C) plain data without padding holes that matter and valid for any
    // bit pattern.
    unsafe impl aya::Pod for super::StatsKey {}
    unsafe impl aya::Pod for super::SyscallStats {}
    unsafe impl aya::Pod for super::StatsSlot {}
    unsafe impl aya::Pod for super::ProcSlot {}
    unsafe impl aya::Pod for super::InFlight {}
    unsafe impl aya::Pod for super::Epochs {}
    unsafe impl aya::Pod for super::WaitKey {}
    unsafe impl aya::Pod for super::WaitStats {}
    unsafe impl aya::Pod for super::WaitOf {}
    unsafe impl aya::Pod for super::FdWaitKey {}
    unsafe impl aya::Pod for super::ThreadKey {}
    unsafe impl aya::Pod for super::ThreadStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lanes_and_epochs_of_a_key_start_their_searches_apart() {
        // Each lane's search must not pass through another lane's entry (see `stats_hash`).
        let mask = 16_383;
        let (mut keys, mut close) = (0, 0);
        for tgid in 1000..1200 {
            for nr in [0, 1, 39, 110, 202, 202 | NR_COMPAT_FLAG] {
                for epoch in [0, 1] {
                    let key = StatsKey { tgid, nr };
                    let mut starts = [0u32; STATS_LANES as usize];
                    for (lane, start) in starts.iter_mut().enumerate() {
                        *start = stats_hash(key.packed(lane as u32, epoch), mask);
                    }
                    keys += 1;
                    let near = |a: u32, b: u32| a.abs_diff(b) <= 1;
                    if starts
                        .iter()
                        .enumerate()
                        .any(|(i, a)| starts[i + 1..].iter().any(|b| near(*a, *b)))
                    {
                        close += 1;
                    }
                }
                // Two epochs of one lane start apart too.
                let key = StatsKey { tgid, nr };
                assert_ne!(stats_hash(key.packed(0, 0), mask), stats_hash(key.packed(0, 1), mask));
            }
        }
        // Random starts: 28 pairs of lanes, each within one slot with odds 3 in 16,384.
        assert!(
            close * 50 < keys,
            "{close} of {keys} keys had two lanes start side by side"
        );
    }

    #[test]
    fn lane_and_epoch_are_invisible_after_unpacking() {
        let key = StatsKey {
            tgid: 4242,
            nr: 202 | NR_COMPAT_FLAG,
        };
        let mut packed = [0u64; 2 * STATS_LANES as usize];
        for lane in 0..STATS_LANES {
            for (i, epoch) in [0u32, KEY_EPOCH_MASK].into_iter().enumerate() {
                let p = key.packed(lane, epoch);
                packed[(2 * lane) as usize + i] = p;
                assert_eq!(StatsKey::unpack(p), key);
                assert_eq!(epoch_of(p), epoch);
            }
        }
        // Distinct keys per lane and epoch.
        for (i, a) in packed.iter().enumerate() {
            assert!(packed[i + 1..].iter().all(|b| b != a));
        }
        // Lanes and epochs wrap rather than spill into the number or the flag bits.
        assert_eq!(key.packed(STATS_LANES + 3, 1), key.packed(3, 1));
        assert_eq!(key.packed(0, KEY_EPOCH_MASK + 2), key.packed(0, 1));
        assert_eq!(NR_KEY_BITS & (NR_COMPAT_FLAG | NR_X32_FLAG | NR_OUT_OF_RANGE), 0);
        assert_eq!(
            ((STATS_LANES - 1) << NR_LANE_SHIFT) & (KEY_EPOCH_MASK << NR_EPOCH_SHIFT),
            0
        );
        assert_eq!(
            ((STATS_LANES - 1) << NR_LANE_SHIFT) | (KEY_EPOCH_MASK << NR_EPOCH_SHIFT),
            NR_KEY_BITS
        );
    }

    #[test]
    fn a_process_state_holds_its_tgid_epoch_and_flags() {
        let state = 777u64 | (5 * proc_state::EPOCH_ONE) | proc_state::FOLLOWED;
        assert_eq!(proc_state::tgid(state), 777);
        assert_eq!(proc_state::epoch(state), 5);
        let dead = (state + proc_state::EPOCH_ONE) | proc_state::DEAD;
        assert_eq!((proc_state::tgid(dead), proc_state::epoch(dead)), (777, 6));
        assert_eq!(proc_state::tgid(PROC_FREED), u32::MAX, "no process has this tgid");
        assert_eq!(
            proc_state::EPOCH_MASK & (proc_state::DEAD | proc_state::FOLLOWED | 0xffff_ffff),
            0
        );
        assert!((0..100_000).all(|tgid| proc_hash(tgid, 1023) < 1024));
    }

    #[test]
    fn xorshift_samples_one_in_n_without_reaching_zero() {
        let mask = 15;
        let mut state = 1u32;
        let mut sampled = 0u32;
        let draws = 160_000;
        for _ in 0..draws {
            state = xorshift32(state);
            assert_ne!(state, 0);
            if (state >> 8) & mask == 0 {
                sampled += 1;
            }
        }
        // Expected 10,000; binomial sd ~97.
        assert!((9_500..=10_500).contains(&sampled), "{sampled}");
    }

    #[test]
    fn neighbouring_kernel_stacks_take_different_known_task_records() {
        // vmalloc'ed stacks: 16 KiB plus a guard page, so at least 32 KiB apart; pt_regs
        // (168 bytes) at the top of each.
        let base = 0xffff_c900_0040_0000u64;
        let regs = |stack: u64| base + stack * 0x8000 + 0x4000 - 168;
        let mut taken = [false; KNOWN_TASKS];
        for stack in 0..8 {
            taken[known_task_index(regs(stack))] = true;
        }
        let distinct = taken.iter().filter(|&&t| t).count();
        assert_eq!(distinct, 8, "8 neighbouring stacks in {distinct} records");
        assert!((0..10_000).all(|i| known_task_index(regs(i)) < KNOWN_TASKS));
        assert_eq!(KNOWN_TASKS.count_ones(), 1);
    }

    #[test]
    fn a_record_names_its_caller_whole_and_only_until_the_epochs_move() {
        let epochs = Epochs { exits: 7, attaches: 1 };
        let caller_a = Caller {
            tid: 100,
            tgid: 100,
            proc: 3,
            flags: 5,
        };
        let caller_b = Caller {
            tid: 4321,
            tgid: 4000,
            proc: 9,
            flags: 1 | CALLER_FOLLOWED,
        };
        let a = KnownTask::new(0x1_0000_8000, epochs, caller_a);
        let b = KnownTask::new(0x1_0001_0000, epochs, caller_b);
        assert_eq!(a.caller_of(a.regs, epochs), Some(caller_a));
        assert_eq!(
            b.caller_of(b.regs, epochs).map(|c| (c.epoch(), c.followed())),
            Some((1, true))
        );
        assert_eq!(a.caller_of(b.regs, epochs), None, "another task's pt_regs");
        assert_eq!(
            a.caller_of(a.regs, Epochs { exits: 8, ..epochs }),
            None,
            "a task exited since"
        );
        assert_eq!(
            a.caller_of(a.regs, Epochs { attaches: 2, ..epochs }),
            None,
            "re-attached since"
        );
        assert_eq!(KnownTask::default().caller_of(0, Epochs::default()), None, "no record");
        // The same task in a later epoch of its process.
        let a_later = KnownTask::new(a.regs, epochs, Caller { flags: 6, ..caller_a });
        // Two programs interleaving their writes of one record: every mix of two writes'
        // fields (two tasks, or one task in two epochs) is refused.
        for (x, y) in [(a, b), (a, a_later)] {
            for mask in 0u32..64 {
                let pick = |bit: u32| mask & (1 << bit) != 0;
                let torn = KnownTask {
                    regs: if pick(0) { y.regs } else { x.regs },
                    exits: epochs.exits,
                    attaches: epochs.attaches,
                    tid: if pick(1) { y.tid } else { x.tid },
                    tgid: if pick(2) { y.tgid } else { x.tgid },
                    proc: if pick(3) { y.proc } else { x.proc },
                    flags: if pick(4) { y.flags } else { x.flags },
                    check: if pick(5) { y.check } else { x.check },
                };
                let named = torn.caller_of(torn.regs, epochs);
                let whole = torn == x || torn == y;
                assert_eq!(named.is_some(), whole, "{torn:?}");
            }
        }
    }

    #[test]
    fn a_call_sleeps_only_once_it_has_left_the_cpu() {
        // The state left over from the slot's previous call means nothing.
        let mut slot = InFlight {
            flags: flight::IN_FLIGHT,
            state: thread_state::SLEEPING,
            ..InFlight::default()
        };
        assert!(!slot.sleeping());
        slot.flags |= flight::SWITCHED;
        assert!(slot.sleeping());
        slot.state = thread_state::RUNNABLE;
        assert!(!slot.sleeping());
    }

    #[test]
    fn in_flight_start_follows_what_was_timed() {
        let mut slot = InFlight {
            enter_ns: 100,
            first_off_ns: 250,
            ..InFlight::default()
        };
        assert!(!slot.in_flight());
        slot.flags = flight::IN_FLIGHT;
        assert_eq!(slot.since_ns(Some(7)), None, "untimed and on the CPU");
        slot.flags |= flight::SWITCHED;
        assert_eq!(slot.since_ns(Some(-50)), Some(200), "untimed, left the CPU");
        assert_eq!(slot.since_ns(None), None, "clocks not related yet");
        slot.flags |= flight::TIMED;
        assert_eq!(slot.since_ns(None), Some(100), "timed from sys_enter");
    }
}
