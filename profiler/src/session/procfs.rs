//! What `/proc` says about processes and threads: whether a process exists, its name, and
//! which threads are inside a syscall (for those already in one when profiling started).
use std::{fs, path::Path};

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

/// `(tid, pid, nr, blocked)` of every thread `/proc/PID/task/TID/syscall` shows inside a
/// syscall ("running" and -1 mean it is not).
pub fn proc_threads_in_syscalls() -> Vec<(u32, u32, u32, bool)> {
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
            let base = format!("/proc/{pid}/task/{tid}");
            let Some(nr) = std::fs::read_to_string(format!("{base}/syscall"))
                .ok()
                .and_then(|text| in_syscall_number(&text))
            else {
                continue;
            };
            // Field 3 of stat, after the parenthesised name: S and D are asleep.
            let blocked = std::fs::read_to_string(format!("{base}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with(['S', 'D']))
                })
                .unwrap_or(false);
            found.push((tid, pid, nr, blocked));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::in_syscall_number;

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
