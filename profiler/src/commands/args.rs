//! Arguments several commands share, and the parsers of their values.
use clap::Args;

use crate::kernel::MapSizes;

/// Kernel-side settings: the map sizes, which bound the kernel-side memory (see
/// `syscall-profiler memory`), and the sampling of call timing.
#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// Time 1 in N of the short calls that stay on the CPU (N: a power of two up to 1024; 1
    /// times every call). Counts and errors stay exact; calls that sleep or are preempted, and
    /// the first 64 calls of each (process, syscall), are always timed; a sampled call counts N
    /// times in the times and histograms. Reading the clock is most of the cost per call.
    #[arg(long = "sample", value_name = "N", default_value_t = DEFAULT_SAMPLE_EVERY, value_parser = parse_sample_every)]
    pub sample_every: u32,
    /// Threads that can be inside a syscall at once (rounded up to a power of two).
    #[arg(long, default_value_t = MapSizes::default().threads, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_threads: u32,
    /// Slots of the statistics table: one per (process, syscall) alive or not read yet (one per
    /// group of threads, for a multi-threaded process).
    #[arg(long, default_value_t = MapSizes::default().syscalls, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_syscalls: u32,
    /// Statistics entries per (process, syscall), one per group of threads (for benchmarks).
    #[arg(long, hide = true, default_value_t = profiler_common::STATS_LANES, value_parser = clap::value_parser!(u32).range(1..=i64::from(profiler_common::STATS_LANES)))]
    pub stats_lanes: u32,
    /// Entries of the process table: processes alive, or exited and not read yet.
    #[arg(long, default_value_t = MapSizes::default().processes, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_processes: u32,
}

impl KernelArgs {
    pub fn sizes(&self) -> MapSizes {
        MapSizes {
            threads: self.max_threads,
            syscalls: self.max_syscalls,
            processes: self.max_processes,
            lanes: self.stats_lanes,
            thread_rows: 0,
        }
    }
}

/// The boundary cost charged to every call.
#[derive(Args, Debug, Clone, Default)]
pub struct BoundaryArgs {
    /// Charge this many nanoseconds to every call as its entry (boundary crossing) cost
    /// instead of calibrating it at start: for a machine too busy to calibrate, or to compare
    /// runs with the same figure (`syscall-profiler calibrate` measures it).
    #[arg(long = "boundary-ns", value_name = "NS", value_parser = boundary_ns)]
    pub boundary_ns: Option<f64>,
}

/// How often the long-running modes measure the boundary cost again.
#[derive(Args, Debug, Clone)]
pub struct RefreshArgs {
    /// Seconds between measurements of the boundary cost after the first (0: never). Each
    /// measures up to 4 CPUs in turn (the others move with them), ~50 ms of one thread a CPU,
    /// attached (no call is lost); a busy machine keeps the last good figure. Not with
    /// --boundary-ns.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = refresh_seconds)]
    pub boundary_refresh: f64,
}

impl RefreshArgs {
    pub fn every(&self) -> Option<std::time::Duration> {
        (self.boundary_refresh > 0.0).then(|| std::time::Duration::from_secs_f64(self.boundary_refresh))
    }
}

fn refresh_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds == 0.0 || (1.0..=86_400.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("'{text}' is not 0 or a number of seconds from 1 to 86400")),
    }
}

/// A boundary cost in ns: from 0 to 100 µs (a syscall round trip is well under that).
pub fn boundary_ns(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ns) if (0.0..=100_000.0).contains(&ns) => Ok(ns),
        _ => Err(format!("'{text}' is not a number of nanoseconds from 0 to 100000")),
    }
}

/// Default sampling period of call timing (see [`KernelArgs::sample_every`]).
pub const DEFAULT_SAMPLE_EVERY: u32 = 16;

pub fn parse_sample_every(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= profiler_common::MAX_SAMPLE_EVERY => Ok(n),
        _ => Err(format!(
            "'{text}' is not a power of two from 1 to {}",
            profiler_common::MAX_SAMPLE_EVERY
        )),
    }
}

pub fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 365.0 * 86400.0 => Ok(secs),
        _ => Err(format!("'{text}' is not a number of seconds greater than 0")),
    }
}

/// Shortest refresh interval: reading the maps more often than this would make the
/// profiler a load of its own.
pub const MIN_INTERVAL_SECONDS: f64 = 0.1;

/// A refresh interval in seconds, from [`MIN_INTERVAL_SECONDS`] to an hour.
pub fn interval_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (MIN_INTERVAL_SECONDS..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds from {MIN_INTERVAL_SECONDS} to 3600"
        )),
    }
}

/// A positive number of seconds, up to an hour.
pub fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 3600.0 => Ok(secs),
        _ => Err(format!("'{text}' is not a number of seconds between 0 and 3600")),
    }
}
