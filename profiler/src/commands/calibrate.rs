//! `syscall-profiler calibrate`: measure the boundary cost charged to every call, and show how
//! it was measured.
use std::{fs, path::Path};

use crate::{
    commands::args::KernelArgs,
    kernel::{Probe, Scope},
    session::calibrate::{self, Calibration, NR_NO_HANDLER},
};

pub fn run(maps: KernelArgs) -> anyhow::Result<()> {
    let mut probe = Probe::load_default(maps.sizes(), Scope::SystemWide)?;
    let mut calibration = calibrate::calibrate(&mut probe)?;
    calibrate::start_sampling(&mut probe, &mut calibration, maps.sample_every)?;
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
    let _ = writeln!(
        out,
        "boundary cost: {:.1} ns per syscall",
        calibration.charges.boundary_ns_per_call
    );
    let _ = writeln!(
        out,
        "tracing inside the measured window: {:.1} ns per syscall (subtracted from handler times)",
        calibration.charges.instrumentation_ns_per_call
    );
    let _ = writeln!(
        out,
        "\nhow: on each CPU, the median of {} runs of {} getppid() calls timed in userspace with the\n\
         programs detached (the full round trip), minus getppid's own handler time: the handler time\n\
         the tracepoints measured with the programs attached, less the tracing machinery inside that\n\
         window (measured as the window of syscall {} which has no handler). What is left is what the\n\
         tracepoints cannot see: the trap, entry/exit code and mitigations. It is charged to every\n\
         call as `entry`.\n",
        calibration.runs, calibration.calls_per_run, NR_NO_HANDLER
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>10}  {:>13}  {:>16}  {:>10}  {:>8}  {:>10}",
        "CPU", "round trip", "window tracing", "getppid window", "handler", "entry", "attached"
    );
    for cpu in &calibration.per_cpu {
        let _ = writeln!(
            out,
            "{:>4}  {:>10.1}  {:>13.1}  {:>16.1}  {:>10.1}  {:>8.1}  {:>10.1}",
            cpu.cpu,
            cpu.round_trip_ns,
            cpu.instrumentation_ns,
            cpu.measured_handler_ns,
            cpu.handler_ns,
            cpu.entry_ns,
            cpu.round_trip_attached_ns
        );
    }
    let _ = writeln!(
        out,
        "(ns per call; `attached` is the round trip with the profiler attached)"
    );
    let _ = writeln!(
        out,
        "\nprofiler overhead: {:.1} ns per syscall (attached - detached round trip)",
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
    use crate::{model::charges::Charges, session::calibrate::CpuCalibration};

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
        let calibration = Calibration {
            per_cpu: vec![CpuCalibration {
                cpu: 0,
                round_trip_ns: 80.0,
                round_trip_attached_ns: 125.0,
                instrumentation_ns: 15.0,
                measured_handler_ns: 45.0,
                handler_ns: 30.0,
                entry_ns: 50.0,
            }],
            charges: Charges {
                boundary_ns_per_call: 50.0,
                instrumentation_ns_per_call: 15.0,
            },
            overhead_ns_per_call: 45.0,
            calls_per_run: 10,
            runs: 3,
        };
        let text = render(&calibration, &[("meltdown".into(), "Not affected".into())]);
        assert!(text.contains("boundary cost: 50.0 ns per syscall"));
        assert!(text.contains("getppid"));
        assert!(text.contains("meltdown"));
        assert!(text.contains("45.0 ns"));
    }
}
