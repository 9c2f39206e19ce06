//! What the profiler charges to, and takes out of, every call: the pure side of the
//! calibration.
//!
//! The tracepoints cannot see the boundary crossing (trap, entry and exit code,
//! mitigations): its calibrated cost is charged to every call as `entry`. And the window
//! between the tracepoints holds part of the tracing machinery itself: that is taken out of
//! every call's handler time, and latencies measured in the window are shifted by the
//! difference of the two.
use serde::Serialize;

use crate::model::split::Split;

/// The calibrated per-call charges, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Charges {
    /// The boundary cost, charged to every call as `entry`.
    pub boundary_ns_per_call: f64,
    /// Tracing inside the window between the tracepoints, taken out of every call's handler
    /// time.
    pub instrumentation_ns_per_call: f64,
    /// Where the boundary cost comes from.
    pub boundary_source: BoundarySource,
    /// How sure it is: half the difference between the estimates of two independent halves
    /// of the calibration (0 when pinned or not measured).
    pub boundary_spread_ns: f64,
}

/// Where [`Charges::boundary_ns_per_call`] comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundarySource {
    /// Measured on this machine's CPUs at start (and refreshed, in the long-running modes).
    #[default]
    Calibrated,
    /// Given by the user (`--boundary-ns`).
    Pinned,
    /// The machine was too busy to measure it: nearly every calibration batch was interrupted
    /// by a context switch. Nothing is charged rather than a figure made of noise.
    TooBusy,
}

impl BoundarySource {
    pub fn describe(self) -> &'static str {
        match self {
            BoundarySource::Calibrated => "calibrated",
            BoundarySource::Pinned => "pinned with --boundary-ns",
            BoundarySource::TooBusy => {
                "not charged: the machine was too busy to calibrate it (pin it with --boundary-ns)"
            }
        }
    }
}

impl Charges {
    /// Handler time of `calls` calls with the tracing inside the window taken out.
    pub fn corrected_handler_ns(&self, measured_handler_ns: u64, calls: u64) -> u64 {
        let instrumentation = (calls as f64 * self.instrumentation_ns_per_call).round() as u64;
        measured_handler_ns.saturating_sub(instrumentation)
    }

    /// What to add to a latency measured between the tracepoints to get the call's latency
    /// as its caller sees it: the boundary cost, less the tracing inside the window.
    pub fn latency_offset_ns(&self) -> i64 {
        (self.boundary_ns_per_call - self.instrumentation_ns_per_call).round() as i64
    }

    /// The four-part split of `calls` calls from what the tracepoints measured: the boundary
    /// cost charged per call, the tracing taken out of the handler time.
    pub fn split(&self, calls: u64, measured_handler_ns: u64, blocked_ns: u64, runqueue_ns: u64) -> Split {
        Split {
            entry_ns: (calls as f64 * self.boundary_ns_per_call).round() as u64,
            handler_ns: self.corrected_handler_ns(measured_handler_ns, calls),
            blocked_ns,
            runqueue_ns,
        }
    }
}

/// `(handler, entry)` of the calibration call from its detached round trip, its measured
/// handler time and the instrumentation inside the window. Consistent by construction: both
/// parts lie between 0 and the round trip, and add up to it (noise can make a part look
/// longer than the whole; the entry is never more than a call costs with nothing attached).
pub fn entry_cost(round_trip_ns: f64, measured_handler_ns: f64, instrumentation_ns: f64) -> (f64, f64) {
    let round_trip_ns = round_trip_ns.max(0.0);
    let handler = (measured_handler_ns - instrumentation_ns).clamp(0.0, round_trip_ns);
    (handler, round_trip_ns - handler)
}

/// The calibration's measurements on one CPU, each a batch's mean in ns per call. Batches
/// during which the thread was switched out are not here (they are counted in
/// `interrupted`): a preemption or an interrupt storm says nothing about the boundary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuBatches {
    /// `getppid` round trips timed in userspace with the programs detached.
    pub detached: Vec<f64>,
    /// The same with the programs attached ...
    pub attached: Vec<f64>,
    /// ... and the window between the tracepoints of those calls.
    pub getppid_window: Vec<f64>,
    /// The window of a call without a handler (`ENOSYS`): the tracing machinery alone.
    pub no_handler_window: Vec<f64>,
    pub interrupted: usize,
}

/// What the batches of one CPU say, in ns per call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuEstimate {
    pub round_trip_ns: f64,
    pub round_trip_attached_ns: f64,
    pub instrumentation_ns: f64,
    pub measured_handler_ns: f64,
    pub handler_ns: f64,
    pub entry_ns: f64,
    /// Half the difference between the entry estimated from the even and the odd batches.
    pub spread_ns: f64,
}

/// The order statistic every figure is taken at. Noise only ever adds time to a batch
/// (interrupts, cache misses after a switch, a sibling hyperthread, host steal), so a low
/// quantile is the figure nearest the undisturbed cost; not the minimum, which one lucky
/// batch decides.
pub const CALIBRATION_QUANTILE: f64 = 0.2;
/// Fewer clean batches than this of any kind, and a CPU's estimate is not made.
pub const MIN_CLEAN_BATCHES: usize = 6;

impl CpuBatches {
    /// The estimate, or `None` when too few batches were clean.
    pub fn estimate(&self) -> Option<CpuEstimate> {
        let lists = [
            &self.detached,
            &self.attached,
            &self.getppid_window,
            &self.no_handler_window,
        ];
        if lists.iter().any(|list| list.len() < MIN_CLEAN_BATCHES) {
            return None;
        }
        let q = |list: &[f64]| quantile(list, CALIBRATION_QUANTILE);
        let round_trip_ns = q(&self.detached);
        let measured_handler_ns = q(&self.getppid_window);
        let instrumentation_ns = q(&self.no_handler_window);
        let (handler_ns, entry_ns) = entry_cost(round_trip_ns, measured_handler_ns, instrumentation_ns);
        let half = |parity: usize| {
            let pick = |list: &[f64]| -> Vec<f64> { list.iter().skip(parity).step_by(2).copied().collect() };
            entry_cost(
                q(&pick(&self.detached)),
                q(&pick(&self.getppid_window)),
                q(&pick(&self.no_handler_window)),
            )
            .1
        };
        Some(CpuEstimate {
            round_trip_ns,
            round_trip_attached_ns: q(&self.attached),
            instrumentation_ns,
            measured_handler_ns,
            handler_ns,
            entry_ns,
            spread_ns: (half(0) - half(1)).abs() / 2.0,
        })
    }

    pub fn clean(&self) -> usize {
        self.detached.len() + self.attached.len() + self.no_handler_window.len()
    }

    /// Adds attached batches taken with every call timed: each batch's window is then its
    /// own, per call.
    pub fn add_timed(&mut self, timed: &AttachedBatches) {
        let per_call = |batch: &AttachedBatch| batch.window_ns as f64 / batch.calls as f64;
        self.attached
            .extend(timed.getppid.iter().map(|batch| batch.round_trip_ns));
        self.getppid_window.extend(timed.getppid.iter().map(per_call));
        self.no_handler_window.extend(timed.no_handler.iter().map(per_call));
        self.interrupted += timed.interrupted;
    }
}

/// One attached batch: its round trip timed in userspace (ns per call) and the windows
/// between the tracepoints of its calls, summed (ns; with sampling on, the timed calls
/// weighted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttachedBatch {
    pub round_trip_ns: f64,
    pub calls: u64,
    pub window_ns: u64,
}

/// Attached batches of one CPU with the profile running as set (sampling on or off): taken
/// during the calibration's rounds (the baseline) and again at every refresh, the same way,
/// so that the difference between two of them is drift, not method. Nothing is detached: the
/// long-running modes lose no call to a refresh, and need no capability for it.
#[derive(Clone, Debug, Default)]
pub struct AttachedBatches {
    /// Batches of `getppid` and of the call without a handler.
    pub getppid: Vec<AttachedBatch>,
    pub no_handler: Vec<AttachedBatch>,
    pub interrupted: usize,
}

/// What a set of [`AttachedBatches`] says, in ns per call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AttachedEstimate {
    pub round_trip_ns: f64,
    pub getppid_window_ns: f64,
    pub no_handler_window_ns: f64,
}

impl AttachedBatches {
    /// The estimate, or `None` when too few batches were clean.
    pub fn estimate(&self) -> Option<AttachedEstimate> {
        self.estimate_of(0, 1)
    }

    /// The estimates from the even and from the odd batches.
    pub fn halves(&self) -> Option<[AttachedEstimate; 2]> {
        Some([self.estimate_of(0, 2)?, self.estimate_of(1, 2)?])
    }

    fn estimate_of(&self, skip: usize, step: usize) -> Option<AttachedEstimate> {
        let pick = |batches: &[AttachedBatch]| -> Vec<AttachedBatch> {
            batches.iter().skip(skip).step_by(step).copied().collect()
        };
        let (getppid, no_handler) = (pick(&self.getppid), pick(&self.no_handler));
        let enough = MIN_CLEAN_BATCHES.div_ceil(step);
        if getppid.len() < enough || no_handler.len() < enough {
            return None;
        }
        let round_trips: Vec<f64> = getppid.iter().map(|batch| batch.round_trip_ns).collect();
        Some(AttachedEstimate {
            round_trip_ns: quantile(&round_trips, CALIBRATION_QUANTILE),
            getppid_window_ns: pooled_window(&getppid)?,
            no_handler_window_ns: pooled_window(&no_handler)?,
        })
    }
}

/// The window per call, pooled over the faster half of `batches` (by round trip). Pooled:
/// with sampling on only some calls are timed, and a quantile of batch means would be dragged
/// low by the random number of timed calls in a batch. The faster half: the round trip is
/// taken at a low quantile, and its windows must come from batches like those (where the
/// machine's speed flips during a refresh, the slow batches' windows made a boundary look
/// 40% cheaper than it was).
fn pooled_window(batches: &[AttachedBatch]) -> Option<f64> {
    let round_trips: Vec<f64> = batches.iter().map(|batch| batch.round_trip_ns).collect();
    let median = quantile(&round_trips, 0.5);
    let (calls, window_ns) = batches
        .iter()
        .filter(|batch| batch.round_trip_ns <= median)
        .fold((0u64, 0u64), |(calls, ns), batch| {
            (calls + batch.calls, ns + batch.window_ns)
        });
    (calls > 0).then(|| window_ns as f64 / calls as f64)
}

/// A CPU's calibration moved by what changed since its baseline, without detaching: the
/// round trip with the programs attached is the boundary, the window and the programs' work
/// outside the window. The window is measured; the programs' work outside it is the same
/// kind of work as the tracing inside the window (the call without a handler), and moves in
/// proportion to it: a machine whose speed changes (a host's steal or contention: the AMD
/// machine flips between two speeds 1.3x apart every second or so, loaded or not) slows all
/// of it, not only the boundary. What the round trip gained beyond that is the boundary's.
/// The tracing inside the window moves with the window of the call without a handler.
/// Consistent as [`entry_cost`] makes it.
pub fn drifted(start: &CpuEstimate, baseline: &AttachedEstimate, now: &AttachedEstimate) -> CpuEstimate {
    let tracing_drift = now.no_handler_window_ns - baseline.no_handler_window_ns;
    let tracing_speed = if baseline.no_handler_window_ns > 0.0 {
        now.no_handler_window_ns / baseline.no_handler_window_ns
    } else {
        1.0
    };
    let outside_window_ns = (baseline.round_trip_ns - baseline.getppid_window_ns - start.entry_ns).max(0.0);
    let entry_ns = now.round_trip_ns - now.getppid_window_ns - outside_window_ns * tracing_speed;
    let measured_handler_ns = start.measured_handler_ns + (now.getppid_window_ns - baseline.getppid_window_ns);
    let instrumentation_ns = (start.instrumentation_ns + tracing_drift).max(0.0);
    let round_trip_ns = (measured_handler_ns - instrumentation_ns).max(0.0) + entry_ns;
    let (handler_ns, entry_ns) = entry_cost(round_trip_ns, measured_handler_ns, instrumentation_ns);
    CpuEstimate {
        round_trip_ns: handler_ns + entry_ns,
        round_trip_attached_ns: now.round_trip_ns,
        instrumentation_ns,
        measured_handler_ns,
        handler_ns,
        entry_ns,
        spread_ns: start.spread_ns,
    }
}

/// [`drifted`], with the spread widened by how far the two halves of the refresh disagree.
pub fn refreshed(start: &CpuEstimate, baseline: &AttachedEstimate, now: &AttachedBatches) -> Option<CpuEstimate> {
    let mut estimate = drifted(start, baseline, &now.estimate()?);
    let [even, odd] = now.halves()?;
    let disagreement = (drifted(start, baseline, &even).entry_ns - drifted(start, baseline, &odd).entry_ns).abs();
    estimate.spread_ns = start.spread_ns + disagreement / 2.0;
    Some(estimate)
}

/// Refreshed estimates a CPU keeps: its charge is their median ([`steadied`]).
pub const REFRESHES_KEPT: usize = 5;

/// What a CPU is charged from its latest refreshed estimates (at most [`REFRESHES_KEPT`],
/// the calibration's first): the one with the median entry cost (the mean of the middle two
/// of an even number), its `±` widened to half their range. One refresh measures ~55 ms: on
/// a machine whose speed flips between two modes (the AMD machine, 1.3x apart, every second
/// or so) it catches one of them, and the charge would flip with it; the median follows a
/// lasting change within three refreshes.
pub fn steadied(recent: &[CpuEstimate]) -> Option<CpuEstimate> {
    let mut sorted = recent.to_vec();
    sorted.sort_by(|a, b| a.entry_ns.total_cmp(&b.entry_ns));
    let (lowest, highest) = (sorted.first()?.entry_ns, sorted.last()?.entry_ns);
    let (below, above) = (sorted[(sorted.len() - 1) / 2], sorted[sorted.len() / 2]);
    let mean = |f: fn(&CpuEstimate) -> f64| (f(&below) + f(&above)) / 2.0;
    let median = CpuEstimate {
        round_trip_ns: mean(|e| e.round_trip_ns),
        round_trip_attached_ns: mean(|e| e.round_trip_attached_ns),
        instrumentation_ns: mean(|e| e.instrumentation_ns),
        measured_handler_ns: mean(|e| e.measured_handler_ns),
        handler_ns: mean(|e| e.handler_ns),
        entry_ns: mean(|e| e.entry_ns),
        spread_ns: mean(|e| e.spread_ns),
    };
    Some(CpuEstimate {
        spread_ns: median.spread_ns.max((highest - lowest) / 2.0),
        ..median
    })
}

/// Which of a machine's `cpus` (measurable) CPUs the refresh numbered `turn` measures: at most
/// `at_once`, taking turns, so that a refresh costs the same on 200 CPUs as on 4 (measuring
/// one takes ~55 ms of the agent's thread on the AMD machine).
pub fn refresh_turn(cpus: usize, at_once: usize, turn: u64) -> Vec<usize> {
    if cpus <= at_once {
        return (0..cpus).collect();
    }
    let first = (turn % cpus as u64) as usize * at_once % cpus;
    (0..at_once).map(|i| (first + i) % cpus).collect()
}

/// The estimate of a CPU whose turn a refresh was not, moved as the CPUs it measured moved:
/// `entry_drift_ns` is the median of what their entry costs gained (load moves the boundary
/// cost of a whole machine: its caches, its memory bandwidth, a host's steal).
pub fn carried(estimate: &CpuEstimate, entry_drift_ns: f64) -> CpuEstimate {
    let entry_ns = (estimate.entry_ns + entry_drift_ns).max(0.0);
    CpuEstimate {
        entry_ns,
        round_trip_ns: estimate.handler_ns + entry_ns,
        ..*estimate
    }
}

/// The charges from the estimates of the CPUs that had one (their means), or, with none,
/// nothing charged and the machine said to be too busy. `pinned`: the user's boundary cost,
/// which replaces the measured one.
pub fn charges_from(estimates: &[CpuEstimate], pinned: Option<f64>) -> Charges {
    let mean = |f: fn(&CpuEstimate) -> f64| estimates.iter().map(f).sum::<f64>() / estimates.len().max(1) as f64;
    let instrumentation_ns_per_call = mean(|e| e.instrumentation_ns);
    match pinned {
        Some(boundary_ns_per_call) => Charges {
            boundary_ns_per_call,
            instrumentation_ns_per_call,
            boundary_source: BoundarySource::Pinned,
            boundary_spread_ns: 0.0,
        },
        None if estimates.is_empty() => Charges {
            boundary_source: BoundarySource::TooBusy,
            ..Charges::default()
        },
        None => Charges {
            boundary_ns_per_call: mean(|e| e.entry_ns),
            instrumentation_ns_per_call,
            boundary_source: BoundarySource::Calibrated,
            boundary_spread_ns: mean(|e| e.spread_ns),
        },
    }
}

/// The `q` quantile (0..=1) of a non-empty list, by nearest rank.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARGES: Charges = Charges {
        boundary_ns_per_call: 52.4,
        instrumentation_ns_per_call: 20.0,
        boundary_source: BoundarySource::Calibrated,
        boundary_spread_ns: 0.0,
    };

    #[test]
    fn refreshes_take_turns_over_the_cpus() {
        // Few CPUs: all of them every time.
        assert_eq!(refresh_turn(2, 4, 0), vec![0, 1]);
        assert_eq!(refresh_turn(4, 4, 7), vec![0, 1, 2, 3]);
        // More: `at_once` a time, every CPU in turn, round and round.
        let turns: Vec<Vec<usize>> = (0..4).map(|turn| refresh_turn(10, 4, turn)).collect();
        assert_eq!(
            turns,
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 0, 1], vec![2, 3, 4, 5]]
        );
        let mut seen: Vec<usize> = (0..5).flat_map(|turn| refresh_turn(10, 4, turn)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "every CPU within a few turns");
        // No overflow, however many refreshes.
        assert_eq!(refresh_turn(3, 2, u64::MAX).len(), 2);
    }

    #[test]
    fn a_cpu_not_measured_moves_with_those_that_were() {
        let estimate = CpuEstimate {
            round_trip_ns: 150.0,
            round_trip_attached_ns: 400.0,
            instrumentation_ns: 30.0,
            measured_handler_ns: 60.0,
            handler_ns: 40.0,
            entry_ns: 110.0,
            spread_ns: 5.0,
        };
        let moved = carried(&estimate, 25.0);
        assert_eq!((moved.entry_ns, moved.round_trip_ns), (135.0, 175.0));
        assert_eq!((moved.handler_ns, moved.spread_ns), (40.0, 5.0));
        // Never below nothing.
        assert_eq!(carried(&estimate, -500.0).entry_ns, 0.0);
    }

    #[test]
    fn entry_cost_is_round_trip_minus_the_corrected_handler() {
        // 80 ns round trip; the window saw 45 ns, 15 of them tracing: handler 30, entry 50.
        assert_eq!(entry_cost(80.0, 45.0, 15.0), (30.0, 50.0));
        // Noise never makes a part negative, nor larger than the whole round trip.
        assert_eq!(entry_cost(30.0, 61.0, 0.0), (30.0, 0.0));
        assert_eq!(entry_cost(80.0, 10.0, 15.0), (0.0, 80.0));
        assert_eq!(entry_cost(-5.0, 10.0, 0.0), (0.0, 0.0));
    }

    #[test]
    fn quantile_is_by_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&values, 0.2), 1.0);
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 1.0), 5.0);
    }

    /// Batches around a true cost, most of them disturbed upwards as on a busy machine.
    fn noisy(true_ns: f64, batches: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..batches)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = (state >> 33) as f64 / (1u64 << 31) as f64; // 0..1
                                                                         // One batch in three much slower (up to 3x): load, not the boundary.
                let slow = if i % 3 == 0 { 2.0 * jitter } else { 0.05 * jitter };
                true_ns * (1.0 + slow)
            })
            .collect()
    }

    #[test]
    fn a_busy_machines_noise_does_not_move_the_estimate() {
        // Round trip 300 ns, of which 100 handler; the window holds 60 ns of tracing.
        let batches = CpuBatches {
            detached: noisy(300.0, 24, 1),
            attached: noisy(520.0, 24, 2),
            getppid_window: noisy(160.0, 24, 3),
            no_handler_window: noisy(60.0, 24, 4),
            interrupted: 10,
        };
        let estimate = batches.estimate().expect("enough clean batches");
        assert!((estimate.entry_ns - 200.0).abs() < 20.0, "{estimate:?}");
        assert!(estimate.entry_ns <= estimate.round_trip_ns);
        assert!(estimate.spread_ns < 20.0, "{estimate:?}");
        assert_eq!(batches.clean(), 72);
    }

    #[test]
    fn too_few_clean_batches_make_no_estimate_and_nothing_is_charged() {
        let batches = CpuBatches {
            detached: vec![300.0; MIN_CLEAN_BATCHES - 1],
            attached: vec![500.0; 20],
            getppid_window: vec![160.0; 20],
            no_handler_window: vec![60.0; 20],
            interrupted: 40,
        };
        assert_eq!(batches.estimate(), None);
        let charges = charges_from(&[], None);
        assert_eq!(charges.boundary_source, BoundarySource::TooBusy);
        assert_eq!(charges.boundary_ns_per_call, 0.0);
        assert_eq!(charges.split(10, 1_000, 0, 0).entry_ns, 0);
    }

    #[test]
    fn a_pinned_boundary_replaces_the_measured_one() {
        let estimate = CpuEstimate {
            round_trip_ns: 300.0,
            round_trip_attached_ns: 500.0,
            instrumentation_ns: 60.0,
            measured_handler_ns: 160.0,
            handler_ns: 100.0,
            entry_ns: 200.0,
            spread_ns: 4.0,
        };
        let measured = charges_from(
            &[
                estimate,
                CpuEstimate {
                    entry_ns: 220.0,
                    spread_ns: 6.0,
                    ..estimate
                },
            ],
            None,
        );
        assert_eq!(measured.boundary_ns_per_call, 210.0);
        assert_eq!(measured.boundary_spread_ns, 5.0);
        assert_eq!(measured.boundary_source, BoundarySource::Calibrated);
        let pinned = charges_from(&[estimate], Some(150.0));
        assert_eq!(pinned.boundary_ns_per_call, 150.0);
        assert_eq!(pinned.instrumentation_ns_per_call, 60.0);
        assert_eq!(pinned.boundary_source, BoundarySource::Pinned);
        // Pinned with no clean batch at all: the tracing is not taken out.
        assert_eq!(charges_from(&[], Some(150.0)).instrumentation_ns_per_call, 0.0);
    }

    const START: CpuEstimate = CpuEstimate {
        round_trip_ns: 80.0,
        round_trip_attached_ns: 200.0,
        instrumentation_ns: 15.0,
        measured_handler_ns: 45.0,
        handler_ns: 30.0,
        entry_ns: 50.0,
        spread_ns: 1.0,
    };
    const BASELINE: AttachedEstimate = AttachedEstimate {
        round_trip_ns: 200.0,
        getppid_window_ns: 45.0,
        no_handler_window_ns: 15.0,
    };

    #[test]
    fn no_drift_leaves_the_calibration_as_it_was() {
        let same = drifted(&START, &BASELINE, &BASELINE);
        assert_eq!(same, START);
    }

    #[test]
    fn drift_the_window_did_not_see_is_the_boundarys() {
        // The round trip gained 12 ns, the window nothing: a costlier boundary.
        let slower_boundary = AttachedEstimate {
            round_trip_ns: 212.0,
            ..BASELINE
        };
        let moved = drifted(&START, &BASELINE, &slower_boundary);
        assert_eq!((moved.entry_ns, moved.handler_ns), (62.0, 30.0));
        assert_eq!(moved.round_trip_ns, 92.0);
        // The window gained what the round trip did: a slower handler, the same boundary.
        let slower_handler = AttachedEstimate {
            round_trip_ns: 212.0,
            getppid_window_ns: 57.0,
            ..BASELINE
        };
        let moved = drifted(&START, &BASELINE, &slower_handler);
        assert_eq!((moved.entry_ns, moved.handler_ns), (50.0, 42.0));
        // A machine 1.3x slower all over (the programs' 105 ns outside the window too): the
        // boundary is 1.3x too, not charged the programs' slowdown as well (96.5 ns).
        let slower_machine = AttachedEstimate {
            round_trip_ns: 260.0,
            getppid_window_ns: 58.5,
            no_handler_window_ns: 19.5,
        };
        let moved = drifted(&START, &BASELINE, &slower_machine);
        assert!((moved.entry_ns - 65.0).abs() < 1e-9, "{moved:?}");
        assert!((moved.handler_ns - 39.0).abs() < 1e-9, "{moved:?}");
        assert!((moved.instrumentation_ns - 19.5).abs() < 1e-9, "{moved:?}");
        // And back from a slow baseline: not charged less than the boundary at full speed.
        let back = drifted(&moved, &slower_machine, &BASELINE);
        assert!((back.entry_ns - 50.0).abs() < 1e-9, "{back:?}");
        // Never below zero, nor more than a call costs.
        let much_faster = AttachedEstimate {
            round_trip_ns: 100.0,
            ..BASELINE
        };
        assert_eq!(drifted(&START, &BASELINE, &much_faster).entry_ns, 0.0);
    }

    /// Attached batches of 2000 calls with 1 in 16 timed at random (weight 16): the number
    /// of timed calls in a batch varies by ~9%.
    fn sampled_batches(round_trip_ns: f64, window_ns: f64, batches: usize, seed: u64) -> AttachedBatches {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut sampled = AttachedBatches::default();
        for _ in 0..batches {
            let timed = (0..2000).filter(|_| next() % 16 == 0).count() as u64;
            let weighted_window = (timed * 16) as f64 * window_ns;
            let round_trip_ns = round_trip_ns * (1.0 + f64::from(next() % 100) / 1000.0);
            let batch = |window_ns: f64| AttachedBatch {
                round_trip_ns,
                calls: 2000,
                window_ns: window_ns as u64,
            };
            sampled.getppid.push(batch(weighted_window));
            sampled.no_handler.push(batch(weighted_window / 3.0));
        }
        sampled
    }

    #[test]
    fn sampled_windows_are_pooled_not_taken_at_a_low_quantile() {
        let batches = sampled_batches(200.0, 45.0, 24, 7);
        let estimate = batches.estimate().expect("enough batches");
        assert!((estimate.getppid_window_ns - 45.0).abs() < 1.0, "{estimate:?}");
        assert!((estimate.no_handler_window_ns - 15.0).abs() < 0.5, "{estimate:?}");
        // The 20th percentile of the batch means would have been dragged low.
        let means: Vec<f64> = batches
            .getppid
            .iter()
            .map(|batch| batch.window_ns as f64 / batch.calls as f64)
            .collect();
        assert!(quantile(&means, CALIBRATION_QUANTILE) < 43.5);
        assert!(AttachedBatches {
            getppid: batches.getppid[..MIN_CLEAN_BATCHES - 1].to_vec(),
            ..batches
        }
        .estimate()
        .is_none());
    }

    #[test]
    fn timed_batches_join_the_calibration_per_call() {
        let batch = |round_trip_ns: f64, window_ns: u64| AttachedBatch {
            round_trip_ns,
            calls: 2000,
            window_ns,
        };
        let timed = AttachedBatches {
            getppid: vec![batch(300.0, 400_000), batch(310.0, 420_000)],
            no_handler: vec![batch(250.0, 300_000)],
            interrupted: 1,
        };
        let mut batches = CpuBatches {
            interrupted: 2,
            ..CpuBatches::default()
        };
        batches.add_timed(&timed);
        assert_eq!(batches.attached, vec![300.0, 310.0]);
        assert_eq!(batches.getppid_window, vec![200.0, 210.0]);
        assert_eq!(batches.no_handler_window, vec![150.0]);
        assert_eq!(batches.interrupted, 3);
    }

    #[test]
    fn the_windows_come_from_batches_as_fast_as_the_round_trip() {
        // The machine 1.3x slower for half the batches (the AMD machine flips like that):
        // the round trip is the fast batches', and so must the windows be.
        let mut batches = sampled_batches(200.0, 45.0, 24, 5);
        let slow = sampled_batches(260.0, 58.5, 24, 9);
        for (index, slow_batch) in slow.getppid.iter().enumerate().filter(|(index, _)| index % 2 == 1) {
            batches.getppid[index] = *slow_batch;
            batches.no_handler[index] = slow.no_handler[index];
        }
        let estimate = batches.estimate().expect("enough batches");
        assert!(estimate.round_trip_ns < 220.0, "{estimate:?}");
        assert!((estimate.getppid_window_ns - 45.0).abs() < 1.5, "{estimate:?}");
        assert!((estimate.no_handler_window_ns - 15.0).abs() < 0.5, "{estimate:?}");
    }

    #[test]
    fn a_refresh_moves_by_the_drift_and_says_how_sure_it_is() {
        let now = sampled_batches(212.0, 45.0, 24, 11);
        let moved = refreshed(&START, &BASELINE, &now).expect("enough batches");
        // The round trip's 20th percentile gained ~14 ns of which the window nothing.
        assert!((moved.entry_ns - 64.0).abs() < 3.0, "{moved:?}");
        assert!(moved.spread_ns >= START.spread_ns && moved.spread_ns < 5.0, "{moved:?}");
        assert_eq!(refreshed(&START, &BASELINE, &AttachedBatches::default()), None);
    }

    #[test]
    fn a_cpu_is_charged_the_median_of_its_recent_refreshes() {
        let at = |entry_ns: f64| CpuEstimate {
            entry_ns,
            round_trip_ns: START.handler_ns + entry_ns,
            ..START
        };
        assert_eq!(steadied(&[]), None);
        assert_eq!(steadied(&[at(50.0)]), Some(at(50.0)));
        // A machine flipping between two speeds: the charge stays with the majority, and
        // its `±` says how far they were apart.
        let flipping = steadied(&[at(50.0), at(80.0), at(52.0), at(81.0), at(49.0)]).unwrap();
        assert_eq!(flipping.entry_ns, 52.0);
        assert_eq!(flipping.spread_ns, 16.0);
        // An even number: between the middle two.
        let two = steadied(&[at(50.0), at(70.0)]).unwrap();
        assert_eq!((two.entry_ns, two.round_trip_ns), (60.0, 90.0));
    }

    #[test]
    fn handler_correction_takes_the_tracing_out_per_call() {
        assert_eq!(CHARGES.corrected_handler_ns(10_000, 100), 8_000);
        assert_eq!(CHARGES.corrected_handler_ns(1_000, 100), 0);
        let small = Charges {
            instrumentation_ns_per_call: 0.4,
            ..CHARGES
        };
        assert_eq!(small.corrected_handler_ns(1_000, 3), 999);
    }

    #[test]
    fn the_split_charges_entry_per_call_and_adds_up_exactly() {
        let s = CHARGES.split(1000, 30_000, 7, 11);
        assert_eq!(s.entry_ns, 52_400);
        assert_eq!(s.handler_ns, 10_000);
        assert_eq!(s.total_ns(), s.entry_ns + s.handler_ns + s.blocked_ns + s.runqueue_ns);
        assert_eq!(Charges::default().split(5, 100, 1, 2).total_ns(), 103);
    }

    #[test]
    fn latency_offset_is_boundary_less_instrumentation() {
        assert_eq!(CHARGES.latency_offset_ns(), 32);
        let negative = Charges {
            boundary_ns_per_call: 10.0,
            instrumentation_ns_per_call: 40.0,
            ..CHARGES
        };
        assert_eq!(negative.latency_offset_ns(), -30);
    }
}
