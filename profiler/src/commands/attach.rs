//! The hidden `attach` command, for benchmarks: the profiler's programs, or the empty floor
//! programs, attached until told otherwise.
use std::io::{self, Write};

use clap::{Args, ValueEnum};

use crate::{
    commands::args::{parse_sample_every, KernelArgs},
    kernel::{Probe, Scope, WaitRecording},
};

/// Attach the full profiler or the empty floor programs, print "attached", and hold them
/// until standard input closes or a signal arrives. `control` loads once and then switches on
/// lines read from standard input ("nothing", "floor", "full N" as `report` runs and
/// "counting N" as `top` and `serve` run, with N the sampling period),
/// answering "ok" to each, so that a benchmark can interleave configurations within
/// milliseconds.
#[derive(Args, Debug)]
pub struct AttachArgs {
    #[arg(value_enum)]
    mode: AttachMode,
    /// Turn on the kernel's run-time accounting and print each program's mean run time
    /// when done.
    #[arg(long)]
    run_stats: bool,
    #[command(flatten)]
    maps: KernelArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Every program of the profiler, as `report` runs them (system-wide, wait sites on).
    Full,
    /// The profiler's programs as `top` and `serve` run them (no wait sites).
    Counting,
    /// Empty programs on sys_enter and sys_exit only.
    Floor,
    /// Switch on commands from standard input.
    Control,
}

/// `attach control`: switches the attached programs on each line of standard input.
fn control_attachment(probe: &mut Probe) -> anyhow::Result<()> {
    for line in io::stdin().lines() {
        let line = line?;
        probe.detach();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["nothing"] => {}
            ["floor"] => probe.attach_floor()?,
            ["full", every] => {
                probe.set_sample_every(parse_sample_every(every).map_err(anyhow::Error::msg)?)?;
                // As `report` runs: recording where blocked calls sleep.
                probe.record_wait_sites(WaitRecording::Sampled)?;
                probe.attach()?;
            }
            ["counting", every] => {
                probe.set_sample_every(parse_sample_every(every).map_err(anyhow::Error::msg)?)?;
                // As `top` and `serve` run: no wait sites, no `sched_waking`.
                probe.record_wait_sites(WaitRecording::Off)?;
                probe.attach()?;
            }
            _ => anyhow::bail!("attach control: unknown command {line:?}"),
        }
        println!("ok");
        io::stdout().flush()?;
    }
    Ok(())
}

pub fn run(args: AttachArgs) -> anyhow::Result<()> {
    let AttachArgs { mode, maps, run_stats } = args;
    let _stats_on = run_stats.then(crate::kernel::enable_run_stats).transpose()?;
    let mut probe = Probe::load_default(maps.sizes(), Scope::SystemWide)?;
    probe.set_sample_every(maps.sample_every)?;
    match mode {
        AttachMode::Full => {
            probe.record_wait_sites(WaitRecording::Sampled)?;
            probe.attach()?
        }
        AttachMode::Counting => probe.attach()?,
        AttachMode::Floor => probe.attach_floor()?,
        AttachMode::Control => {}
    }
    println!("attached {} programs", probe.attached_programs());
    io::stdout().flush()?;
    if mode == AttachMode::Control {
        control_attachment(&mut probe)?;
    } else {
        // Hold until stdin closes (the benchmark drops it) or we are killed.
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
    }
    if run_stats {
        for (name, runs, time) in probe.run_stats() {
            let mean = time.as_nanos() as f64 / runs.max(1) as f64;
            println!("{name} {runs} runs {mean:.1} ns/run");
        }
    }
    Ok(())
}
