//! Running the workload and reading the value it prints.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use super::{
    configs::{Config, Observer},
    observers::Beside,
};

/// One run of the workload (under `wrapper`, if any): the value it prints.
pub(super) fn measure_once(wrapper: &[&str], workload: &Path, args: &[&str]) -> Result<f64> {
    let mut command = match wrapper.split_first() {
        None => Command::new(workload),
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(workload);
            command
        }
    };
    let out = command
        .args(args)
        .stderr(Stdio::null())
        .output()
        .context("running the workload")?;
    if !out.status.success() {
        bail!("workload {args:?} under {wrapper:?} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("workload output")
}

/// Best of 3 runs: noise on a shared machine only ever adds time.
pub(super) fn measure(wrapper: &[&str], workload: &Path, args: &[&str]) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(measure_once(wrapper, workload, args)?);
    }
    Ok(best)
}

pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) null_ns: Vec<f64>,
    /// The null loop in 2 threads of one process at once.
    pub(super) threads_ns: Vec<f64>,
    /// Ping-pong with the two threads free to run on any CPU (cross-CPU wakeups).
    pub(super) switch_ns: Vec<f64>,
    /// Ping-pong with both threads on CPU 0: every round trip is two context switches.
    pub(super) one_cpu_switch_ns: Vec<f64>,
    pub(super) note: Option<String>,
}

impl Row {
    pub(super) fn new(name: &'static str) -> Row {
        Row {
            name,
            null_ns: Vec::new(),
            threads_ns: Vec::new(),
            switch_ns: Vec::new(),
            one_cpu_switch_ns: Vec::new(),
            note: None,
        }
    }
}

/// Runs `run` with a peer observing (the profiler's own states are set by the controller).
pub(super) fn observe<T>(config: &Config, run: impl FnOnce(&[&str]) -> Result<T>) -> Result<T> {
    match config.observer {
        Observer::Profiler { .. } => run(&[]),
        Observer::Bpftrace(script) => {
            let beside = Beside::bpftrace(script)?;
            let value = run(&[]);
            beside.finish();
            value
        }
        Observer::Wrapper(wrapper) => run(wrapper),
    }
}
