//! Command line: parsing, running the subcommands, and turning every error a user can cause
//! into one clear line and a non-zero exit code.
mod privileges;
pub mod serve;
pub mod top;

use std::{
    ffi::OsString,
    fs::File,
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    kernel::{sizes, MapSizes, Probe, Scope},
    report::{self, TextOptions},
    session::{self, calibrate, Session, Target},
};

#[derive(Parser, Debug)]
#[command(
    name = "syscall-profiler",
    version,
    about = "System-wide syscall profiler on eBPF: where does a process's time at the kernel boundary go?",
    long_about = "Counts every syscall of every process (or of chosen ones) in the kernel, and splits its \
                  time into entry (the boundary crossing), handler (on-CPU in the kernel), blocked (asleep) \
                  and runqueue (waiting for a CPU). Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Profile for a while (or while a command runs) and print a report.
    Report(ReportArgs),
    /// Serve the measurements as Prometheus metrics on /metrics.
    Serve(serve::ServeArgs),
    /// Live terminal view of the whole machine (same as `syscall-top`).
    Top(top::TopArgs),
    /// Measure the boundary cost charged to every call, and show how it was measured.
    Calibrate(MapArgs),
    /// For benchmarks: attach the full profiler or the empty floor programs, print
    /// "attached", and hold them until standard input closes or a signal arrives. `control`
    /// loads once and then switches on lines read from standard input ("nothing", "floor",
    /// "full N" with N the sampling period), answering "ok" to each, so that a benchmark can
    /// interleave configurations within milliseconds.
    #[command(hide = true)]
    Attach {
        #[arg(value_enum)]
        mode: AttachMode,
        /// Turn on the kernel's run-time accounting and print each program's mean run time
        /// when done.
        #[arg(long)]
        run_stats: bool,
        #[command(flatten)]
        maps: MapArgs,
    },
    /// Print the kernel-side memory of the maps at the given sizes (no root needed).
    Memory {
        #[command(flatten)]
        maps: MapArgs,
        /// Number of possible CPUs to compute for (default: this machine's).
        #[arg(long)]
        cpus: Option<u32>,
    },
}

/// Kernel-side settings: the map sizes, which bound the kernel-side memory (see
/// `syscall-profiler memory`), and the sampling of call timing.
#[derive(Args, Debug, Clone)]
pub struct MapArgs {
    /// Time 1 in N of the short calls that stay on the CPU (N: a power of two up to 1024; 1
    /// times every call). Counts and errors stay exact; calls that sleep or are preempted, and
    /// the first 64 calls of each (process, syscall), are always timed; a sampled call counts N
    /// times in the times and histograms. Reading the clock is most of the cost per call.
    #[arg(long = "sample", value_name = "N", default_value_t = DEFAULT_SAMPLE_EVERY, value_parser = parse_sample_every)]
    pub sample_every: u32,
    /// Threads that can be inside a syscall at once (rounded up to a power of two).
    #[arg(long, default_value_t = MapSizes::default().threads, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_threads: u32,
    /// Slots of the statistics table: one per (process, syscall, group of CPUs) alive between reads.
    #[arg(long, default_value_t = MapSizes::default().syscalls, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_syscalls: u32,
    /// Distinct (process, syscall, errno) triples held in the kernel between reads.
    #[arg(long, default_value_t = MapSizes::default().errnos, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_errnos: u32,
    /// Statistics entries per (process, syscall), one per group of CPUs (for benchmarks).
    #[arg(long, hide = true, default_value_t = profiler_common::STATS_LANES, value_parser = clap::value_parser!(u32).range(1..=i64::from(profiler_common::STATS_LANES)))]
    pub stats_lanes: u32,
    /// Processes held in the kernel between reads.
    #[arg(long, default_value_t = MapSizes::default().processes, value_parser = clap::value_parser!(u32).range(1..=(1 << 22)))]
    pub max_processes: u32,
}

impl MapArgs {
    pub fn sizes(&self) -> MapSizes {
        MapSizes {
            threads: self.max_threads,
            syscalls: self.max_syscalls,
            errnos: self.max_errnos,
            processes: self.max_processes,
            lanes: self.stats_lanes,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Every program of the profiler, as `report` runs them (system-wide).
    Full,
    /// Empty programs on sys_enter and sys_exit only.
    Floor,
    /// Switch on commands from standard input.
    Control,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// How long to profile, in seconds (ignored with a COMMAND, which is profiled until it exits).
    #[arg(long, default_value_t = 10.0, value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: f64,
    /// Profile only this process (repeatable); stops early when all of them have exited.
    #[arg(long = "pid", value_name = "PID", conflicts_with = "command")]
    pub pids: Vec<u32>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Processes shown in the text report.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Syscalls shown per process in the text report.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub maps: MapArgs,
    /// Run this command and profile it and all its descendants until it exits.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
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
                probe.attach()?;
            }
            _ => anyhow::bail!("attach control: unknown command {line:?}"),
        }
        println!("ok");
        io::stdout().flush()?;
    }
    Ok(())
}

/// Default sampling period of call timing (see [`MapArgs::sample_every`]).
pub const DEFAULT_SAMPLE_EVERY: u32 = 16;

fn parse_sample_every(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= profiler_common::MAX_SAMPLE_EVERY => Ok(n),
        _ => Err(format!(
            "'{text}' is not a power of two from 1 to {}",
            profiler_common::MAX_SAMPLE_EVERY
        )),
    }
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 365.0 * 86400.0 => Ok(secs),
        _ => Err(format!("'{text}' is not a number of seconds greater than 0")),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__exec-gate") {
        // Runs in the profiled command's process: see `session::exec_gate`.
        let fd = args.get(2).and_then(|s| s.to_str()?.parse().ok()).unwrap_or(-1);
        if args.len() < 5 {
            eprintln!("syscall-profiler: __exec-gate FD PATH ARGV...");
            return 2;
        }
        session::launch::exec_gate(fd, &args[3], &args[4..]);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return clap_error(err),
    };
    match run(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("syscall-profiler: {}", one_line(&err));
            1
        }
    }
}

/// Help and version as clap prints them; usage errors as one line.
pub fn clap_error(err: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            }
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("syscall-profiler: {first} (see --help)");
            2
        }
    }
}

/// An error and its causes on one line.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for (i, cause) in err.chain().enumerate() {
        let cause = cause.to_string();
        if i > 0 {
            if text.contains(&cause) {
                continue;
            }
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text.replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Report(args) => run_report(args),
        Command::Top(args) => top::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Calibrate(maps) => {
            let mut probe = Probe::load_default(maps.sizes(), Scope::SystemWide)?;
            let calibration = calibrate::calibrate(&mut probe, maps.sample_every)?;
            probe.detach();
            let vulnerabilities =
                calibrate::mitigations(std::path::Path::new("/sys/devices/system/cpu/vulnerabilities"));
            print!("{}", calibrate::render(&calibration, &vulnerabilities));
            Ok(())
        }
        Command::Attach { mode, maps, run_stats } => {
            let _stats_on = run_stats.then(crate::kernel::enable_run_stats).transpose()?;
            let mut probe = Probe::load_default(maps.sizes(), Scope::SystemWide)?;
            probe.set_sample_every(maps.sample_every)?;
            match mode {
                AttachMode::Full => probe.attach()?,
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
        Command::Memory { maps, cpus } => {
            let cpus = cpus.unwrap_or_else(possible_cpus);
            let sizes = maps.sizes();
            println!("kernel map memory at {cpus} CPUs (approx., preallocated):");
            for (name, bytes) in sizes::map_bytes(&sizes, cpus) {
                println!("  {name:<9} {:>9.2} MiB", bytes as f64 / (1 << 20) as f64);
            }
            println!(
                "  {:<9} {:>9.2} MiB",
                "total",
                sizes::total_bytes(&sizes, cpus) as f64 / (1 << 20) as f64
            );
            Ok(())
        }
    }
}

fn possible_cpus() -> u32 {
    // "0-127" or "0,2-5": the highest CPU number plus one.
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| s.trim().rsplit(['-', ',']).next()?.parse::<u32>().ok())
        .map_or(1, |last| last + 1)
}

fn run_report(args: ReportArgs) -> anyhow::Result<()> {
    // Open the output first: a typo in the path should not cost a whole profiling run.
    let mut output: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?)
        }
        None => Box::new(io::stdout()),
    };
    let target = if !args.command.is_empty() {
        Target::Command(args.command.clone())
    } else if !args.pids.is_empty() {
        Target::Pids(args.pids.clone())
    } else {
        Target::SystemWide
    };
    let scope = match target {
        Target::SystemWide => "system-wide",
        Target::Pids(_) => "pids",
        Target::Command(_) => "command",
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (session, command_exit_code) = runtime.block_on(profile(target, &args))?;
    let totals = session.store.totals();
    let comm = |pid: u32| session.store.comm(pid).unwrap_or("?").to_owned();
    let report = report::build(&report::Inputs {
        totals: &totals,
        comm: &comm,
        duration_ns: session.elapsed_ns(),
        boundary_ns_per_call: session.calibration.boundary_ns_per_call,
        instrumentation_ns_per_call: session.calibration.instrumentation_ns_per_call,
        scope,
        sample_every: session.sample_every,
        command_exit_code,
        overflow: session.overflow()?,
    });
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Text => report::render_text(
            &report,
            &TextOptions {
                processes: args.limit,
                syscalls: args.top,
            },
        ),
    };
    output
        .write_all(text.as_bytes())
        .and_then(|()| output.flush())
        .map_err(|e| match &args.output {
            Some(path) => anyhow::anyhow!("cannot write {}: {e}", path.display()),
            None => anyhow::anyhow!("cannot write the report: {e}"),
        })?;
    Ok(())
}

/// Measures until the duration ends, the command exits, the pids are gone, or Ctrl-C.
async fn profile(target: Target, args: &ReportArgs) -> anyhow::Result<(Session, Option<i32>)> {
    let mut session = Session::start(target, args.maps.sizes(), args.maps.sample_every)?;
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    poll.tick().await;
    let deadline = tokio::time::sleep(Duration::from_secs_f64(args.duration));
    tokio::pin!(deadline);
    let mut command_exit_code = None;
    let mut interrupts = 0;
    loop {
        let has_child = session.child.is_some();
        tokio::select! {
            _ = poll.tick() => {
                session.poll()?;
                if session.targets_gone() {
                    break;
                }
            }
            _ = &mut deadline, if !has_child => break,
            status = async { session.child.as_mut().expect("has_child").wait().await }, if has_child => {
                command_exit_code = status?.code();
                session.child = None;
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                // The command got the same Ctrl-C; give it a chance to exit, stop at the second.
                interrupts += 1;
                if !has_child || interrupts > 1 {
                    break;
                }
            }
        }
    }
    session.stop()?;
    Ok((session, command_exit_code))
}
