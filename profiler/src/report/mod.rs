//! The one-shot incident report: processes ranked by syscall time, each with its top
//! syscalls, the four-part split, percentiles, errors by name, class and advice.
//! Built from the model's views as plain data, then rendered as [`text`] or JSON (serde).
pub mod diff;
pub mod html;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use profiler_common::StatsKey;

use crate::model::{
    charges::Charges,
    histogram::Percentiles,
    names::signal_name,
    overflow::Overflow,
    split::Split,
    view::{ProcessView, SyscallView},
    wait::{FdWait, WaitSite, Waits},
};
use crate::model::{host::Host, thread_rows::ThreadReport, threads::Hang};

/// 2: `overflow` is keyed by the counters' names (`slot_collision`, was `slot_collisions`).
/// 3: `host` (where and when); `command_exit_code` also for a command a signal ended
/// (128 + its number, as a shell has it), with `command_signal`; `sampling_cut_ns`;
/// `in_flight` (threads in a long call at the end) and `hang_threshold_ns`.
/// 4: `returned` (hangs at the start that returned), `waited_on` per syscall (the files),
/// `latency_histogram` per syscall, `threads` per process and `threads_lost` (`--threads`).
/// 5: `agent_cost` (the profiler's own start-up and CPU); `host.time` is when profiling
/// began (it was when the profiler started, seconds earlier on a loaded machine).
pub const SCHEMA_VERSION: u32 = 5;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub host: Host,
    pub duration_ns: u64,
    /// The boundary cost charged per call, and the tracing inside the window between the
    /// tracepoints, already taken out of every handler time (see `syscall-profiler
    /// calibrate`).
    #[serde(flatten)]
    pub charges: Charges,
    /// `system-wide`, `pids` or `command`.
    pub scope: String,
    /// Timing was sampled 1 in this many of the calls that stayed on the CPU (1: every call
    /// timed). Counts and errors are exact; times, percentiles and the split are estimates
    /// when it is above 1.
    pub sample_every: u32,
    /// The profiler's own pid: its calls are never in the report.
    pub agent_pid: u32,
    pub agent_cost: AgentCost,
    /// Exit code of the profiled command (`-- COMMAND`): its own, or 128 + the number of
    /// the signal that ended it; `report` exits with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_exit_code: Option<i32>,
    /// The signal that ended the command (`SIGKILL`), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_signal: Option<String>,
    /// Events the kernel side could not record; all zero on a healthy run.
    pub overflow: Overflow,
    pub processes: Vec<ProcessReport>,
    /// Threads inside one call for longer than `--hang-threshold` at the end, longest first
    /// (system-wide, not those waiting by design: event loops, sleeps, parents), at most
    /// [`HANGS_LISTED`]; how many there were.
    pub in_flight: Vec<Hang>,
    pub in_flight_total: usize,
    /// Threads asleep inside one call for longer than `--hang-threshold` at the start
    /// (`--pid` or system-wide; `elapsed_ns`: their time off the CPU then) that returned
    /// during the report, read at the start; at most [`HANGS_LISTED`]. (Those still inside
    /// it are in `in_flight`, their time before the start added.)
    pub returned: Vec<Hang>,
    pub hang_threshold_ns: u64,
    /// Blocked calls whose wait site could not be recorded (a table full): the sites listed
    /// are short of them.
    pub wait_sites_lost: u64,
    /// With `--threads`: calls the per-thread table had no room for (counted in their
    /// processes' rows, missing from their threads').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_lost: Option<u64>,
}

/// What the profiler itself cost: the observer's share of the machine it observed. On a
/// loaded machine start-up (loading and checking the programs, attaching, calibrating) takes
/// seconds, minutes beside 1,000 busy processes (BENCHMARKS.md, run AH); the reads' cost
/// grows with the processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct AgentCost {
    /// From the profiler's start to the start of profiling.
    pub startup_ns: u64,
    /// CPU time (all its threads) it used to start.
    pub startup_cpu_ns: u64,
    /// How long it profiled (its reads of the tables until the end of the window), and the
    /// CPU time it used meanwhile.
    pub profiling_ns: u64,
    pub profiling_cpu_ns: u64,
}

impl AgentCost {
    /// CPU used while profiling, in percent of one CPU.
    pub fn profiling_cpu_percent(&self) -> f64 {
        match self.profiling_ns {
            0 => 0.0,
            wall => self.profiling_cpu_ns as f64 / wall as f64 * 100.0,
        }
    }
}

/// Hangs a report lists at most.
pub const HANGS_LISTED: usize = 200;

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    /// The process; grouped (`--group-by`), the group's smallest pid.
    pub pid: u32,
    /// Its name; grouped, the group's (a name or a cgroup path).
    pub comm: String,
    /// The processes added up in this row (one, but with `--group-by`).
    pub pids: Vec<u32>,
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    /// Of `total_ns`, the time in calls that hold work up: all but those waiting by design
    /// (classes `idle-wait`, `sleep`, `child-wait`). Processes are ranked by it.
    pub active_ns: u64,
    #[serde(flatten)]
    pub split: Split,
    pub class: String,
    pub syscalls: Vec<SyscallReport>,
    /// With `--threads`: its threads, the most time first (see `model::thread_rows`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyscallReport {
    pub name: String,
    pub nr: u32,
    pub abi: String,
    pub calls: u64,
    pub errors: u64,
    pub errno: BTreeMap<String, u64>,
    pub total_ns: u64,
    #[serde(flatten)]
    pub split: Split,
    pub latency_ns: Percentiles,
    /// The latency distribution per power of two, `[low_ns, high_ns, calls]`, the ranges
    /// with calls only, entry included (as the percentiles).
    pub latency_histogram: Vec<[u64; 3]>,
    pub class: String,
    pub advice: String,
    /// Handler time the sampled estimate had beyond what the process's threads could have
    /// spent, taken out (0 but for outliers: see the README's sampling section).
    pub sampling_cut_ns: u64,
    /// Where its blocked calls slept, the most time asleep first (at most
    /// [`WAIT_SITES_LISTED`]).
    pub wait_sites: Vec<WaitSite>,
    /// The files its blocked calls on a descriptor waited on, the most time asleep first
    /// (calls whose wait site was recorded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waited_on: Vec<FdWait>,
}

/// Wait sites a report lists per (process, syscall).
pub const WAIT_SITES_LISTED: usize = 5;

/// What the report is built from.
pub struct Inputs<'a> {
    pub host: Host,
    pub processes: &'a [ProcessView],
    /// How rows are ranked.
    pub sort: SortBy,
    /// With `--group-by`: each group's name and processes, by the pid its rows are under.
    pub groups: Option<&'a BTreeMap<u32, (String, Vec<u32>)>>,
    pub comm: &'a dyn Fn(u32) -> String,
    pub duration_ns: u64,
    pub charges: Charges,
    pub scope: &'a str,
    pub sample_every: u32,
    pub command_exit: Option<CommandExit>,
    pub overflow: Overflow,
    /// At most [`HANGS_LISTED`], the longest first; and how many there were.
    pub in_flight: Vec<Hang>,
    pub in_flight_total: usize,
    pub returned: Vec<Hang>,
    pub hang_threshold_ns: u64,
    /// Where blocked calls slept, per (process, syscall); and the blocked calls whose site
    /// could not be recorded.
    pub wait_sites: &'a BTreeMap<StatsKey, Waits>,
    pub wait_sites_lost: u64,
    /// With `--threads`: the threads of each row (by its pid), and the calls they lost.
    pub threads: Option<(&'a BTreeMap<u32, Vec<ThreadReport>>, u64)>,
    pub agent_cost: AgentCost,
}

/// What ranks a report's rows (the most first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Syscall time that holds work up: all but the calls that wait by design (their rows
    /// last), then total time.
    #[default]
    Active,
    /// Total syscall time, waits by design included.
    Total,
    Calls,
    Errors,
}

impl SortBy {
    fn key_of_process(self, process: &ProcessReport) -> u64 {
        match self {
            SortBy::Active => process.active_ns,
            SortBy::Total => process.total_ns,
            SortBy::Calls => process.calls,
            SortBy::Errors => process.errors,
        }
    }

    fn key_of_syscall(self, syscall: &SyscallReport) -> u64 {
        match self {
            SortBy::Active | SortBy::Total => syscall.total_ns,
            SortBy::Calls => syscall.calls,
            SortBy::Errors => syscall.errors,
        }
    }
}

/// How the profiled command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandExit {
    Code(i32),
    Signal(i32),
}

impl CommandExit {
    /// The exit code a shell would give: the command's own, or 128 + the signal's number.
    pub fn code(self) -> i32 {
        match self {
            CommandExit::Code(code) => code,
            CommandExit::Signal(signal) => 128 + signal,
        }
    }
}

impl SyscallReport {
    fn new(view: &SyscallView, seconds: f64, waits: Option<&Waits>) -> SyscallReport {
        let class = view.class(seconds);
        SyscallReport {
            name: view.name.clone(),
            nr: view.nr,
            abi: view.abi.as_str().to_owned(),
            calls: view.calls,
            errors: view.errors,
            errno: view.errnos.iter().cloned().collect(),
            total_ns: view.total_ns(),
            split: view.split,
            latency_ns: view.percentiles(),
            // Sparse: a report of thousands of rows keeps a few ranges each.
            latency_histogram: view
                .latency
                .by_power_of_two(view.latency_offset_ns)
                .into_iter()
                .filter(|[_, _, calls]| *calls > 0)
                .collect(),
            class: class.as_str().to_owned(),
            advice: class.advice().to_owned(),
            sampling_cut_ns: view.sampling_cut_ns,
            wait_sites: waits
                .map(|waits| waits.sites.iter().take(WAIT_SITES_LISTED).cloned().collect())
                .unwrap_or_default(),
            waited_on: waits.map(|waits| waits.files.clone()).unwrap_or_default(),
        }
    }
}

/// Builds the report: processes by total syscall time (descending), their syscalls likewise.
pub fn build(inputs: &Inputs) -> Report {
    let seconds = inputs.duration_ns as f64 / 1e9;
    let mut processes: Vec<ProcessReport> = inputs
        .processes
        .iter()
        .map(|process| ProcessReport {
            pid: process.pid,
            comm: match inputs.groups.and_then(|groups| groups.get(&process.pid)) {
                Some((name, _)) => name.clone(),
                None => (inputs.comm)(process.pid),
            },
            pids: match inputs.groups.and_then(|groups| groups.get(&process.pid)) {
                Some((_, pids)) => pids.clone(),
                None => vec![process.pid],
            },
            calls: process.calls,
            errors: process.errors,
            total_ns: process.total_ns(),
            active_ns: process.active_ns(),
            split: process.split,
            class: process.class(seconds).as_str().to_owned(),
            syscalls: process
                .syscalls
                .iter()
                .map(|syscall| SyscallReport::new(syscall, seconds, inputs.wait_sites.get(&syscall.key)))
                .collect(),
            threads: inputs
                .threads
                .and_then(|(threads, _)| threads.get(&process.pid))
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    // Time that holds work up first: an idle event loop or a shell waiting for its command
    // is not the headline.
    let sort = inputs.sort;
    processes.sort_by(|a, b| {
        sort.key_of_process(b)
            .cmp(&sort.key_of_process(a))
            .then(b.total_ns.cmp(&a.total_ns))
            .then(a.pid.cmp(&b.pid))
    });
    if sort != SortBy::Active {
        for process in &mut processes {
            process.syscalls.sort_by(|a, b| {
                sort.key_of_syscall(b)
                    .cmp(&sort.key_of_syscall(a))
                    .then(a.name.cmp(&b.name))
            });
        }
    }
    Report {
        schema_version: SCHEMA_VERSION,
        host: inputs.host.clone(),
        duration_ns: inputs.duration_ns,
        charges: inputs.charges,
        scope: inputs.scope.to_owned(),
        sample_every: inputs.sample_every,
        agent_pid: std::process::id(),
        agent_cost: inputs.agent_cost,
        command_exit_code: inputs.command_exit.map(CommandExit::code),
        command_signal: match inputs.command_exit {
            Some(CommandExit::Signal(signal)) => Some(signal_name(signal).into_owned()),
            _ => None,
        },
        overflow: inputs.overflow,
        processes,
        in_flight: inputs.in_flight.clone(),
        in_flight_total: inputs.in_flight_total,
        returned: inputs.returned.clone(),
        wait_sites_lost: inputs.wait_sites_lost,
        threads_lost: inputs.threads.map(|(_, lost)| lost),
        hang_threshold_ns: inputs.hang_threshold_ns,
    }
}

#[cfg(test)]
pub mod tests {
    use std::collections::BTreeMap;

    use profiler_common::{StatsKey, NR_COMPAT_FLAG};

    use super::*;
    use crate::model::{store::SyscallTotals, view::by_process};

    pub fn sample() -> Report {
        sample_sorted(SortBy::Active)
    }

    pub fn sample_sorted(sort: SortBy) -> Report {
        let mut map = BTreeMap::new();
        map.insert(
            StatsKey { tgid: 100, nr: 110 },
            SyscallTotals::of_calls(1_000_000, 30_000_000, 0, 0, 30),
        );
        let mut openat = SyscallTotals::of_calls(10, 20_000, 0, 0, 2_000);
        openat.errors = 10;
        openat.errnos.insert(2, 10);
        map.insert(StatsKey { tgid: 100, nr: 257 }, openat);
        map.insert(
            StatsKey { tgid: 200, nr: 0 },
            SyscallTotals::of_calls(10, 1_000, 1_000_000_000, 0, 100_000_000),
        );
        // The most time of all, waiting for a child: by design, ranked last.
        map.insert(
            StatsKey { tgid: 400, nr: 61 },
            SyscallTotals::of_calls(1, 1_000, 5_000_000_000, 0, 1_000_000_000),
        );
        map.insert(
            StatsKey {
                tgid: 300,
                nr: 3 | NR_COMPAT_FLAG,
            },
            SyscallTotals::of_calls(5, 500, 0, 0, 100),
        );
        map.insert(StatsKey { tgid: 300, nr: 0 }, SyscallTotals::of_calls(0, 0, 0, 0, 0));
        let comm = |pid: u32| format!("proc{pid}");
        let charges = Charges {
            boundary_ns_per_call: 50.0,
            instrumentation_ns_per_call: 0.0,
            ..Charges::default()
        };
        build(&Inputs {
            processes: &by_process(&map, &charges),
            comm: &comm,
            duration_ns: 1_000_000_000,
            charges,
            scope: "system-wide",
            sample_every: 1,
            command_exit: None,
            host: Host::default(),
            groups: None,
            sort,
            in_flight: Vec::new(),
            in_flight_total: 0,
            returned: Vec::new(),
            hang_threshold_ns: 1_000_000_000,
            wait_sites: &BTreeMap::new(),
            wait_sites_lost: 0,
            threads: None,
            overflow: Overflow::default(),
            agent_cost: AgentCost {
                startup_ns: 2_500_000_000,
                startup_cpu_ns: 800_000_000,
                profiling_ns: 10_000_000_000,
                profiling_cpu_ns: 41_000_000,
            },
        })
    }

    #[test]
    fn processes_are_ranked_by_the_time_that_holds_work_up_and_rows_add_up() {
        let report = sample();
        let pids: Vec<u32> = report.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![200, 100, 300, 400]);
        let waiting = &report.processes[3];
        assert_eq!((waiting.active_ns, waiting.class.as_str()), (0, "child-wait"));
        assert_eq!(waiting.syscalls[0].class, "child-wait");
        assert_eq!(report.processes[0].active_ns, report.processes[0].total_ns);
        for process in &report.processes {
            let s = process.split;
            assert_eq!(
                process.total_ns,
                s.entry_ns + s.handler_ns + s.blocked_ns + s.runqueue_ns
            );
            for syscall in &process.syscalls {
                let s = syscall.split;
                assert_eq!(
                    syscall.total_ns,
                    s.entry_ns + s.handler_ns + s.blocked_ns + s.runqueue_ns
                );
            }
            assert_eq!(process.calls, process.syscalls.iter().map(|s| s.calls).sum::<u64>());
        }
    }

    #[test]
    fn other_rankings_on_request() {
        let first = |sort| sample_sorted(sort).processes[0].pid;
        // By total time the parent waiting for its child (5 s) comes first.
        assert_eq!(first(SortBy::Total), 400);
        assert_eq!(first(SortBy::Calls), 100);
        assert_eq!(first(SortBy::Errors), 100);
        let by_errors = sample_sorted(SortBy::Errors);
        assert_eq!(by_errors.processes[0].syscalls[0].name, "openat");
    }

    #[test]
    fn rows_carry_names_errnos_classes_and_entry_cost() {
        let report = sample();
        let p100 = &report.processes[1];
        assert_eq!(p100.comm, "proc100");
        let getppid = &p100.syscalls[0];
        assert_eq!(getppid.name, "getppid");
        assert_eq!(getppid.split.entry_ns, 50_000_000);
        assert_eq!(getppid.class, "tiny-frequent");
        // The boundary cost is part of every call's latency.
        assert!(
            getppid.latency_ns.p50 >= 50 + 26 && getppid.latency_ns.p50 <= 50 + 30,
            "{:?}",
            getppid.latency_ns
        );
        let openat = &p100.syscalls[1];
        assert_eq!(openat.errno.get("ENOENT"), Some(&10));
        let read = &report.processes[0].syscalls[0];
        assert_eq!(read.name, "read");
        assert_eq!(read.class, "blocked");
        let ia32 = &report.processes[2];
        assert_eq!(ia32.syscalls.len(), 1, "zero-call rows are dropped");
        assert_eq!(
            (ia32.syscalls[0].name.as_str(), ia32.syscalls[0].abi.as_str()),
            ("read", "ia32")
        );
    }

    #[test]
    fn json_has_the_schema_fields() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(value["schema_version"], SCHEMA_VERSION);
        for field in ["duration_ns", "boundary_ns_per_call", "processes"] {
            assert!(!value[field].is_null(), "{field}");
        }
        assert_eq!(value["agent_cost"]["startup_ns"], 2_500_000_000u64);
        assert_eq!(value["agent_cost"]["profiling_cpu_ns"], 41_000_000u64);
        let process = &value["processes"][1];
        for field in [
            "pid",
            "comm",
            "calls",
            "errors",
            "total_ns",
            "entry_ns",
            "handler_ns",
            "blocked_ns",
            "runqueue_ns",
            "syscalls",
        ] {
            assert!(!process[field].is_null(), "process.{field}");
        }
        let syscall = &process["syscalls"][1];
        for field in [
            "name",
            "nr",
            "abi",
            "calls",
            "errors",
            "errno",
            "total_ns",
            "entry_ns",
            "handler_ns",
            "blocked_ns",
            "runqueue_ns",
            "latency_ns",
            "class",
            "advice",
        ] {
            assert!(!syscall[field].is_null(), "syscall.{field}");
        }
        for field in ["p50", "p90", "p99", "max"] {
            assert!(syscall["latency_ns"][field].is_u64(), "latency_ns.{field}");
        }
        assert_eq!(syscall["errno"]["ENOENT"], 10);
        assert_eq!(syscall["nr"], 257);
        assert_eq!(syscall["abi"], "x86_64");
    }
}
