//! `cargo xtask bench`: the profiler's overhead, measured side by side in one run.
//!
//! Each configuration (nothing attached, the empty floor programs, the full profiler) is run
//! in turn, `--runs` times round-robin so drift on a shared machine hits all of them alike;
//! the table shows medians and ratios against the baseline of the same run.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{as_root, step};

#[derive(Args)]
pub struct BenchArgs {
    /// Round-robin repetitions of every configuration.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// getppid calls per null-syscall measurement.
    #[arg(long, default_value_t = 2_000_000)]
    pub calls: u64,
    /// Round trips per context-switch measurement.
    #[arg(long, default_value_t = 100_000)]
    pub rounds: u64,
}

/// Something attached while the workload runs.
struct Config {
    name: &'static str,
    /// `syscall-profiler attach MODE`, or nothing for the baseline.
    attach: Option<&'static str>,
}

const CONFIGS: [Config; 3] = [
    Config {
        name: "nothing attached",
        attach: None,
    },
    Config {
        name: "empty programs (floor)",
        attach: Some("floor"),
    },
    Config {
        name: "syscall-profiler (full)",
        attach: Some("full"),
    },
];

struct Attached {
    child: Child,
}

impl Attached {
    fn start(profiler: &Path, mode: &str) -> Result<Attached> {
        let mut child = as_root(profiler)
            .args(["attach", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscall-profiler attach")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
        if !line.starts_with("attached") {
            let _ = child.kill();
            bail!("syscall-profiler attach {mode} did not attach");
        }
        Ok(Attached { child })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: it detaches and exits
        let _ = self.child.wait();
    }
}

fn measure(workload: &Path, args: &[&str]) -> Result<f64> {
    let out = Command::new(workload)
        .args(args)
        .output()
        .context("running the workload")?;
    if !out.status.success() {
        bail!("workload {args:?} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("workload output")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    let profiler = root.join("target/release/syscall-profiler");
    let workload = root.join("target/release/profiler-workload");
    let calls = args.calls.to_string();
    let rounds = args.rounds.to_string();
    let mut null_ns: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    let mut switch_ns: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    for run in 0..args.runs {
        step(&format!("run {}/{}", run + 1, args.runs));
        for (i, config) in CONFIGS.iter().enumerate() {
            let _attached = config.attach.map(|mode| Attached::start(&profiler, mode)).transpose()?;
            thread::sleep(Duration::from_millis(200));
            null_ns[i].push(measure(&workload, &["time-getppid", &calls])?);
            switch_ns[i].push(measure(&workload, &["time-pingpong", &rounds])?);
        }
    }
    let null: Vec<f64> = null_ns.iter_mut().map(|v| median(v)).collect();
    let switch: Vec<f64> = switch_ns.iter_mut().map(|v| median(v)).collect();
    println!("| configuration | getppid ns/call | added ns | ping-pong ns/round trip | added |");
    println!("|---|---|---|---|---|");
    for (i, config) in CONFIGS.iter().enumerate() {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} |",
            config.name,
            null[i],
            if i == 0 {
                "-".to_owned()
            } else {
                format!("+{:.0}", null[i] - null[0])
            },
            switch[i],
            if i == 0 {
                "-".to_owned()
            } else {
                format!("{:+.1}%", (switch[i] / switch[0] - 1.0) * 100.0)
            },
        );
    }
    let floor = null[1] - null[0];
    let full = null[2] - null[0];
    println!(
        "\nfull profiler: +{full:.0} ns per syscall = {:.2}x the floor's +{floor:.0} ns (medians of {} runs)",
        full / floor,
        args.runs
    );
    Ok(())
}
