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
/// handler time and the instrumentation inside the window; neither is ever negative (noise
/// can make a part look longer than the whole).
pub fn entry_cost(round_trip_ns: f64, measured_handler_ns: f64, instrumentation_ns: f64) -> (f64, f64) {
    let handler = (measured_handler_ns - instrumentation_ns).max(0.0);
    (handler, (round_trip_ns - handler).max(0.0))
}

/// Median of a non-empty list.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARGES: Charges = Charges {
        boundary_ns_per_call: 52.4,
        instrumentation_ns_per_call: 20.0,
    };

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn entry_cost_is_round_trip_minus_the_corrected_handler() {
        // 80 ns round trip; the window saw 45 ns, 15 of them tracing: handler 30, entry 50.
        assert_eq!(entry_cost(80.0, 45.0, 15.0), (30.0, 50.0));
        // Noise never makes a part negative.
        assert_eq!(entry_cost(30.0, 61.0, 0.0), (61.0, 0.0));
        assert_eq!(entry_cost(80.0, 10.0, 15.0), (0.0, 80.0));
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
        };
        assert_eq!(negative.latency_offset_ns(), -30);
    }
}
