//! Two reports compared (`syscall-profiler diff A B`): before and after a deploy, a good host
//! and a bad one. Rows are matched by group (process name, or the `--group-by` label) and
//! syscall, the processes of one name added up; everything is compared as a rate (per
//! second of each report), so reports of different lengths compare; rows are ranked by how
//! much syscall time per second changed.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The part of a saved report (`report --save`, or `--format json`) a diff reads.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot {
    pub duration_ns: u64,
    #[serde(default)]
    pub host: SnapshotHost,
    pub processes: Vec<SnapshotProcess>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SnapshotHost {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub kernel_release: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SnapshotProcess {
    pub comm: String,
    pub syscalls: Vec<SnapshotSyscall>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SnapshotSyscall {
    pub name: String,
    pub abi: String,
    pub calls: u64,
    pub errors: u64,
    pub entry_ns: u64,
    pub handler_ns: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
    pub latency_ns: SnapshotLatency,
    #[serde(default)]
    pub wait_sites: Vec<SnapshotSite>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SnapshotLatency {
    pub p99: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SnapshotSite {
    pub site: String,
    pub blocked_ns: u64,
}

/// A (group, syscall)'s rates in one report: per second of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub calls: f64,
    pub errors: f64,
    pub time_ns: f64,
    pub entry_ns: f64,
    pub handler_ns: f64,
    pub blocked_ns: f64,
    pub runqueue_ns: f64,
    /// The p99 latency of its busiest process's row (percentiles do not add up).
    pub p99_ns: u64,
}

/// A wait site's time asleep per second, in A and B.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteChange {
    pub site: String,
    pub blocked_ns_a: f64,
    pub blocked_ns_b: f64,
}

/// One (group, syscall) in both reports (zeros where it was absent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffRow {
    pub group: String,
    pub syscall: String,
    pub abi: String,
    pub a: Rates,
    pub b: Rates,
    /// Change of syscall time per second (ns/s): what rows are ranked by, by its size.
    pub time_change_ns: f64,
    /// Wait sites whose time asleep changed, the largest change first.
    pub wait_sites: Vec<SiteChange>,
}

/// Version of the diff's JSON.
pub const DIFF_SCHEMA_VERSION: u32 = 1;

/// The diff as JSON.
#[derive(Serialize)]
pub struct DiffReport {
    pub schema_version: u32,
    pub a: Side,
    pub b: Side,
    pub rows: Vec<DiffRow>,
}

/// Which report a side is.
#[derive(Serialize)]
pub struct Side {
    pub path: String,
    pub duration_ns: u64,
    pub host: SnapshotHost,
}

/// Wait sites a row lists.
pub const SITES_LISTED: usize = 3;

/// The rows of `a` and `b` matched and ranked (the largest change of time per second first).
pub fn diff(a: &Snapshot, b: &Snapshot) -> Vec<DiffRow> {
    /// Per (group, syscall, ABI): the rates in A and B, each wait site's time asleep per
    /// second in A and B, and the most calls of one process's row in A and B (whose p99 is
    /// taken).
    #[derive(Default)]
    struct Sum {
        a: Rates,
        b: Rates,
        sites: BTreeMap<String, (f64, f64)>,
        busiest: (u64, u64),
    }
    let mut rows: BTreeMap<(String, String, String), Sum> = BTreeMap::new();
    for (side, snapshot) in [(0, a), (1, b)] {
        let seconds = (snapshot.duration_ns as f64 / 1e9).max(1e-9);
        for process in &snapshot.processes {
            for syscall in &process.syscalls {
                let key = (process.comm.clone(), syscall.name.clone(), syscall.abi.clone());
                let Sum {
                    a: rates_a,
                    b: rates_b,
                    sites,
                    busiest,
                } = rows.entry(key).or_default();
                let rates = if side == 0 { rates_a } else { rates_b };
                let time_ns = syscall.entry_ns + syscall.handler_ns + syscall.blocked_ns + syscall.runqueue_ns;
                rates.calls += syscall.calls as f64 / seconds;
                rates.errors += syscall.errors as f64 / seconds;
                rates.time_ns += time_ns as f64 / seconds;
                rates.entry_ns += syscall.entry_ns as f64 / seconds;
                rates.handler_ns += syscall.handler_ns as f64 / seconds;
                rates.blocked_ns += syscall.blocked_ns as f64 / seconds;
                rates.runqueue_ns += syscall.runqueue_ns as f64 / seconds;
                let most = if side == 0 { &mut busiest.0 } else { &mut busiest.1 };
                if syscall.calls >= *most {
                    *most = syscall.calls;
                    rates.p99_ns = syscall.latency_ns.p99;
                }
                for site in &syscall.wait_sites {
                    let sum = sites.entry(site.site.clone()).or_default();
                    let per_second = site.blocked_ns as f64 / seconds;
                    if side == 0 {
                        sum.0 += per_second;
                    } else {
                        sum.1 += per_second;
                    }
                }
            }
        }
    }
    let mut diffed: Vec<DiffRow> = rows
        .into_iter()
        .map(|((group, syscall, abi), Sum { a, b, sites, .. })| {
            let mut wait_sites: Vec<SiteChange> = sites
                .into_iter()
                .map(|(site, (blocked_ns_a, blocked_ns_b))| SiteChange {
                    site,
                    blocked_ns_a,
                    blocked_ns_b,
                })
                .collect();
            wait_sites.sort_by(|x, y| {
                (y.blocked_ns_b - y.blocked_ns_a)
                    .abs()
                    .total_cmp(&(x.blocked_ns_b - x.blocked_ns_a).abs())
                    .then(x.site.cmp(&y.site))
            });
            wait_sites.truncate(SITES_LISTED);
            DiffRow {
                time_change_ns: b.time_ns - a.time_ns,
                group,
                syscall,
                abi,
                a,
                b,
                wait_sites,
            }
        })
        .collect();
    diffed.sort_by(|x, y| {
        y.time_change_ns
            .abs()
            .total_cmp(&x.time_change_ns.abs())
            .then_with(|| (&x.group, &x.syscall).cmp(&(&y.group, &y.syscall)))
    });
    diffed
}

/// How a changed figure reads: `+12%`, `-3%`, `new`, `gone`, `=`.
pub fn change(a: f64, b: f64) -> String {
    match (a > 0.0, b > 0.0) {
        (false, false) => "=".to_owned(),
        (false, true) => "new".to_owned(),
        (true, false) => "gone".to_owned(),
        (true, true) => {
            let percent = (b - a) / a * 100.0;
            if percent.abs() < 0.5 {
                "=".to_owned()
            } else {
                format!("{percent:+.0}%")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syscall(name: &str, calls: u64, blocked_ns: u64, p99: u64, sites: &[(&str, u64)]) -> SnapshotSyscall {
        SnapshotSyscall {
            name: name.into(),
            abi: "x86_64".into(),
            calls,
            errors: 0,
            entry_ns: calls * 100,
            handler_ns: calls * 1_000,
            blocked_ns,
            runqueue_ns: 0,
            latency_ns: SnapshotLatency { p99 },
            wait_sites: sites
                .iter()
                .map(|(site, blocked_ns)| SnapshotSite {
                    site: (*site).into(),
                    blocked_ns: *blocked_ns,
                })
                .collect(),
        }
    }

    fn snapshot(seconds: u64, processes: Vec<(&str, Vec<SnapshotSyscall>)>) -> Snapshot {
        Snapshot {
            duration_ns: seconds * 1_000_000_000,
            host: SnapshotHost::default(),
            processes: processes
                .into_iter()
                .map(|(comm, syscalls)| SnapshotProcess {
                    comm: comm.into(),
                    syscalls,
                })
                .collect(),
        }
    }

    #[test]
    fn reports_of_different_lengths_compare_as_rates_ranked_by_the_change() {
        // A: 10 s; two `web` processes read, one sleeps. B: 5 s; reads block far longer.
        let a = snapshot(
            10,
            vec![
                (
                    "web",
                    vec![syscall("read", 1_000, 10_000_000, 50_000, &[("pipe_read", 10_000_000)])],
                ),
                ("web", vec![syscall("read", 1_000, 10_000_000, 70_000, &[])]),
                ("cron", vec![syscall("nanosleep", 1, 1_000_000_000, 1, &[])]),
            ],
        );
        let b = snapshot(
            5,
            vec![
                (
                    "web",
                    vec![syscall(
                        "read",
                        1_000,
                        600_000_000,
                        900_000,
                        &[("pipe_read", 500_000_000), ("tcp_recvmsg", 100_000_000)],
                    )],
                ),
                ("db", vec![syscall("fsync", 10, 0, 1, &[])]),
            ],
        );
        let rows = diff(&a, &b);
        let read = &rows[0];
        assert_eq!((read.group.as_str(), read.syscall.as_str()), ("web", "read"));
        // 2,000 calls in 10 s vs 1,000 in 5 s: the same rate.
        assert_eq!((read.a.calls, read.b.calls), (200.0, 200.0));
        assert_eq!(read.a.blocked_ns, 2_000_000.0);
        assert_eq!(read.b.blocked_ns, 120_000_000.0);
        assert!(read.time_change_ns > 110_000_000.0);
        assert_eq!(read.b.p99_ns, 900_000);
        assert_eq!(read.wait_sites[0].site, "pipe_read");
        assert_eq!(read.wait_sites[0].blocked_ns_b, 100_000_000.0);
        assert_eq!(read.wait_sites[1].site, "tcp_recvmsg");
        // cron's sleep went away (100 ms/s less), db's fsync came.
        assert_eq!(rows[1].syscall, "nanosleep");
        assert!(rows[1].time_change_ns < 0.0);
        assert_eq!(change(rows[1].a.calls, rows[1].b.calls), "gone");
        let fsync = rows.iter().find(|r| r.syscall == "fsync").unwrap();
        assert_eq!(change(fsync.a.calls, fsync.b.calls), "new");
    }

    #[test]
    fn changes_read_as_percentages() {
        assert_eq!(change(100.0, 150.0), "+50%");
        assert_eq!(change(100.0, 100.2), "=");
        assert_eq!(change(0.0, 0.0), "=");
    }
}
