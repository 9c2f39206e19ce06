//! Calibration of the boundary (entry) cost: the part of a syscall the tracepoints cannot see.
//!
//! On each CPU we time a trivial syscall (`getppid`) in short batches in userspace with the
//! programs detached: that is the full round trip, trap and mitigations included. With them
//! attached, the same batches tell how long the tracepoints saw its handler take. The
//! difference is the cost of crossing the boundary, charged to every call.
//!
//! One correction: the window between the two tracepoints also holds some of the tracing
//! machinery itself (leaving the sys_enter program, the syscall slow path tracepoints force,
//! entering the sys_exit program). We measure that per call with a syscall number that has no
//! handler at all (it returns ENOSYS at once), subtract it from getppid's handler before
//! taking the difference, and subtract it from every call's handler time in the reports.
//!
//! On a busy machine one measurement is mostly noise (the figure swung 5x from run to run),
//! so: many short batches, detached and attached interleaved in rounds (the machine's speed
//! drifts over seconds); a batch during which the thread was switched out is thrown away; and
//! every figure is a low order statistic of the rest (see [`CpuBatches::estimate`]). Too few
//! clean batches, and nothing is charged rather than noise ([`BoundarySource::TooBusy`]).
//! When a CPU had too few clean batches, it is done again with the batches at real-time
//! priority where the agent may raise itself ([`priority::Realtime`]): beside hundreds of
//! runnable tasks a CPU nearly every batch was preempted otherwise, even at nice -20. Only
//! then: a machine that can be calibrated without needs no real-time thread, and under CPU
//! emulation (the kernel matrix) a batch takes long enough for one to hold a CPU from the
//! kernel's own threads (which preempt most batches there, yet leave enough clean). Where the
//! agent may not raise itself, a CPU's rounds stop after [`CPU_TIME_LIMIT`], so that a
//! machine too busy to calibrate costs seconds, not minutes.
//!
//! The long-running modes refresh it without detaching (which would lose calls, and needs
//! capabilities `serve` has dropped): the calibration's rounds also take a baseline of
//! attached batches timed as the profile runs, and each refresh takes them again; what
//! the round trip gained beyond the window and the programs' own work is the boundary's
//! ([`drifted`]), and a CPU is charged the median of its last few refreshes ([`steadied`]).
//! It needs the agent's own calls in the tables: system-wide only.
use std::time::{Duration, Instant};

use profiler_common::StatsKey;
use serde::Serialize;

use super::{
    affinity::{allowed_cpus, pin_to, spread_over},
    priority,
};
use crate::{
    kernel::{Probe, ProbeError},
    model::charges::{
        carried, charges_from, quantile, refresh_turn, refreshed, steadied, AttachedBatch, AttachedBatches,
        AttachedEstimate, BoundarySource, Charges, CpuBatches, CpuEstimate, REFRESHES_KEPT,
    },
};

/// `getppid` (110 on x86_64, 173 on arm64): no arguments, no locks, the cheapest real
/// syscall.
const NR_GETPPID: u32 = libc::SYS_getppid as u32;
/// A number no kernel assigns: dispatch finds no handler and returns ENOSYS.
pub const NR_NO_HANDLER: u32 = 4000;
/// Calls per batch: long enough to average out the clock's granularity, short enough (well
/// under a millisecond here) that most batches run between two interruptions.
pub const BATCH_CALLS: u64 = 2_000;
/// Rounds per CPU; each detaches, runs `BATCHES_PER_ROUND` detached batches, attaches and
/// runs as many of each attached kind.
pub const ROUNDS: usize = 12;
const BATCHES_PER_ROUND: usize = 2;
/// CPUs the calibration measures: every one the agent may run on, up to this many; else this
/// many spread over them. The charge is their mean, and each costs ~0.25 s of start-up here
/// (its rounds and its attached baseline): 16 s on 64 CPUs, 48 s on 192.
const CALIBRATED_CPUS: usize = 8;
/// CPUs a refresh measures (see [`refresh`]): ~0.2 s of the agent's thread on the AMD
/// machine (~55 ms a CPU), 0.4% of a CPU at the default interval, on any number of CPUs
/// (every CPU at every refresh would be ~6% of a CPU on 64 of them).
const REFRESH_CPUS_AT_ONCE: usize = 4;
/// Calibrations tried before giving up on a machine too busy to calibrate: a burst of load
/// at start should not leave a long-running agent without a boundary cost.
const ATTEMPTS: usize = 3;
/// A CPU's rounds in one attempt stop after this long. They take ~0.2 s here; without
/// real-time priority beside 1,000 busy processes they took 5-45 s, and came out too busy.
pub const CPU_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Calibration on one CPU.
#[derive(Clone, Debug, Serialize)]
pub struct CpuCalibration {
    pub cpu: usize,
    /// Clean batches, and batches thrown away because the thread was switched out.
    pub clean_batches: usize,
    pub interrupted_batches: usize,
    /// Whether the batches ran at real-time priority ([`priority::Realtime`]).
    pub realtime: bool,
    /// What the clean batches say (ns per call), moved by the refreshes (`recent`); `None`
    /// if too few were clean.
    #[serde(flatten)]
    pub estimate: Option<CpuEstimate>,
    /// The estimate of the calibration itself, and the attached batches taken in its rounds
    /// as the profile runs: what a refresh starts from.
    #[serde(skip)]
    pub(crate) start: Option<(CpuEstimate, AttachedEstimate)>,
    /// The latest estimates, the calibration's first, then each refresh's (at most
    /// [`REFRESHES_KEPT`]): what the CPU is charged is their median ([`steadied`]).
    #[serde(skip)]
    pub(crate) recent: Vec<CpuEstimate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// The CPUs measured (at most [`CALIBRATED_CPUS`] of those the agent may run on).
    pub per_cpu: Vec<CpuCalibration>,
    /// The CPUs the agent may run on.
    pub cpus: usize,
    /// The means over CPUs of the entry costs (what every call is charged) and of the
    /// tracing inside the window (taken out of every call's handler time).
    #[serde(flatten)]
    pub charges: Charges,
    /// Mean added cost of the attached programs on a syscall (attached - detached), as the
    /// profile runs (sampling on or off).
    pub overhead_ns_per_call: f64,
    pub calls_per_batch: u64,
    pub rounds: usize,
    /// Refreshes that moved the charges, and refreshes too busy to (the charges stayed).
    pub refreshes: u64,
    pub refreshes_too_busy: u64,
}

/// Context switches of the calling thread so far.
fn context_switches() -> i64 {
    // SAFETY: getrusage fills a zeroed struct.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage.ru_nvcsw + usage.ru_nivcsw
    }
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

/// The round trip of a batch of `nr` in ns per call, or `None` if the thread was switched
/// out during it.
fn clean_batch(nr: u32) -> Option<f64> {
    let switches = context_switches();
    let round_trip = syscall_loop(nr, BATCH_CALLS);
    (context_switches() == switches).then_some(round_trip)
}

/// An attached batch of `nr` (see [`AttachedBatch`]); `None` if interrupted, or if the
/// kernel side did not count every call of the batch.
fn attached_batch(probe: &Probe, nr: u32) -> Option<AttachedBatch> {
    let key = StatsKey {
        tgid: std::process::id(),
        nr,
    };
    let before = probe.stats_of(key).unwrap_or((0, 0));
    let round_trip_ns = clean_batch(nr)?;
    let after = probe.stats_of(key).unwrap_or((0, 0));
    let calls = after.0.saturating_sub(before.0);
    (calls == BATCH_CALLS).then(|| AttachedBatch {
        round_trip_ns,
        calls,
        window_ns: after.1.saturating_sub(before.1),
    })
}

/// A batch of `getppid` and one of the call without a handler, attached, into `batches`.
fn attached_pair(probe: &Probe, batches: &mut AttachedBatches) {
    match attached_batch(probe, NR_GETPPID) {
        Some(batch) => batches.getppid.push(batch),
        None => batches.interrupted += 1,
    }
    match attached_batch(probe, NR_NO_HANDLER) {
        Some(batch) => batches.no_handler.push(batch),
        None => batches.interrupted += 1,
    }
}

/// The batches of one CPU (the calling thread pinned to it): `ROUNDS` rounds of detached,
/// then attached batches with every call timed, then attached batches timed as the profile
/// runs (`sample_every`: the baseline of the refreshes, taken in the same rounds so that it
/// saw the machine at the same speed), or as many rounds as [`CPU_TIME_LIMIT`] allows; and
/// whether they ran at real-time priority (asked for with `realtime`).
fn measure_cpu(
    probe: &mut Probe,
    realtime: bool,
    sample_every: u32,
) -> Result<(CpuBatches, AttachedBatches, bool), ProbeError> {
    let realtime = realtime.then(priority::Realtime::enter);
    let started = Instant::now();
    let mut batches = CpuBatches::default();
    let mut baseline = AttachedBatches::default();
    syscall_loop(NR_GETPPID, BATCH_CALLS); // warm up
    for _round in 0..ROUNDS {
        if started.elapsed() > CPU_TIME_LIMIT {
            break;
        }
        probe.detach();
        for _ in 0..BATCHES_PER_ROUND {
            match clean_batch(NR_GETPPID) {
                Some(round_trip) => batches.detached.push(round_trip),
                None => batches.interrupted += 1,
            }
        }
        probe.attach()?;
        let mut timed = AttachedBatches::default();
        for _ in 0..BATCHES_PER_ROUND {
            attached_pair(probe, &mut timed);
        }
        batches.add_timed(&timed);
        probe.set_sample_every(sample_every)?;
        for _ in 0..BATCHES_PER_ROUND {
            attached_pair(probe, &mut baseline);
        }
        probe.set_sample_every(1)?;
    }
    // Attached again even if the time ran out before a round began.
    probe.attach()?;
    Ok((batches, baseline, realtime.is_some_and(|guard| guard.raised())))
}

/// Calibrates with `probe` loaded but not attached; leaves it attached with call timing
/// sampled as the profile runs (`sample_every`), each measured CPU with the baseline its
/// refreshes start from. `pinned_boundary_ns`: the user's boundary cost, charged instead of
/// the measured one. The agent's own entries in the maps then hold the calibration calls:
/// forget them before measuring.
pub fn calibrate(
    probe: &mut Probe,
    pinned_boundary_ns: Option<f64>,
    sample_every: u32,
) -> Result<Calibration, ProbeError> {
    probe.set_sample_every(1)?;
    let cpus = allowed_cpus();
    let measured_cpus = spread_over(&cpus, CALIBRATED_CPUS);
    let mut per_cpu: Vec<CpuCalibration> = Vec::with_capacity(measured_cpus.len());
    let mut realtime = false;
    for _attempt in 0..ATTEMPTS {
        per_cpu.clear();
        for &cpu in &measured_cpus {
            pin_to(&[cpu]);
            let (batches, baseline, ran_realtime) = measure_cpu(probe, realtime, sample_every)?;
            let baseline = baseline.estimate();
            // The profiler's own cost per call is what it costs as the profile runs.
            let estimate = batches.estimate().map(|estimate| CpuEstimate {
                round_trip_attached_ns: baseline.map_or(estimate.round_trip_attached_ns, |b| b.round_trip_ns),
                ..estimate
            });
            let start = estimate.zip(baseline);
            per_cpu.push(CpuCalibration {
                cpu,
                clean_batches: batches.clean(),
                interrupted_batches: batches.interrupted,
                realtime: ran_realtime,
                estimate,
                start,
                recent: start.map(|(estimate, _)| vec![estimate]).unwrap_or_default(),
            });
        }
        let measured = per_cpu.iter().any(|cpu| cpu.estimate.is_some());
        let too_busy = per_cpu.iter().any(|cpu| cpu.estimate.is_none());
        // Again at real-time priority, if the agent may raise itself (tried, and dropped).
        let escalate = too_busy && !realtime && priority::Realtime::enter().raised();
        if pinned_boundary_ns.is_some() || (measured && !escalate) {
            break;
        }
        realtime |= escalate;
    }
    pin_to(&cpus);
    probe.set_sample_every(sample_every)?;
    let estimates: Vec<CpuEstimate> = per_cpu.iter().filter_map(|cpu| cpu.estimate).collect();
    let charges = charges_from(&estimates, pinned_boundary_ns);
    Ok(Calibration {
        overhead_ns_per_call: overhead(&per_cpu),
        per_cpu,
        charges,
        cpus: cpus.len(),
        calls_per_batch: BATCH_CALLS,
        rounds: ROUNDS,
        refreshes: 0,
        refreshes_too_busy: 0,
    })
}

/// Mean over CPUs of attached minus detached round trip; never below the tracing measured
/// inside the window, which is part of it.
fn overhead(per_cpu: &[CpuCalibration]) -> f64 {
    let estimates: Vec<&CpuEstimate> = per_cpu.iter().filter_map(|cpu| cpu.estimate.as_ref()).collect();
    let sum: f64 = estimates
        .iter()
        .map(|e| (e.round_trip_attached_ns - e.round_trip_ns).max(e.instrumentation_ns))
        .sum();
    sum / estimates.len().max(1) as f64
}

/// Attached batches on the CPU the calling thread is pinned to, as the profile runs, as many
/// as the calibration's baseline; at real-time priority if the calibration needed it (and the
/// agent still may).
fn measure_attached(probe: &Probe, realtime: bool) -> AttachedBatches {
    let _realtime = realtime.then(priority::Realtime::enter);
    let mut batches = AttachedBatches::default();
    for _ in 0..ROUNDS * BATCHES_PER_ROUND {
        attached_pair(probe, &mut batches);
    }
    batches
}

/// Refreshes a measured calibration, attached (see the module header): on at most
/// [`REFRESH_CPUS_AT_ONCE`] of the CPUs that have a baseline, taking turns; the others move by
/// the median of what those gained. When too few batches are clean on every CPU measured,
/// the charges stay as they were. Returns whether they moved.
pub fn refresh(probe: &Probe, calibration: &mut Calibration) -> bool {
    if !calibration.measured() {
        return false;
    }
    let cpus = allowed_cpus();
    let realtime = calibration.realtime();
    let with_baseline: Vec<usize> = (0..calibration.per_cpu.len())
        .filter(|&index| calibration.per_cpu[index].start.is_some())
        .collect();
    let turn = calibration.refreshes + calibration.refreshes_too_busy;
    let measured: Vec<usize> = refresh_turn(with_baseline.len(), REFRESH_CPUS_AT_ONCE, turn)
        .into_iter()
        .map(|at| with_baseline[at])
        .collect();
    let mut entry_drifts = Vec::new();
    for &index in &measured {
        let cpu = &mut calibration.per_cpu[index];
        let Some((start, baseline)) = cpu.start else {
            continue;
        };
        pin_to(&[cpu.cpu]);
        if let Some(latest) = refreshed(&start, &baseline, &measure_attached(probe, realtime)) {
            if cpu.recent.len() == REFRESHES_KEPT {
                cpu.recent.remove(0);
            }
            cpu.recent.push(latest);
            let estimate = steadied(&cpu.recent).unwrap_or(latest);
            let before = cpu.estimate.unwrap_or(estimate);
            entry_drifts.push(estimate.entry_ns - before.entry_ns);
            cpu.estimate = Some(estimate);
        }
    }
    pin_to(&cpus);
    let moved = !entry_drifts.is_empty();
    if moved {
        let drift_ns = quantile(&entry_drifts, 0.5);
        for (index, cpu) in calibration.per_cpu.iter_mut().enumerate() {
            if !measured.contains(&index) {
                cpu.estimate = cpu.estimate.map(|estimate| carried(&estimate, drift_ns));
            }
        }
        let estimates: Vec<CpuEstimate> = calibration.per_cpu.iter().filter_map(|cpu| cpu.estimate).collect();
        calibration.charges = charges_from(&estimates, None);
        calibration.overhead_ns_per_call = overhead(&calibration.per_cpu);
        calibration.refreshes += 1;
    } else {
        calibration.refreshes_too_busy += 1;
    }
    moved
}

impl Calibration {
    /// Whether the calibration ran its batches at real-time priority (a busy machine).
    pub fn realtime(&self) -> bool {
        self.per_cpu.iter().any(|cpu| cpu.realtime)
    }

    /// Whether the boundary cost charged is a measurement of this run.
    pub fn measured(&self) -> bool {
        self.charges.boundary_source == BoundarySource::Calibrated
    }
}
