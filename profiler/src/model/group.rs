//! A report's rows by group instead of by process (`report --group-by comm|cgroup`): a shell
//! loop that ran `ls` 200 times is one `ls` row, not 200. The processes of a group are added
//! up per syscall, wait sites and their wakers too.
use std::collections::BTreeMap;

use profiler_common::StatsKey;

use crate::model::{
    store::SyscallTotals,
    wait::{sort_files, FdWait, WaitSite, Waits, Waker, WAKERS_LISTED},
};

/// Totals and wait sites by group, each group keyed by its smallest pid.
#[derive(Debug, Default, PartialEq)]
pub struct Grouped {
    pub totals: BTreeMap<StatsKey, SyscallTotals>,
    pub waits: BTreeMap<StatsKey, Waits>,
    /// By the pid a group is keyed by: its name and its processes (ascending).
    pub groups: BTreeMap<u32, (String, Vec<u32>)>,
}

/// Adds up the processes of each group (`group_of` a pid).
pub fn group(
    totals: &BTreeMap<StatsKey, SyscallTotals>,
    waits: &BTreeMap<StatsKey, Waits>,
    group_of: &dyn Fn(u32) -> String,
) -> Grouped {
    let mut members: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for key in totals.keys() {
        let pids = members.entry(group_of(key.tgid)).or_default();
        if pids.last() != Some(&key.tgid) {
            pids.push(key.tgid);
        }
    }
    let mut grouped = Grouped::default();
    let mut first_of: BTreeMap<u32, u32> = BTreeMap::new();
    for (name, mut pids) in members {
        pids.sort_unstable();
        pids.dedup();
        let first = pids[0];
        for &pid in &pids {
            first_of.insert(pid, first);
        }
        grouped.groups.insert(first, (name, pids));
    }
    let grouped_key = |key: &StatsKey| StatsKey {
        tgid: first_of[&key.tgid],
        nr: key.nr,
    };
    for (key, row) in totals {
        grouped.totals.entry(grouped_key(key)).or_default().merge(row);
    }
    for (key, waits) in waits {
        if first_of.contains_key(&key.tgid) {
            let group = grouped.waits.entry(grouped_key(key)).or_default();
            merge_sites(&mut group.sites, &waits.sites);
            merge_files(&mut group.files, &waits.files);
        }
    }
    grouped
}

/// Adds `more` into `files`: the same descriptor and target once (the processes of a group
/// have their own descriptors: the same number names the same file only if the target is
/// the same too).
fn merge_files(files: &mut Vec<FdWait>, more: &[FdWait]) {
    for file in more {
        match files
            .iter_mut()
            .find(|known| known.fd == file.fd && known.target == file.target)
        {
            Some(known) => {
                known.calls += file.calls;
                known.blocked_ns += file.blocked_ns;
            }
            None => files.push(file.clone()),
        }
    }
    sort_files(files);
}

/// Adds `more` into `sites`: the same site (and I/O wait) once, its calls, time and wakers
/// added up; the most time asleep first.
fn merge_sites(sites: &mut Vec<WaitSite>, more: &[WaitSite]) {
    for site in more {
        match sites
            .iter_mut()
            .find(|known| known.site == site.site && known.io_wait == site.io_wait)
        {
            Some(known) => {
                known.calls += site.calls;
                known.blocked_ns += site.blocked_ns;
                merge_wakers(&mut known.wakers, &site.wakers);
            }
            None => sites.push(site.clone()),
        }
    }
    sites.sort_by(|a, b| b.blocked_ns.cmp(&a.blocked_ns).then(a.site.cmp(&b.site)));
}

fn merge_wakers(wakers: &mut Vec<Waker>, more: &[Waker]) {
    for waker in more {
        match wakers.iter_mut().find(|known| known.pid == waker.pid) {
            Some(known) => {
                known.calls += waker.calls;
                known.blocked_ns += waker.blocked_ns;
            }
            None => wakers.push(waker.clone()),
        }
    }
    wakers.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.pid.cmp(&b.pid)));
    wakers.truncate(WAKERS_LISTED);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, calls: u64, waker: u32) -> WaitSite {
        WaitSite {
            site: name.into(),
            io_wait: false,
            calls,
            blocked_ns: calls * 10,
            wakers: vec![Waker {
                pid: waker,
                name: format!("p{waker}"),
                calls,
                blocked_ns: calls * 10,
            }],
        }
    }

    #[test]
    fn processes_of_a_group_add_up() {
        let key = |tgid, nr| StatsKey { tgid, nr };
        // Three `ls` (pids 30, 10, 20) and one `sh` (5).
        let totals = BTreeMap::from([
            (key(30, 0), SyscallTotals::of_calls(3, 30, 0, 0, 10)),
            (key(10, 0), SyscallTotals::of_calls(1, 10, 0, 0, 10)),
            (key(10, 1), SyscallTotals::of_calls(2, 20, 0, 0, 10)),
            (key(20, 0), SyscallTotals::of_calls(5, 50, 0, 0, 10)),
            (key(5, 61), SyscallTotals::of_calls(3, 3, 9_000, 0, 3_000)),
        ]);
        let file = |target: &str, calls| FdWait {
            fd: 0,
            target: target.into(),
            calls,
            blocked_ns: calls * 10,
            other_end: Vec::new(),
        };
        let waits = BTreeMap::from([
            (
                key(10, 0),
                Waits {
                    sites: vec![site("pipe_read", 1, 5)],
                    files: vec![file("pipe:[1]", 1)],
                },
            ),
            (
                key(30, 0),
                Waits {
                    sites: vec![site("pipe_read", 2, 5), site("ep_poll", 1, 0)],
                    files: vec![file("pipe:[1]", 2), file("pipe:[2]", 1)],
                },
            ),
        ]);
        let name = |pid: u32| if pid == 5 { "sh".to_owned() } else { "ls".to_owned() };
        let grouped = group(&totals, &waits, &name);
        assert_eq!(grouped.groups[&10], ("ls".to_owned(), vec![10, 20, 30]));
        assert_eq!(grouped.groups[&5], ("sh".to_owned(), vec![5]));
        assert_eq!(grouped.totals[&key(10, 0)].calls, 9);
        assert_eq!(grouped.totals[&key(10, 1)].calls, 2);
        assert_eq!(grouped.totals[&key(5, 61)].calls, 3);
        assert_eq!(grouped.totals.len(), 3);
        let sites = &grouped.waits[&key(10, 0)].sites;
        assert_eq!((sites[0].site.as_str(), sites[0].calls), ("pipe_read", 3));
        assert_eq!(sites[0].wakers[0].calls, 3);
        assert_eq!(sites[1].site, "ep_poll");
        // fd 0 of two processes: one file where it is the same pipe, two where not.
        let files = &grouped.waits[&key(10, 0)].files;
        assert_eq!(files.len(), 2);
        assert_eq!((files[0].target.as_str(), files[0].calls), ("pipe:[1]", 3));
    }
}
