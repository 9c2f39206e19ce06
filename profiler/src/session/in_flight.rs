//! Finding the threads inside a syscall right now: the ones the kernel side saw enter, and the
//! ones `/proc` shows inside a call they were already in when profiling started (which is what
//! a hang looks like when the profiler is started after it began); and, for a report, reading
//! what a long one is waiting on ([`Hang`]).
use std::{collections::HashSet, time::Instant};

use crate::{
    model::{
        names::{decode_nr, syscall_name},
        threads::{Hang, InSyscall},
        wait::{fd_argument, is_io_wait, path_argument, wait_site},
    },
    session::{
        procfs::{
            fd_target, is_pipe_or_socket, kernel_stack, last_ran_ns, other_ends, proc_threads_in_syscalls, read_comm,
            read_thread_comm, read_user_string, syscall_args, task_clocks_now, thread_state, ProcInSyscall,
        },
        Session, Target,
    },
};

impl Session {
    /// Threads inside a syscall at `now_ns` (CLOCK_MONOTONIC; the agent's own left out): those
    /// the kernel side saw enter, timed from their entry, or from when they left the CPU
    /// (short untimed calls are left out). With `long_after_ns`, also those `/proc` shows
    /// inside one they were already in when profiling started, among the processes measured,
    /// and the names of the threads in a call that long: both read `/proc`, which a caller
    /// wanting only the rates need not. `started`: when profiling started.
    pub fn threads_in_syscalls(&self, now_ns: u64, started: Instant, long_after_ns: Option<u64>) -> Vec<InSyscall> {
        let clock_offset = self.monotonic_minus_scheduler_ns();
        let in_flight = self.in_flight();
        // Every thread the kernel side has in a call, timed or not, so that /proc does not add
        // it again below as one that was already there at start.
        let mut seen: HashSet<u32> = in_flight.iter().map(|slot| slot.tid).collect();
        let mut threads: Vec<InSyscall> = in_flight
            .into_iter()
            .filter_map(|slot| {
                let elapsed_ns = now_ns.saturating_sub(slot.since_ns(clock_offset)?);
                let pid = slot.stats_key().tgid;
                let long = long_after_ns.is_some_and(|after| elapsed_ns >= after);
                Some(InSyscall {
                    tid: slot.tid,
                    pid,
                    name: long.then(|| read_thread_comm(pid, slot.tid)).flatten(),
                    nr: slot.stats_key().nr,
                    blocked: slot.sleeping(),
                    elapsed_ns,
                    before_start: false,
                    wait_site: long.then(|| wait_site(&kernel_stack(pid, slot.tid))),
                })
            })
            .collect();
        let Some(long_after_ns) = long_after_ns else {
            return threads;
        };
        let since_start = started.elapsed().as_nanos() as u64;
        let in_proc = proc_threads_in_syscalls();
        // And the slots once more, after /proc: a call that began between the first read and
        // the scan (which takes a while on a busy machine) is in /proc and in its slot by now;
        // it was shown as in its call since the start (a just-begun hang as `≥1.7s`: 3 of 18
        // runs of the stuck-view test on the PREEMPT_RT kernel under qemu, 0 of 12 since).
        seen.extend(self.in_flight().iter().map(|slot| slot.tid));
        for ProcInSyscall {
            tid, pid, nr, blocked, ..
        } in in_proc
        {
            if !seen.contains(&tid) && self.measured_before_start(pid) {
                let long = since_start >= long_after_ns;
                threads.push(InSyscall {
                    tid,
                    pid,
                    name: long.then(|| read_thread_comm(pid, tid)).flatten(),
                    nr,
                    blocked,
                    elapsed_ns: since_start,
                    before_start: true,
                    wait_site: long.then(|| wait_site(&kernel_stack(pid, tid))),
                });
            }
        }
        threads
    }
}

impl Session {
    /// Threads of the processes measured that `/proc` shows asleep inside a call, and off the
    /// CPU for at least `after_ns`, now (at the start of a report): a hang that may end before
    /// the report does. `elapsed_ns` is the time off the CPU: a lower bound of the call's.
    pub fn asleep_in_syscalls(&self, after_ns: u64) -> Vec<InSyscall> {
        let asleep: Vec<ProcInSyscall> = proc_threads_in_syscalls()
            .into_iter()
            .filter(|thread| thread.blocked && self.measured_before_start(thread.pid))
            .collect();
        // Each CPU's clock before the threads' last runs: a thread that runs meanwhile comes
        // out as off the CPU for 0, not for the time the scan took.
        let clocks = task_clocks_now(&asleep.iter().map(|thread| thread.cpu).collect());
        asleep
            .into_iter()
            .filter_map(|thread| {
                let (pid, tid) = (thread.pid, thread.tid);
                let elapsed_ns = clocks.get(&thread.cpu)?.saturating_sub(last_ran_ns(pid, tid)?);
                (elapsed_ns >= after_ns).then(|| InSyscall {
                    tid,
                    pid,
                    name: read_thread_comm(pid, tid),
                    nr: thread.nr,
                    blocked: true,
                    elapsed_ns,
                    before_start: true,
                    wait_site: Some(wait_site(&kernel_stack(pid, tid))),
                })
            })
            .collect()
    }

    /// Whether calls `pid` was inside when profiling started are its to report.
    fn measured_before_start(&self, pid: u32) -> bool {
        pid != std::process::id()
            && match &self.target {
                Target::SystemWide => true,
                // Their children were started since (and seen), if followed.
                Target::Pids { pids, .. } => pids.contains(&pid),
                // Started by the profiler: every call of it and its descendants was seen.
                Target::Command(_) => false,
            }
    }
}

/// What `/proc` says about each thread, now: one scan of every process's descriptors for the
/// other ends of all of them.
pub fn read_hangs(threads: &[InSyscall]) -> Vec<Hang> {
    let mut hangs: Vec<Hang> = threads.iter().map(read_hang).collect();
    let ends: Vec<(u32, &str)> = hangs
        .iter()
        .map(|hang| (hang.pid, hang.target.as_deref().unwrap_or("")))
        .collect();
    let other_ends = other_ends(&ends, &|target| is_pipe_or_socket(target) || is_fifo(target));
    for (hang, other_end) in hangs.iter_mut().zip(other_ends) {
        hang.other_end = other_end;
    }
    hangs
}

/// What `/proc` says about `thread`, now (not the other end: see [`read_hangs`]).
fn read_hang(thread: &InSyscall) -> Hang {
    let (pid, tid) = (thread.pid, thread.tid);
    let (abi, nr) = decode_nr(thread.nr);
    let syscall = syscall_name(abi, nr).into_owned();
    let frames = kernel_stack(pid, tid);
    let state = thread_state(pid, tid);
    let args = syscall_args(pid, tid);
    let fd = args.and_then(|args| fd_argument(&syscall).map(|i| args[i] as i32 as i64));
    let target = fd.and_then(|fd| fd_target(pid, fd));
    let path = args.and_then(|args| path_argument(&syscall).and_then(|i| read_user_string(pid, args[i])));
    Hang {
        tid,
        pid,
        comm: read_comm(pid).unwrap_or_default(),
        thread: thread
            .name
            .clone()
            .or_else(|| read_thread_comm(pid, tid))
            .unwrap_or_default(),
        syscall,
        abi: abi.as_str().to_owned(),
        elapsed_ns: thread.elapsed_ns,
        since_before_start: thread.before_start,
        state: match state {
            Some('S') => "asleep",
            Some('D') => "disk",
            Some('R') => "running",
            Some('T' | 't') => "stopped",
            Some(_) => "other",
            None if thread.blocked => "asleep",
            None => "unknown",
        }
        .to_owned(),
        wait_site: wait_site(&frames),
        io_wait: state == Some('D') || is_io_wait(&frames),
        fd,
        target,
        path,
        other_end: Vec::new(),
    }
}

/// Whether a descriptor's target is a named pipe (its other end is who else opened it).
fn is_fifo(target: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    target.starts_with('/') && std::fs::metadata(target).is_ok_and(|m| m.file_type().is_fifo())
}
