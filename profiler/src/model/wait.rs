//! What a blocked call waits on, from what the kernel shows of it: the wait site named from
//! its kernel stack, and which of a syscall's arguments is the file descriptor or the path it
//! waits on.

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
/// past the scheduler's own, down to the syscall's entry point at most, joined as
/// `wait_for_partner <- fifo_open <- do_dentry_open`. Empty for an empty stack.
pub fn wait_site(frames: &[String]) -> String {
    frames
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
