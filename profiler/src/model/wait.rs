//! What a blocked call waits on, from what the kernel shows of it: the wait site named from
//! its kernel stack, and which of a syscall's arguments is the file descriptor or the path it
//! waits on.
use std::collections::BTreeMap;

use profiler_common::StatsKey;
use serde::Serialize;

/// Frames that say only that the thread sleeps, not where: skipped at the top of a stack.
const SCHEDULER_FRAMES: [&str; 8] = [
    "__schedule",
    "schedule",
    "schedule_timeout",
    "schedule_hrtimeout_range",
    "schedule_hrtimeout_range_clock",
    "io_schedule",
    "io_schedule_timeout",
    "preempt_schedule",
];

/// How many frames name a site: deep enough to tell `pipe_read` in `vfs_read` from an
/// `ep_poll`, short enough to read.
const SITE_FRAMES: usize = 3;

/// The wait site of a kernel stack (function names, innermost first): its innermost frames
/// past the scheduler's own (and, in a stack taken in the `sched_switch` tracepoint, past the
/// tracing frames above `__schedule`), down to the syscall's entry point at most, joined as
/// `wait_for_partner <- fifo_open <- do_dentry_open`. Empty for an empty stack.
pub fn wait_site(frames: &[String]) -> String {
    let from = frames
        .iter()
        .position(|frame| frame == "__schedule")
        .map_or(0, |at| at + 1);
    frames[from..]
        .iter()
        .map(String::as_str)
        .skip_while(|frame| SCHEDULER_FRAMES.contains(frame))
        .take_while(|frame| !is_syscall_entry(frame))
        .take(SITE_FRAMES)
        .collect::<Vec<_>>()
        .join(" <- ")
}

/// The architecture's syscall entry (`__x64_sys_read`, `__arm64_sys_read`, `do_syscall_64`,
/// ...): below it the stack says nothing the syscall's name does not.
fn is_syscall_entry(frame: &str) -> bool {
    frame.contains("_sys_") || frame.starts_with("do_syscall") || frame.starts_with("entry_SYSCALL")
}

/// Whether a stack is a wait for I/O (`io_schedule`: disk reads and writes, page and buffer
/// locks under I/O), which the kernel accounts as iowait.
pub fn is_io_wait(frames: &[String]) -> bool {
    frames.iter().any(|frame| frame.starts_with("io_schedule"))
}

/// The blocked calls of a (process, syscall) that slept at one site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaitSite {
    /// See [`wait_site`]; `unknown` when the stack could not be read.
    pub site: String,
    pub io_wait: bool,
    pub calls: u64,
    pub blocked_ns: u64,
}

/// The wait sites of each (process, syscall) from `(key, stack frames, calls, blocked ns)`:
/// stacks that name the same site added up, the most time asleep first.
pub fn sites_by_key(
    stacks: impl IntoIterator<Item = (StatsKey, Vec<String>, u64, u64)>,
) -> BTreeMap<StatsKey, Vec<WaitSite>> {
    let mut summed: BTreeMap<(StatsKey, String, bool), (u64, u64)> = BTreeMap::new();
    for (key, frames, calls, blocked_ns) in stacks {
        let site = match wait_site(&frames) {
            site if site.is_empty() => "unknown".to_owned(),
            site => site,
        };
        let sum = summed.entry((key, site, is_io_wait(&frames))).or_default();
        sum.0 += calls;
        sum.1 += blocked_ns;
    }
    let mut by_key: BTreeMap<StatsKey, Vec<WaitSite>> = BTreeMap::new();
    for ((key, site, io_wait), (calls, blocked_ns)) in summed {
        by_key.entry(key).or_default().push(WaitSite {
            site,
            io_wait,
            calls,
            blocked_ns,
        });
    }
    for sites in by_key.values_mut() {
        sites.sort_by(|a, b| b.blocked_ns.cmp(&a.blocked_ns).then(a.site.cmp(&b.site)));
    }
    by_key
}

/// The function name of a `/proc/PID/stack` line (`[<0>] pipe_read+0x2f4/0x4a0`).
pub fn stack_frame(line: &str) -> Option<String> {
    let symbol = line.split_whitespace().nth(1)?;
    let name = symbol.split('+').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Which argument of `syscall` (by name) is the file descriptor it works on, if any.
pub fn fd_argument(syscall: &str) -> Option<usize> {
    const FIRST_IS_FD: [&str; 32] = [
        "read",
        "write",
        "readv",
        "writev",
        "pread64",
        "pwrite64",
        "preadv",
        "pwritev",
        "preadv2",
        "pwritev2",
        "recvfrom",
        "recvmsg",
        "recvmmsg",
        "sendto",
        "sendmsg",
        "sendmmsg",
        "accept",
        "accept4",
        "connect",
        "fsync",
        "fdatasync",
        "sync_file_range",
        "flock",
        "ioctl",
        "fcntl",
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "splice",
        "tee",
        "getdents64",
        "fallocate",
    ];
    FIRST_IS_FD.contains(&syscall).then_some(0)
}

/// Which argument of `syscall` (by name) is the path it opens, if any.
pub fn path_argument(syscall: &str) -> Option<usize> {
    match syscall {
        "open" | "creat" => Some(0),
        "openat" | "openat2" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_site_is_the_innermost_frames_past_the_scheduler() {
        let fifo = frames(&[
            "wait_for_partner",
            "fifo_open",
            "do_dentry_open",
            "vfs_open",
            "path_openat",
            "__x64_sys_openat",
            "do_syscall_64",
        ]);
        assert_eq!(wait_site(&fifo), "wait_for_partner <- fifo_open <- do_dentry_open");
        let pipe = frames(&[
            "__schedule",
            "schedule",
            "pipe_read",
            "vfs_read",
            "ksys_read",
            "__x64_sys_read",
        ]);
        assert_eq!(wait_site(&pipe), "pipe_read <- vfs_read <- ksys_read");
        let sleep = frames(&["hrtimer_nanosleep", "common_nsleep", "__x64_sys_clock_nanosleep"]);
        assert_eq!(wait_site(&sleep), "hrtimer_nanosleep <- common_nsleep");
        assert_eq!(wait_site(&[]), "");
    }

    #[test]
    fn a_stack_taken_in_the_scheduler_is_read_past_it() {
        let switch = frames(&[
            "bpf_prog_6deef7357e7b4530_sched_switch",
            "bpf_trace_run4",
            "__traceiter_sched_switch",
            "__schedule",
            "schedule",
            "io_schedule",
            "folio_wait_bit_common",
            "filemap_fault",
            "__do_fault",
        ]);
        assert_eq!(
            wait_site(&switch),
            "folio_wait_bit_common <- filemap_fault <- __do_fault"
        );
        assert!(is_io_wait(&switch));
        assert!(!is_io_wait(&frames(&["__schedule", "schedule", "pipe_read"])));
    }

    #[test]
    fn sites_are_added_up_per_key_most_time_first() {
        let key = StatsKey { tgid: 7, nr: 0 };
        let pipe = frames(&[
            "__schedule",
            "schedule",
            "pipe_read",
            "vfs_read",
            "ksys_read",
            "__x64_sys_read",
        ]);
        // The same site reached from another caller further down: one site.
        let pipe_too = frames(&[
            "__schedule",
            "schedule",
            "pipe_read",
            "vfs_read",
            "ksys_read",
            "__ia32_sys_read",
        ]);
        let fifo = frames(&["__schedule", "schedule", "wait_for_partner", "fifo_open"]);
        let sites = sites_by_key([
            (key, pipe, 3, 300),
            (key, pipe_too, 2, 200),
            (key, fifo, 1, 1_000),
            (key, Vec::new(), 1, 5),
        ]);
        let found = &sites[&key];
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].site, "wait_for_partner <- fifo_open");
        assert_eq!(
            (found[1].site.as_str(), found[1].calls, found[1].blocked_ns),
            ("pipe_read <- vfs_read <- ksys_read", 5, 500)
        );
        assert_eq!(found[2].site, "unknown");
    }

    #[test]
    fn proc_stack_lines_give_function_names() {
        assert_eq!(stack_frame("[<0>] pipe_read+0x2f4/0x4a0").as_deref(), Some("pipe_read"));
        assert_eq!(stack_frame("[<0>] ep_poll+0x1f2/0x220").as_deref(), Some("ep_poll"));
        assert_eq!(stack_frame(""), None);
    }

    #[test]
    fn fd_and_path_arguments_by_syscall() {
        assert_eq!(fd_argument("read"), Some(0));
        assert_eq!(fd_argument("fdatasync"), Some(0));
        assert_eq!(fd_argument("epoll_wait"), Some(0));
        assert_eq!(fd_argument("nanosleep"), None);
        assert_eq!(path_argument("openat"), Some(1));
        assert_eq!(path_argument("open"), Some(0));
        assert_eq!(path_argument("read"), None);
    }
}
