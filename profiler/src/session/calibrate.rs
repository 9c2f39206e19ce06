//! Calibration of the boundary (entry) cost: the part of a syscall the tracepoints cannot see.
//!
//! On each CPU we time a trivial syscall (`getppid`) in a tight userspace loop with the
//! programs detached: that is the full round trip, trap and mitigations included. Then we
//! attach, run the same loop, and read how long the tracepoints saw its handler take. The
//! difference is the cost of crossing the boundary, charged to every call.
//!
//! One correction: the window between the two tracepoints also holds some of the tracing
//! machinery itself (leaving the sys_enter program, the syscall slow path tracepoints force,
//! entering the sys_exit program). We measure that per call with a syscall number that has no
//! handler at all (it returns ENOSYS at once), subtract it from getppid's handler before
//! taking the difference, and subtract it from every call's handler time in the reports.
use std::time::Instant;

use profiler_common::StatsKey;
use serde::Serialize;

use crate::{
    kernel::{Probe, ProbeError},
    model::charges::{entry_cost, median, Charges},
};

/// x86_64 `getppid`: no arguments, no locks, the cheapest real syscall.
const NR_GETPPID: u32 = 110;
/// A number no kernel assigns: dispatch finds no handler and returns ENOSYS.
pub const NR_NO_HANDLER: u32 = 4000;
const CALLS_PER_RUN: u64 = 50_000;
const RUNS: usize = 5;

/// Calibration on one CPU, in nanoseconds per call.
#[derive(Clone, Debug, Serialize)]
pub struct CpuCalibration {
    pub cpu: usize,
    /// Userspace round trip of `getppid` with the programs detached.
    pub round_trip_ns: f64,
    /// The same with the programs attached: the difference is the profiler's own cost.
    pub round_trip_attached_ns: f64,
    /// Wall time between the tracepoints of a call without handler: tracing machinery only.
    pub instrumentation_ns: f64,
    /// Handler time of `getppid` as the tracepoints measured it.
    pub measured_handler_ns: f64,
    /// `measured_handler_ns - instrumentation_ns`: getppid's own handler time.
    pub handler_ns: f64,
    /// `round_trip_ns - handler_ns`: the boundary cost.
    pub entry_ns: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub per_cpu: Vec<CpuCalibration>,
    /// The means over CPUs of the entry costs (what every call is charged) and of the
    /// tracing inside the window (taken out of every call's handler time).
    #[serde(flatten)]
    pub charges: Charges,
    /// Mean added cost of the attached programs on a syscall (attached - detached).
    pub overhead_ns_per_call: f64,
    pub calls_per_run: u64,
    pub runs: usize,
}

fn syscall_loop(nr: u32, calls: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        // SAFETY: getppid takes no arguments and cannot fail; an unassigned number only
        // returns ENOSYS.
        unsafe { libc::syscall(nr as libc::c_long) };
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn median_round_trip(nr: u32) -> f64 {
    syscall_loop(nr, CALLS_PER_RUN / 10); // warm up
    let mut runs: Vec<f64> = (0..RUNS).map(|_| syscall_loop(nr, CALLS_PER_RUN)).collect();
    median(&mut runs)
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: plain libc calls on a zeroed cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn pin_to(cpus: &[usize]) {
    // SAFETY: as above; pins only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Calibrates with `probe` loaded but not attached; leaves it attached with every call timed
/// (sampling off), which is how the calibration measures. The agent's own entries in the
/// maps then hold the calibration calls: forget them before measuring.
pub fn calibrate(probe: &mut Probe) -> Result<Calibration, ProbeError> {
    probe.set_sample_every(1)?;
    let cpus = allowed_cpus();
    let mut detached = Vec::with_capacity(cpus.len());
    for &cpu in &cpus {
        pin_to(&[cpu]);
        detached.push(median_round_trip(NR_GETPPID));
    }
    probe.attach()?;
    let tgid = std::process::id();
    // Mean window time per call of `nr` over one more timed run on the current CPU.
    let window = |probe: &Probe, nr: u32| -> Result<(f64, f64), ProbeError> {
        let key = StatsKey { tgid, nr };
        let read = |probe: &Probe| -> Result<(u64, u64), ProbeError> { Ok(probe.stats_of(key).unwrap_or((0, 0))) };
        let before = read(probe)?;
        let round_trip = median_round_trip(nr);
        let after = read(probe)?;
        let calls = after.0.saturating_sub(before.0).max(1);
        Ok((round_trip, after.1.saturating_sub(before.1) as f64 / calls as f64))
    };
    let mut per_cpu = Vec::with_capacity(cpus.len());
    for (&cpu, &round_trip_ns) in cpus.iter().zip(&detached) {
        pin_to(&[cpu]);
        let (_, instrumentation_ns) = window(probe, NR_NO_HANDLER)?;
        let (round_trip_attached_ns, measured_handler_ns) = window(probe, NR_GETPPID)?;
        let (handler_ns, entry_ns) = entry_cost(round_trip_ns, measured_handler_ns, instrumentation_ns);
        per_cpu.push(CpuCalibration {
            cpu,
            round_trip_ns,
            round_trip_attached_ns,
            instrumentation_ns,
            measured_handler_ns,
            handler_ns,
            entry_ns,
        });
    }
    pin_to(&cpus);
    let mean = |f: fn(&CpuCalibration) -> f64| mean_over(&per_cpu, f);
    Ok(Calibration {
        charges: Charges {
            boundary_ns_per_call: mean(|c| c.entry_ns),
            instrumentation_ns_per_call: mean(|c| c.instrumentation_ns),
        },
        overhead_ns_per_call: mean(|c| c.round_trip_attached_ns - c.round_trip_ns).max(0.0),
        per_cpu,
        calls_per_run: CALLS_PER_RUN,
        runs: RUNS,
    })
}

/// Sets the timing sampling the profile runs with (the calibration times every call) and,
/// when it samples, measures the attached round trip again on each CPU: the profiler's own
/// cost per call as it will run.
pub fn start_sampling(probe: &mut Probe, calibration: &mut Calibration, sample_every: u32) -> Result<(), ProbeError> {
    probe.set_sample_every(sample_every)?;
    if sample_every == 1 {
        return Ok(());
    }
    let cpus = allowed_cpus();
    for cpu in &mut calibration.per_cpu {
        pin_to(&[cpu.cpu]);
        cpu.round_trip_attached_ns = median_round_trip(NR_GETPPID);
    }
    pin_to(&cpus);
    calibration.overhead_ns_per_call =
        mean_over(&calibration.per_cpu, |c| c.round_trip_attached_ns - c.round_trip_ns).max(0.0);
    Ok(())
}

fn mean_over(per_cpu: &[CpuCalibration], f: fn(&CpuCalibration) -> f64) -> f64 {
    per_cpu.iter().map(f).sum::<f64>() / per_cpu.len().max(1) as f64
}
