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
