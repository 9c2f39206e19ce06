//! The agent's own CPU and memory beside many busy processes.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::as_root;

/// CPU share and peak RSS of `syscall-profiler report` beside `count` busy processes. The
/// steady-state CPU is the difference between a long and a short run, so start-up
/// (loading, calibration) and the final report cancel out.
pub(super) fn agent_cost(profiler: &Path, workload: &Path, count: usize) -> Result<String> {
    let mut busy: Vec<Child> = (0..count)
        .map(|_| {
            Command::new(workload)
                .args(["busy", "60"])
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()
        .context("starting the busy processes")?;
    thread::sleep(Duration::from_secs(2));
    let timed = |seconds: u32| -> Result<(f64, f64, u64)> {
        let out = as_root(Path::new("/usr/bin/time"))
            .args(["-f", "%e %U %S %M"])
            .arg(profiler)
            .args([
                "report",
                "--format",
                "json",
                "-o",
                "/dev/null",
                "--duration",
                &seconds.to_string(),
            ])
            .stderr(Stdio::piped())
            .output()
            .context("running /usr/bin/time syscall-profiler report")?;
        let text = String::from_utf8_lossy(&out.stderr);
        let line = text.lines().last().unwrap_or_default();
        let fields: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if fields.len() < 4 {
            bail!("unexpected /usr/bin/time output: {text}");
        }
        Ok((fields[0], fields[1] + fields[2], fields[3] as u64))
    };
    let short = timed(3);
    let long = timed(13);
    for child in &mut busy {
        let _ = child.kill();
    }
    for child in &mut busy {
        let _ = child.wait();
    }
    let ((short_wall, short_cpu, _), (long_wall, long_cpu, rss_kib)) = (short?, long?);
    let share = (long_cpu - short_cpu) / (long_wall - short_wall) * 100.0;
    Ok(format!(
        "| measure | value |\n|---|---|\n| agent CPU, steady state (13 s run - 3 s run) | {share:.2}% of one CPU |\n\
         | agent CPU, whole 13 s run incl. start-up and report | {:.2}% |\n| agent peak RSS | {:.1} MiB |",
        long_cpu / long_wall * 100.0,
        rss_kib as f64 / 1024.0
    ))
}
