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
    /// Who woke them, the most calls first (at most [`WAKERS_LISTED`]).
    pub wakers: Vec<Waker>,
}

/// A process that woke blocked calls at a site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waker {
    /// 0: no wakeup seen (a timeout or a signal may end a wait without one), or a wakeup
    /// from an interrupt on an idle CPU.
    pub pid: u32,
    pub name: String,
    pub calls: u64,
    pub blocked_ns: u64,
}

/// Wakers listed per site.
pub const WAKERS_LISTED: usize = 3;

/// One (process, syscall, kernel stack, waker)'s blocked calls, as the kernel side adds them
/// up.
pub struct SleptAt {
    pub key: StatsKey,
    pub frames: Vec<String>,
    pub waker_tgid: u32,
    pub calls: u64,
    pub blocked_ns: u64,
}

/// The wait sites of each (process, syscall): stacks that name the same site added up, the
/// most time asleep first, each with its wakers named by `name_of`.
pub fn sites_by_key(
    stacks: impl IntoIterator<Item = SleptAt>,
    name_of: &dyn Fn(u32) -> String,
) -> BTreeMap<StatsKey, Vec<WaitSite>> {
    // (calls, blocked ns) by waker, per (key, site, I/O wait).
    type ByWaker = BTreeMap<u32, (u64, u64)>;
    let mut summed: BTreeMap<(StatsKey, String, bool), ByWaker> = BTreeMap::new();
    for slept in stacks {
        let site = match wait_site(&slept.frames) {
            site if site.is_empty() => "unknown".to_owned(),
            site => site,
        };
        let io_wait = is_io_wait(&slept.frames);
        let by_waker = summed.entry((slept.key, site, io_wait)).or_default();
        let sum = by_waker.entry(slept.waker_tgid).or_default();
        sum.0 += slept.calls;
        sum.1 += slept.blocked_ns;
    }
    let mut by_key: BTreeMap<StatsKey, Vec<WaitSite>> = BTreeMap::new();
    for ((key, site, io_wait), by_waker) in summed {
        let mut wakers: Vec<Waker> = by_waker
            .into_iter()
            .map(|(pid, (calls, blocked_ns))| Waker {
                pid,
                name: name_of(pid),
                calls,
                blocked_ns,
            })
            .collect();
        wakers.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.pid.cmp(&b.pid)));
        by_key.entry(key).or_default().push(WaitSite {
            site,
            io_wait,
            calls: wakers.iter().map(|w| w.calls).sum(),
            blocked_ns: wakers.iter().map(|w| w.blocked_ns).sum(),
            wakers: wakers.into_iter().take(WAKERS_LISTED).collect(),
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

/// What the blocked calls of a (process, syscall) waited on: where in the kernel they slept,
/// and on which files (calls on a descriptor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    pub sites: Vec<WaitSite>,
    pub files: Vec<FdWait>,
}

/// The blocked calls of a (process, syscall) whose wait site was recorded, on one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdWait {
    pub fd: u32,
    /// What the descriptor referred to: a path, `pipe:[inode]`, `socket:[inode]` (with its
    /// TCP peer), `anon_inode:[eventfd]`; for a file whose descriptor was closed before it
    /// could be read in `/proc`, its kind and inode (`file inode 1234`).
    pub target: String,
    pub calls: u64,
    pub blocked_ns: u64,
    /// Other processes holding the same pipe or socket at the end (`pid comm`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_end: Vec<String>,
}

/// Files listed per (process, syscall).
pub const FILES_LISTED: usize = 5;

/// One (process, syscall, descriptor, file)'s blocked calls, as the kernel side adds them up:
/// the file's inode number and mode (`st_mode`: its type bits tell a pipe, a socket, ...).
pub struct OnFile {
    pub key: StatsKey,
    pub fd: u32,
    pub ino: u64,
    pub mode: u32,
    pub calls: u64,
    pub blocked_ns: u64,
}

/// What a file is, from its mode's type bits.
pub fn file_kind(mode: u32) -> &'static str {
    match mode & 0o170_000 {
        0o010_000 => "pipe",
        0o140_000 => "socket",
        0o100_000 => "file",
        0o040_000 => "directory",
        0o020_000 => "char device",
        0o060_000 => "block device",
        0o120_000 => "symlink",
        _ => "anon",
    }
}

/// The name `/proc` gives a pipe or socket (`pipe:[ino]`), and for other files their kind
/// and inode: what a file is called when its descriptor could not be read in time.
pub fn unnamed_target(mode: u32, ino: u64) -> String {
    match file_kind(mode) {
        kind @ ("pipe" | "socket") => format!("{kind}:[{ino}]"),
        kind => format!("{kind} inode {ino}"),
    }
}

/// The files of each (process, syscall): entries naming the same descriptor and target (of
/// several lanes or epochs) added up, the most time asleep first, at most [`FILES_LISTED`].
/// `name_of`: what the descriptor referred to.
pub fn files_by_key(
    files: impl IntoIterator<Item = OnFile>,
    name_of: &dyn Fn(&OnFile) -> String,
) -> BTreeMap<StatsKey, Vec<FdWait>> {
    let mut summed: BTreeMap<(StatsKey, u32, String), (u64, u64)> = BTreeMap::new();
    for file in files {
        let sum = summed.entry((file.key, file.fd, name_of(&file))).or_default();
        sum.0 += file.calls;
        sum.1 += file.blocked_ns;
    }
    let mut by_key: BTreeMap<StatsKey, Vec<FdWait>> = BTreeMap::new();
    for ((key, fd, target), (calls, blocked_ns)) in summed {
        by_key.entry(key).or_default().push(FdWait {
            fd,
            target,
            calls,
            blocked_ns,
            other_end: Vec::new(),
        });
    }
    for files in by_key.values_mut() {
        sort_files(files);
    }
    by_key
}

/// The most time asleep first, at most [`FILES_LISTED`].
pub fn sort_files(files: &mut Vec<FdWait>) {
    files.sort_by(|a, b| b.blocked_ns.cmp(&a.blocked_ns).then(a.fd.cmp(&b.fd)));
    files.truncate(FILES_LISTED);
}

/// The sites and files of each (process, syscall) together.
pub fn waits_by_key(
    sites: BTreeMap<StatsKey, Vec<WaitSite>>,
    files: BTreeMap<StatsKey, Vec<FdWait>>,
) -> BTreeMap<StatsKey, Waits> {
    let mut waits: BTreeMap<StatsKey, Waits> = BTreeMap::new();
    for (key, sites) in sites {
        waits.entry(key).or_default().sites = sites;
    }
    for (key, files) in files {
        waits.entry(key).or_default().files = files;
    }
    waits
}

/// Which argument of `syscall` (by name) is the file descriptor it works on, if any.
pub fn fd_argument(syscall: &str) -> Option<usize> {
    FIRST_IS_FD.contains(&syscall).then_some(0)
}

/// The syscalls whose first argument is the file descriptor they work on.
pub const FIRST_IS_FD: [&str; 32] = [
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

    #[test]
    fn files_are_named_by_kind_when_their_descriptor_is_gone() {
        assert_eq!(unnamed_target(0o010_600, 77), "pipe:[77]");
        assert_eq!(unnamed_target(0o140_777, 78), "socket:[78]");
        assert_eq!(unnamed_target(0o100_644, 79), "file inode 79");
        assert_eq!(unnamed_target(0o600, 80), "anon inode 80");
    }

    #[test]
    fn files_of_a_row_add_up_by_descriptor_and_target() {
        let key = StatsKey { tgid: 10, nr: 0 };
        let on = |fd, ino, calls| OnFile {
            key,
            fd,
            ino,
            mode: 0o010_600,
            calls,
            blocked_ns: calls * 100,
        };
        // Two lanes' entries of fd 0 on the same pipe; fd 3 on another.
        let files = files_by_key([on(0, 7, 2), on(3, 8, 5), on(0, 7, 4)], &|file| {
            unnamed_target(file.mode, file.ino)
        });
        let row = &files[&key];
        assert_eq!(row.len(), 2);
        assert_eq!((row[0].fd, row[0].target.as_str(), row[0].calls), (0, "pipe:[7]", 6));
        assert_eq!((row[1].fd, row[1].calls, row[1].blocked_ns), (3, 5, 500));
    }

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
    fn sites_are_added_up_per_key_most_time_first_with_their_wakers() {
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
        let slept = |frames: &Vec<String>, waker_tgid, calls, blocked_ns| SleptAt {
            key,
            frames: frames.clone(),
            waker_tgid,
            calls,
            blocked_ns,
        };
        let name_of = |pid: u32| if pid == 0 { "-".to_owned() } else { format!("p{pid}") };
        let sites = sites_by_key(
            [
                slept(&pipe, 40, 3, 300),
                slept(&pipe_too, 40, 2, 200),
                slept(&pipe, 41, 1, 100),
                slept(&fifo, 0, 1, 1_000),
                slept(&Vec::new(), 0, 1, 5),
            ],
            &name_of,
        );
        let found = &sites[&key];
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].site, "wait_for_partner <- fifo_open");
        let read = &found[1];
        assert_eq!(
            (read.site.as_str(), read.calls, read.blocked_ns),
            ("pipe_read <- vfs_read <- ksys_read", 6, 600)
        );
        assert_eq!(
            read.wakers,
            [
                Waker {
                    pid: 40,
                    name: "p40".into(),
                    calls: 5,
                    blocked_ns: 500
                },
                Waker {
                    pid: 41,
                    name: "p41".into(),
                    calls: 1,
                    blocked_ns: 100
                },
            ]
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
