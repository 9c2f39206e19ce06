//! `syscall-profiler memory`: the kernel-side memory of the maps at given sizes (no root
//! needed).
use clap::Args;

use crate::{commands::args::KernelArgs, kernel::sizes};

#[derive(Args, Debug)]
pub struct MemoryArgs {
    #[command(flatten)]
    maps: KernelArgs,
    /// Number of possible CPUs to compute for (default: this machine's).
    #[arg(long)]
    cpus: Option<u32>,
}

pub fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let MemoryArgs { maps, cpus } = args;
    let cpus = cpus.unwrap_or_else(possible_cpus);
    let sizes = maps.sizes();
    println!("kernel map memory at {cpus} CPUs (approx., preallocated):");
    for (name, bytes) in sizes::map_bytes(&sizes, cpus) {
        println!("  {name:<13} {:>9.2} MiB", bytes as f64 / (1 << 20) as f64);
    }
    println!(
        "  {:<13} {:>9.2} MiB",
        "total",
        sizes::total_bytes(&sizes, cpus) as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn possible_cpus() -> u32 {
    // "0-127" or "0,2-5": the highest CPU number plus one.
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| s.trim().rsplit(['-', ',']).next()?.parse::<u32>().ok())
        .map_or(1, |last| last + 1)
}
