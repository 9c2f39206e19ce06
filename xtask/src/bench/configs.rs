//! What the benchmark compares: the configurations (nothing, the floor, the profiler's modes,
//! the peers) and how each observes the workload.

pub(super) const BPFTRACE_COUNT: &str = "tracepoint:raw_syscalls:sys_enter { @[pid, args->id] = count(); }";

pub(super) const BPFTRACE_LATENCY: &str = "tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; } \
     tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[pid, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }";

/// Runs the workload with both ping-pong threads on CPU 0.
pub(super) const ONE_CPU: &[&str] = &["taskset", "-c", "0"];

/// Sampling period syscall-profiler runs with by default (its `--sample`).
pub(super) const DEFAULT_SAMPLE_EVERY: &str = "16";

/// The `attach control` state of syscall-profiler as `report` runs by default (`full`: wait
/// sites recorded, and [`DEFAULT_SAMPLE_EVERY`]). The `--against` build runs this way.
pub(super) const DEFAULT_STATE: &str = "full 16";

/// The `attach control` state of syscall-profiler as `top` and `serve` run by default
/// (`counting`: no wait sites, no `sched_waking`).
pub(super) const COUNTING_STATE: &str = "counting 16";

/// How a configuration observes the workload.
#[derive(Clone, Copy)]
pub(super) enum Observer {
    /// A state of a `syscall-profiler attach control` process loaded with this many
    /// statistics lanes: "nothing", "floor" or "full N" (N: the sampling period).
    Profiler {
        state: &'static str,
        lanes: &'static str,
        build: Build,
    },
    /// bpftrace running this script beside the workload.
    Bpftrace(&'static str),
    /// The workload runs under this command (`perf trace -s --`, `strace -c -o /dev/null`).
    Wrapper(&'static [&'static str]),
}

/// Which syscall-profiler binary a configuration runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Build {
    /// The working tree's.
    Current,
    /// The `--against` revision's.
    Against,
}

#[derive(Clone, Copy)]
pub(super) struct Config {
    pub(super) name: &'static str,
    pub(super) observer: Observer,
}

pub(super) const CONFIGS: [Config; 10] = [
    Config {
        name: "nothing attached",
        observer: Observer::Profiler {
            state: "nothing",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "empty programs on sys_enter/sys_exit (floor)",
        observer: Observer::Profiler {
            state: "floor",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "syscall-profiler, every call timed (`--sample 1`)",
        observer: Observer::Profiler {
            state: "full 1",
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "syscall-profiler as `top` and `serve` run by default (`--sample 16`)",
        observer: Observer::Profiler {
            state: COUNTING_STATE,
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "syscall-profiler as `report` runs by default (`--sample 16`, wait sites)",
        observer: Observer::Profiler {
            state: DEFAULT_STATE,
            lanes: "8",
            build: Build::Current,
        },
    },
    Config {
        name: "the same with one statistics entry per (process, syscall), no CPU lanes",
        observer: Observer::Profiler {
            state: DEFAULT_STATE,
            lanes: "1",
            build: Build::Current,
        },
    },
    Config {
        name: "bpftrace: count per (pid, syscall)",
        observer: Observer::Bpftrace(BPFTRACE_COUNT),
    },
    Config {
        name: "bpftrace: latency histogram per (pid, syscall)",
        observer: Observer::Bpftrace(BPFTRACE_LATENCY),
    },
    Config {
        name: "perf trace -s",
        observer: Observer::Wrapper(&["perf", "trace", "-s", "-o", "/dev/null", "--"]),
    },
    Config {
        name: "strace -c",
        observer: Observer::Wrapper(&["strace", "-c", "-f", "-o", "/dev/null"]),
    },
];
