//! `syscall-profiler calibrate`: measure the boundary cost charged to every call, and show how
//! it was measured.
use std::{fs, path::Path};

use crate::{
    commands::args::KernelArgs,
    kernel::{Probe, Scope},
    model::charges::CALIBRATION_QUANTILE,
    session::{
        calibrate::{self, Calibration, NR_NO_HANDLER},
        priority::RaisedPriority,
    },
};

pub fn run(maps: KernelArgs) -> anyhow::Result<()> {
    let _raised = RaisedPriority::raise();
    let mut probe = Probe::load_default(maps.sizes(), Scope::SystemWide)?;
    let calibration = calibrate::calibrate(&mut probe, None, maps.sample_every)?;
    probe.detach();
    let vulnerabilities = mitigations(std::path::Path::new("/sys/devices/system/cpu/vulnerabilities"));
    print!("{}", render(&calibration, &vulnerabilities));
    Ok(())
}

/// The CPU's mitigation state, `(vulnerability, state)`, from
/// `/sys/devices/system/cpu/vulnerabilities`: it explains most of the boundary cost.
fn mitigations(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let state = fs::read_to_string(entry.path()).ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                state.trim().to_owned(),
            ))
        })
        .collect();
    found.sort();
    found
}

/// Human-readable calibration report for `syscall-profiler calibrate`.
fn render(calibration: &Calibration, mitigations: &[(String, String)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let charges = &calibration.charges;
    if calibration.measured() {
        let _ = writeln!(
            out,
            "boundary cost: {:.1} ns per syscall (±{:.1})",
            charges.boundary_ns_per_call, charges.boundary_spread_ns
        );
    } else {
        let _ = writeln!(out, "boundary cost: {}", charges.boundary_source.describe());
    }
    let _ = writeln!(
        out,
        "tracing inside the measured window: {:.1} ns per syscall (subtracted from handler times)",
        charges.instrumentation_ns_per_call
    );
    let _ = writeln!(
        out,
        "\nhow: on each CPU, {} rounds of batches of {} getppid() calls timed in userspace, with the\n\
         programs detached (the full round trip) and attached (the handler time the tracepoints\n\
         see, less the tracing machinery inside that window, measured as the window of syscall {},\n\
         which has no handler). The round trip minus getppid's own handler time is what the\n\
         tracepoints cannot see: the trap, entry/exit code and mitigations. It is charged to every\n\
         call as `entry`. Batches during which the thread was switched out are thrown away; each\n\
         figure is the {:.0}th percentile of the rest (noise only adds time); ± is half the\n\
         difference between the estimates of the even and the odd batches.\n",
        calibration.rounds,
        calibration.calls_per_batch,
        NR_NO_HANDLER,
        CALIBRATION_QUANTILE * 100.0
    );
    let priority = if calibration.realtime() {
        "at real-time priority (SCHED_FIFO 1), which busy processes do not preempt: at normal\n\
         priority they left too few clean"
    } else {
        "at normal priority"
    };
    let _ = writeln!(out, "The batches ran {priority}.\n");
    let _ = writeln!(
        out,
        "{:>4}  {:>9}  {:>10}  {:>14}  {:>14}  {:>8}  {:>8}  {:>6}  {:>8}",
        "CPU", "batches", "round trip", "window tracing", "getppid window", "handler", "entry", "±", "attached"
    );
    for cpu in &calibration.per_cpu {
        let batches = format!("{}/{}", cpu.clean_batches, cpu.clean_batches + cpu.interrupted_batches);
        match &cpu.estimate {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "{:>4}  {:>9}  {:>10.1}  {:>14.1}  {:>14.1}  {:>8.1}  {:>8.1}  {:>6.1}  {:>8.1}",
                    cpu.cpu,
                    batches,
                    e.round_trip_ns,
                    e.instrumentation_ns,
                    e.measured_handler_ns,
                    e.handler_ns,
                    e.entry_ns,
                    e.spread_ns,
                    e.round_trip_attached_ns
                );
            }
            None => {
                let _ = writeln!(out, "{:>4}  {:>9}  too few clean batches", cpu.cpu, batches);
            }
        }
    }
    let _ = writeln!(
        out,
        "(ns per call; batches: clean/all; `attached` is the round trip with the profiler attached)"
    );
    if calibration.per_cpu.len() < calibration.cpus {
        let _ = writeln!(
            out,
            "({} of the {} CPUs measured, spread evenly over them: the boundary charged is their mean)",
            calibration.per_cpu.len(),
            calibration.cpus
        );
    }
    let _ = writeln!(
        out,
        "\nprofiler overhead: {:.1} ns per syscall (attached - detached round trip, at least the tracing inside the window)",
        calibration.overhead_ns_per_call
    );
    let _ = writeln!(out, "\nCPU mitigations (/sys/devices/system/cpu/vulnerabilities):");
    if mitigations.is_empty() {
        let _ = writeln!(out, "  (not available)");
    }
    for (name, state) in mitigations {
        let _ = writeln!(out, "  {name:<28} {state}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::charges::{charges_from, CpuEstimate},
        session::calibrate::CpuCalibration,
    };

    #[test]
    fn mitigations_are_read_sorted() {
        let dir = std::env::temp_dir().join(format!("vulns-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("spectre_v2"), "Mitigation: Retpolines\n").unwrap();
        fs::write(dir.join("meltdown"), "Not affected\n").unwrap();
        let found = mitigations(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            vec![
                ("meltdown".to_string(), "Not affected".to_string()),
                ("spectre_v2".to_string(), "Mitigation: Retpolines".to_string())
            ]
        );
        assert!(mitigations(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn render_names_the_method_and_the_figures() {
        let estimate = CpuEstimate {
            round_trip_ns: 80.0,
            round_trip_attached_ns: 125.0,
            instrumentation_ns: 15.0,
            measured_handler_ns: 45.0,
            handler_ns: 30.0,
            entry_ns: 50.0,
            spread_ns: 2.5,
        };
        let mut calibration = Calibration {
            per_cpu: vec![
                CpuCalibration {
                    cpu: 0,
                    clean_batches: 70,
                    interrupted_batches: 2,
                    realtime: true,
                    estimate: Some(estimate),
                    start: None,
                    recent: Vec::new(),
                },
                CpuCalibration {
                    cpu: 1,
                    clean_batches: 3,
                    interrupted_batches: 69,
                    realtime: true,
                    estimate: None,
                    start: None,
                    recent: Vec::new(),
                },
            ],
            cpus: 2,
            charges: charges_from(&[estimate], None),
            overhead_ns_per_call: 45.0,
            calls_per_batch: 10,
            rounds: 3,
            refreshes: 0,
            refreshes_too_busy: 0,
        };
        let text = render(&calibration, &[("meltdown".into(), "Not affected".into())]);
        assert!(text.contains("boundary cost: 50.0 ns per syscall (±2.5)"), "{text}");
        assert!(text.contains("getppid"));
        assert!(text.contains("meltdown"));
        assert!(text.contains("45.0 ns"));
        assert!(text.contains("70/72"), "{text}");
        assert!(text.contains("3/72  too few clean batches"), "{text}");
        assert!(text.contains("ran at real-time priority"), "{text}");
        assert!(!text.contains("spread evenly"), "every CPU measured: {text}");
        calibration.cpus = 64;
        let text = render(&calibration, &[]);
        assert!(text.contains("2 of the 64 CPUs measured"), "{text}");
        calibration.charges = charges_from(&[], None);
        let text = render(&calibration, &[]);
        assert!(text.contains("too busy to calibrate"), "{text}");
    }
}
