//! Threads inside a syscall, as the session finds them (in the kernel side's in-flight table,
//! or in `/proc` for calls already under way at start), and what a long one waits on: plain
//! data for `syscall-top` and the report, filled in by `session::in_flight`.
use serde::Serialize;

/// A thread inside a syscall, as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InSyscall {
    pub tid: u32,
    pub pid: u32,
    /// The thread's own name now (`/proc/PID/task/TID/comm`), if it was asked for and could
    /// be read.
    pub name: Option<String>,
    /// As the kernel side stores it (ABI flag included).
    pub nr: u32,
    pub blocked: bool,
    pub elapsed_ns: u64,
    /// It was already inside the call when profiling started: `elapsed_ns` is a lower bound.
    pub before_start: bool,
    /// Where in the kernel it waits (see [`crate::model::wait::wait_site`]), read with the
    /// name.
    pub wait_site: Option<String>,
}

/// A thread inside one call for a long time, and what `/proc` says it waits on. Every field
/// past the call is best effort: the thread may return, or the process exit, while it is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hang {
    pub tid: u32,
    pub pid: u32,
    /// The process's name and the thread's own.
    pub comm: String,
    pub thread: String,
    pub syscall: String,
    pub abi: String,
    /// Time inside the call so far; with `since_before_start`, time since profiling started
    /// (the call began earlier).
    pub elapsed_ns: u64,
    pub since_before_start: bool,
    /// `asleep`, `disk` (uninterruptible: usually I/O), `running`, `stopped`, ...
    pub state: String,
    /// Where in the kernel it sleeps: the innermost functions of its kernel stack
    /// (`wait_for_partner <- fifo_open <- do_dentry_open`); empty when unreadable.
    pub wait_site: String,
    /// Waiting for I/O (`io_schedule` on its stack, or uninterruptible sleep).
    pub io_wait: bool,
    /// For a call on a file descriptor: the descriptor, and what it refers to (a path,
    /// `pipe:[inode]`, `socket:[inode]`, with the TCP peer when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For an open: the path it opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Other processes holding the same pipe or socket (`pid comm`): the other end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_end: Vec<String>,
}

/// Joins the hangs seen at the start of a report (`at_start`, read then; `elapsed_ns` their
/// time off the CPU at the start) with the threads inside a call at its end: a thread still
/// in the same call adds its time before the start to its time so far. Returns the hangs that
/// returned meanwhile. `call_of`: a thread's call, named as a hang names it.
pub fn returned_since_start(
    at_start: Vec<Hang>,
    at_end: &mut [InSyscall],
    call_of: &dyn Fn(&InSyscall) -> String,
) -> Vec<Hang> {
    at_start
        .into_iter()
        .filter(|hang| {
            let still = at_end
                .iter_mut()
                .find(|thread| thread.before_start && thread.tid == hang.tid && call_of(thread) == hang.syscall);
            match still {
                Some(thread) => {
                    thread.elapsed_ns += hang.elapsed_ns;
                    false
                }
                None => true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: u32, nr: u32, elapsed_ns: u64, before_start: bool) -> InSyscall {
        InSyscall {
            tid,
            pid: tid,
            name: None,
            nr,
            blocked: true,
            elapsed_ns,
            before_start,
            wait_site: None,
        }
    }

    fn hang(tid: u32, syscall: &str, elapsed_ns: u64) -> Hang {
        Hang {
            tid,
            pid: tid,
            comm: "x".into(),
            thread: "x".into(),
            syscall: syscall.into(),
            abi: "x86_64".into(),
            elapsed_ns,
            since_before_start: true,
            state: "asleep".into(),
            wait_site: String::new(),
            io_wait: false,
            fd: None,
            target: None,
            path: None,
            other_end: Vec::new(),
        }
    }

    #[test]
    fn a_hang_still_there_carries_its_time_before_the_start_and_the_others_returned() {
        let call_of = |thread: &InSyscall| if thread.nr == 0 { "read" } else { "wait4" }.to_owned();
        let mut at_end = vec![
            thread(10, 0, 5_000, true),
            // Same thread, but a call it entered during the report: not the same hang.
            thread(11, 0, 4_000, false),
            // Same thread, another call that was under way at start: the first one returned.
            thread(12, 61, 3_000, true),
        ];
        let at_start = vec![
            hang(10, "read", 2_000),
            hang(11, "read", 1_000),
            hang(12, "read", 1_000),
        ];
        let returned = returned_since_start(at_start, &mut at_end, &call_of);
        assert_eq!(returned.iter().map(|h| h.tid).collect::<Vec<_>>(), vec![11, 12]);
        assert_eq!(at_end[0].elapsed_ns, 7_000);
        assert_eq!(at_end[1].elapsed_ns, 4_000);
        assert_eq!(at_end[2].elapsed_ns, 3_000);
    }
}
