//! What `/proc` says about processes and threads: whether a process exists, its name, which
//! threads are inside a syscall (for those already in one when profiling started), and what a
//! thread inside one waits on (its state, kernel stack, arguments and their targets).
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::FileExt,
    path::Path,
};

use super::affinity;
use crate::model::wait::stack_frame;

pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn read_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// A thread's own name (threads can name themselves apart from their process).
pub fn read_thread_comm(pid: u32, tid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// The syscall number in a `/proc/PID/task/TID/syscall` line, if the thread is inside one:
/// "running" and -1 mean it is not, and a kernel thread, which has no user registers, shows
/// "0" with a zero user stack pointer and program counter (the last two fields).
fn in_syscall_number(text: &str) -> Option<u32> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let nr = u32::try_from(fields.first()?.parse::<i64>().ok()?).ok()?;
    match fields.as_slice() {
        [.., sp, pc] if fields.len() >= 3 && !(*sp == "0x0" && *pc == "0x0") => Some(nr),
        _ => None,
    }
}

/// A thread inside a syscall, as `/proc/PID/task/TID/syscall` and `stat` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInSyscall {
    pub tid: u32,
    pub pid: u32,
    pub nr: u32,
    /// Asleep (`S` or `D`).
    pub blocked: bool,
    /// The CPU it last ran on.
    pub cpu: usize,
}

/// Every thread `/proc/PID/task/TID/syscall` shows inside a syscall ("running" and -1 mean it
/// is not).
pub fn proc_threads_in_syscalls() -> Vec<ProcInSyscall> {
    let numeric = |entry: std::fs::DirEntry| entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
    let mut found = Vec::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return found;
    };
    for pid in processes.filter_map(Result::ok).filter_map(numeric) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tasks.filter_map(Result::ok).filter_map(numeric) {
            let Some(nr) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .ok()
                .and_then(|text| in_syscall_number(&text))
            else {
                continue;
            };
            let (state, cpu) = thread_state_and_cpu(pid, tid).unwrap_or(('?', 0));
            found.push(ProcInSyscall {
                tid,
                pid,
                nr,
                blocked: matches!(state, 'S' | 'D'),
                cpu,
            });
        }
    }
    found
}

/// The state letter of a thread (`R`, `S`, `D`, `T`, ...).
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    thread_state_and_cpu(pid, tid).map(|(state, _)| state)
}

/// A thread's state letter and the CPU it last ran on: fields 3 and 39 of its `stat`.
fn thread_state_and_cpu(pid: u32, tid: u32) -> Option<(char, usize)> {
    state_and_cpu(&fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?)
}

/// Fields 3 and 39 of a `stat` text, counted after the parenthesised name (which may hold
/// anything).
fn state_and_cpu(stat: &str) -> Option<(char, usize)> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let cpu = fields.nth(39 - 4)?.parse().ok()?;
    Some((state, cpu))
}

/// When a thread last ran: its `se.exec_start` (`/proc/PID/task/TID/sched`), on the task clock
/// of the CPU it ran on (see [`task_clocks_now`]). `None` without `/proc/PID/sched`
/// (CONFIG_SCHED_DEBUG).
pub fn last_ran_ns(pid: u32, tid: u32) -> Option<u64> {
    exec_start_ns(&fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?)
}

/// The scheduler's task clock of each of `cpus`, now: the calling thread's own `se.exec_start`
/// (the start of its current run) read from on that CPU. The CPUs' task clocks drift apart by
/// the interrupt and steal time each has had since boot (3.6 s between the two CPUs of a
/// virtual machine where a hang came out longer than the process had lived), so a thread's
/// time off the CPU is taken on the clock of the CPU it last ran on. A CPU the agent may
/// not run on (a cpuset) gets the clock of the CPU it runs on: off by that drift. The
/// thread's affinity is restored.
pub fn task_clocks_now(cpus: &std::collections::BTreeSet<usize>) -> HashMap<usize, u64> {
    let own_clock = || exec_start_ns(&fs::read_to_string("/proc/thread-self/sched").ok()?);
    let allowed = affinity::allowed_cpus();
    let mut clocks = HashMap::new();
    for &cpu in cpus {
        if allowed.contains(&cpu) && affinity::pin_to(&[cpu]) {
            if let Some(now_ns) = own_clock() {
                clocks.insert(cpu, now_ns);
            }
        }
    }
    affinity::pin_to(&allowed);
    if let Some(now_ns) = own_clock() {
        for &cpu in cpus {
            clocks.entry(cpu).or_insert(now_ns);
        }
    }
    clocks
}

/// `se.exec_start` of a `/proc/PID/sched` text (milliseconds with six decimals), in ns.
fn exec_start_ns(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("se.exec_start"))?;
    let (ms, fraction) = line.rsplit(':').next()?.trim().split_once('.')?;
    let fraction_ns: u64 = format!("{fraction:0<6}").get(..6)?.parse().ok()?;
    Some(ms.parse::<u64>().ok()? * 1_000_000 + fraction_ns)
}

/// The function names of a thread's kernel stack, innermost first (`/proc/PID/task/TID/stack`,
/// root only); empty when it cannot be read.
pub fn kernel_stack(pid: u32, tid: u32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack"))
        .map(|text| text.lines().filter_map(stack_frame).collect())
        .unwrap_or_default()
}

/// The six arguments of the syscall a thread is inside (`/proc/PID/task/TID/syscall`).
pub fn syscall_args(pid: u32, tid: u32) -> Option<[u64; 6]> {
    parse_syscall_args(&fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?)
}

fn parse_syscall_args(text: &str) -> Option<[u64; 6]> {
    in_syscall_number(text)?;
    let mut args = [0u64; 6];
    let mut fields = text.split_whitespace().skip(1);
    for arg in &mut args {
        *arg = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    Some(args)
}

/// What descriptor `fd` of `pid` refers to: a path, `pipe:[inode]`, `socket:[inode]`, ...;
/// a TCP socket with its peer (`socket:[inode] peer 127.0.0.1:8080`).
pub fn fd_target(pid: u32, fd: i64) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let target = link.to_string_lossy().into_owned();
    Some(match tcp_peer(pid, &target) {
        Some(peer) => format!("{target} peer {peer}"),
        None => target,
    })
}

/// A NUL-terminated string in `pid`'s memory at `address` (a path argument), at most 4 KiB.
pub fn read_user_string(pid: u32, address: u64) -> Option<String> {
    let memory = fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buffer = vec![0u8; 4096];
    let read = memory.read_at(&mut buffer, address).ok()?;
    let end = buffer[..read].iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

/// Descriptors [`holders_of`] looks at before giving up: a bound on its cost on a host with
/// many open files.
const HOLDER_SCAN_LIMIT: usize = 500_000;
/// Holders it names per target.
const HOLDERS_SHOWN: usize = 8;

/// The processes with a descriptor on each of `targets` (pipes, sockets, named pipes), as
/// `(pid, comm)`: the other ends of what threads wait on. One pass over every process's
/// descriptors, best effort and bounded.
pub fn holders_of(targets: &HashSet<String>) -> HashMap<String, Vec<(u32, String)>> {
    let mut holders: HashMap<String, Vec<(u32, String)>> = HashMap::new();
    let mut scanned = 0;
    let Ok(processes) = fs::read_dir("/proc") else {
        return holders;
    };
    let pids = processes
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut seen_here = HashSet::new();
        for fd in fds.filter_map(Result::ok) {
            scanned += 1;
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if targets.contains(link.as_ref()) && seen_here.insert(link.to_string()) {
                let list = holders.entry(link.into_owned()).or_default();
                if list.len() < HOLDERS_SHOWN {
                    list.push((pid, read_comm(pid).unwrap_or_default()));
                }
            }
        }
        if scanned >= HOLDER_SCAN_LIMIT {
            break;
        }
    }
    holders
}

/// The other ends of what processes wait on: for each `(pid, target)` (a descriptor's
/// target, a TCP peer after " peer " left aside) that `shared` says others can hold, the
/// other processes holding it (`pid comm`), from one [`holders_of`] scan for all of them.
pub fn other_ends(ends: &[(u32, &str)], shared: &dyn Fn(&str) -> bool) -> Vec<Vec<String>> {
    let file = |target: &str| target.split(" peer ").next().unwrap_or(target).to_owned();
    let targets: HashSet<String> = ends
        .iter()
        .map(|(_, target)| file(target))
        .filter(|target| shared(target))
        .collect();
    let holders = if targets.is_empty() {
        HashMap::new()
    } else {
        holders_of(&targets)
    };
    ends.iter()
        .map(|&(own, target)| {
            holders
                .get(&file(target))
                .into_iter()
                .flatten()
                // The agent may hold what it profiles (its own stdin, in a pipeline).
                .filter(|(pid, _)| *pid != own && *pid != std::process::id())
                .map(|(pid, comm)| format!("{pid} {comm}"))
                .collect()
        })
        .collect()
}

/// Whether a descriptor's target is a pipe or a socket (its other end is who else holds it).
pub fn is_pipe_or_socket(target: &str) -> bool {
    target.starts_with("pipe:") || target.starts_with("socket:")
}

/// The remote address of a TCP socket (`socket:[inode]`) of `pid`, from its network
/// namespace's `/proc/PID/net/tcp` and `tcp6`.
pub fn tcp_peer(pid: u32, target: &str) -> Option<String> {
    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        text.lines().skip(1).find_map(|line| tcp_line_peer(line, inode))
    })
}

/// The remote address of a `/proc/net/tcp{,6}` line if its socket is `inode`.
fn tcp_line_peer(line: &str, inode: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(9) != Some(&inode) {
        return None;
    }
    let (address, port) = fields.get(2)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match address.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?.swap_bytes()).into(),
        32 => {
            // Four 32-bit words, each in host (little-endian) order.
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(&address[i * 8..i * 8 + 8], 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            std::net::Ipv6Addr::from(bytes).into()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_start_is_read_in_nanoseconds() {
        let text = "sleep (26035, #threads: 1)\n----\nse.exec_start                                :      30626132.078835\nse.vruntime : 1.0\n";
        assert_eq!(exec_start_ns(text), Some(30_626_132_078_835));
        assert_eq!(exec_start_ns("se.vruntime : 1.0\n"), None);
    }

    use super::{exec_start_ns, in_syscall_number, parse_syscall_args, state_and_cpu, tcp_line_peer};

    #[test]
    fn state_and_last_cpu_from_stat() {
        // A name that looks like the end of one; the CPU is field 39 (here 3), exit signal 17.
        let stat = "5214 (a) S (b) R 5211 5211 11468 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 2613743 \
                    3133440 390 18446744073709551615 94070618320896 94070618340777 140733291076448 0 0 0 0 0 \
                    0 0 0 0 17 3 0 0 0 0 0 94070618356784 94070618358400";
        assert_eq!(state_and_cpu(stat), Some(('R', 3)));
        assert_eq!(state_and_cpu("5214 (cut) S 1 2 3"), None);
    }

    #[test]
    fn syscall_arguments() {
        let openat = "257 0xffffff9c 0x7ffc10a56ae5 0x0 0x0 0x0 0x0 0x7ffc10a54890 0x7fc437f07011";
        assert_eq!(
            parse_syscall_args(openat),
            Some([0xffffff9c, 0x7ffc10a56ae5, 0, 0, 0, 0])
        );
        assert_eq!(parse_syscall_args("running"), None);
    }

    #[test]
    fn tcp_peers() {
        let v4 = "   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(tcp_line_peer(v4, "424242").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(tcp_line_peer(v4, "1"), None);
        let v6 = "   0: 00000000000000000000000001000000:A2C4 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 77 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(tcp_line_peer(v6, "77").as_deref(), Some("[::1]:8080"));
    }

    #[test]
    fn proc_syscall_lines() {
        // A thread blocked in ppoll (271), a thread in user space, one that is not in a call.
        let blocked = "271 0x5 0x7ffc 0x0 0x0 0x8 0x0 0x7ffd45e0 0x7f1a7fd40aec";
        assert_eq!(in_syscall_number(blocked), Some(271));
        assert_eq!(in_syscall_number("running"), None);
        assert_eq!(in_syscall_number("-1 0x7ffd45e0 0x7f1a7fd40aec"), None);
        // A kernel thread: no user registers, not in a syscall at all.
        assert_eq!(in_syscall_number("0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0"), None);
        // read (0) from user space is a real one.
        assert_eq!(
            in_syscall_number("0 0x3 0x5600 0x1000 0x0 0x0 0x0 0x7ffd45e0 0x7f1a7fd4"),
            Some(0)
        );
        assert_eq!(in_syscall_number(""), None);
    }
}
