//! A report's rows per thread (`report --threads`): each thread's calls, errors and time off
//! the CPU per syscall are exact (the kernel side counts them apart); its handler time is its
//! calls times the mean handler time of its process's calls of the same syscall (the kernel
//! side times a sample of calls per process, not per thread).
use std::collections::BTreeMap;

use profiler_common::StatsKey;
use serde::Serialize;

use crate::model::{
    charges::Charges,
    names::{decode_nr, syscall_name},
    split::Split,
    store::SyscallTotals,
};

/// One thread's calls of one syscall, as the kernel side counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCalls {
    pub tid: u32,
    /// The thread's name (at its first call of the syscall).
    pub name: String,
    /// Its process and the syscall.
    pub key: StatsKey,
    pub calls: u64,
    pub errors: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
}

/// A thread of a process, and where its time at the kernel boundary went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadReport {
    pub tid: u32,
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    #[serde(flatten)]
    pub split: Split,
    /// Its syscalls, the most time first.
    pub syscalls: Vec<ThreadSyscall>,
}

/// A thread's calls of one syscall.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadSyscall {
    pub name: String,
    pub abi: String,
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    #[serde(flatten)]
    pub split: Split,
}

/// The threads of each process (by pid), the most time first: `rows` split with `charges`,
/// handler time from the process's totals (`processes`, by (process, syscall)); named by
/// `renamed` (the name each thread that named itself gave itself last, by tid).
pub fn thread_reports(
    rows: &[ThreadCalls],
    renamed: &BTreeMap<u32, String>,
    processes: &BTreeMap<StatsKey, SyscallTotals>,
    charges: &Charges,
) -> BTreeMap<u32, Vec<ThreadReport>> {
    let mut threads: BTreeMap<(u32, u32), ThreadReport> = BTreeMap::new();
    // A row keeps the thread's name at its first call of the syscall: a thread that named
    // itself has rows under its old name too. It goes by the name it gave itself, else by
    // the one most of its calls had.
    let mut names: BTreeMap<(u32, u32), BTreeMap<&str, u64>> = BTreeMap::new();
    for row in rows {
        *names
            .entry((row.key.tgid, row.tid))
            .or_default()
            .entry(row.name.as_str())
            .or_default() += row.calls;
        let handler_ns = match processes.get(&row.key) {
            Some(totals) if totals.calls > 0 => {
                (totals.handler_ns as f64 / totals.calls as f64 * row.calls as f64).round() as u64
            }
            _ => 0,
        };
        let split = charges.split(row.calls, handler_ns, row.blocked_ns, row.runqueue_ns);
        let (abi, nr) = decode_nr(row.key.nr);
        let thread = threads.entry((row.key.tgid, row.tid)).or_insert_with(|| ThreadReport {
            tid: row.tid,
            name: row.name.clone(),
            calls: 0,
            errors: 0,
            total_ns: 0,
            split: Split::default(),
            syscalls: Vec::new(),
        });
        thread.calls += row.calls;
        thread.errors += row.errors;
        thread.total_ns += split.total_ns();
        thread.split.add(&split);
        thread.syscalls.push(ThreadSyscall {
            name: syscall_name(abi, nr).into_owned(),
            abi: abi.as_str().to_owned(),
            calls: row.calls,
            errors: row.errors,
            total_ns: split.total_ns(),
            split,
        });
    }
    let mut by_process: BTreeMap<u32, Vec<ThreadReport>> = BTreeMap::new();
    for ((pid, tid), mut thread) in threads {
        if let Some(name) = renamed.get(&tid) {
            thread.name = name.clone();
        } else if let Some((name, _)) = names[&(pid, tid)].iter().max_by_key(|(_, calls)| **calls) {
            thread.name = (*name).to_owned();
        }
        thread
            .syscalls
            .sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.name.cmp(&b.name)));
        by_process.entry(pid).or_default().push(thread);
    }
    for threads in by_process.values_mut() {
        threads.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.tid.cmp(&b.tid)));
    }
    by_process
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_their_own_times_and_their_share_of_the_handler_estimate() {
        let key = |tgid, nr| StatsKey { tgid, nr };
        // Process 10: 300 reads in 3,000 ns of handler time in all (10 ns each); 0 (getppid).
        let processes = BTreeMap::from([(key(10, 0), SyscallTotals::of_calls(300, 3_000, 0, 0, 10))]);
        let calls = |tid: u32, name: &str, nr, calls, blocked_ns, runqueue_ns| ThreadCalls {
            tid,
            name: name.into(),
            key: key(10, nr),
            calls,
            errors: 0,
            blocked_ns,
            runqueue_ns,
        };
        let rows = [
            calls(11, "reader", 0, 100, 5_000_000, 0),
            calls(12, "worker", 0, 200, 0, 7_000),
            // Its first getppid calls came before it named itself.
            calls(12, "app", 110, 50, 0, 0),
        ];
        let charges = Charges {
            boundary_ns_per_call: 100.0,
            instrumentation_ns_per_call: 0.0,
            ..Charges::default()
        };
        let threads = &thread_reports(&rows, &BTreeMap::new(), &processes, &charges)[&10];
        assert_eq!(threads.len(), 2);
        let reader = &threads[0];
        assert_eq!((reader.tid, reader.name.as_str()), (11, "reader"));
        assert_eq!(reader.split.handler_ns, 1_000, "100 calls at the process's 10 ns");
        assert_eq!(reader.split.blocked_ns, 5_000_000);
        assert_eq!(reader.split.entry_ns, 10_000);
        let worker = &threads[1];
        assert_eq!((worker.name.as_str(), worker.calls), ("worker", 250));
        assert_eq!(worker.split.runqueue_ns, 7_000);
        // getppid has no process row here: no handler estimate, the entry charge only.
        assert_eq!(worker.syscalls[0].name, "read");
        assert_eq!(worker.syscalls[1].name, "getppid");
        assert_eq!(worker.syscalls[1].split.handler_ns, 0);
        assert_eq!(worker.total_ns, worker.split.total_ns());
        // The name it gave itself last, whatever most of its calls had.
        let renamed = BTreeMap::from([(12, "pool-1".to_owned())]);
        let threads = &thread_reports(&rows, &renamed, &processes, &charges)[&10];
        assert_eq!(threads[1].name, "pool-1");
    }
}
