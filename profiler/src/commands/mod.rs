//! Command line: parsing, running the subcommands, and turning every error a user can cause
//! into one clear line and a non-zero exit code.
mod args;
mod attach;
mod calibrate;
mod diff;
mod memory;
mod privileges;
mod report;
mod serve;
mod stop;
mod top;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::session;

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
    Report(report::ReportArgs),
    /// Compare two saved reports (`report --save`): per group and syscall, what changed,
    /// as rates; no root needed.
    Diff(diff::DiffArgs),
    /// Serve the measurements as Prometheus metrics on /metrics.
    Serve(serve::ServeArgs),
    /// Live terminal view of the whole machine (same as `syscall-top`).
    Top(top::TopArgs),
    /// Measure the boundary cost charged to every call, and show how it was measured.
    Calibrate(args::KernelArgs),
    /// For benchmarks: attach the full profiler or the empty floor programs, print
    /// "attached", and hold them until standard input closes or a signal arrives. `control`
    /// loads once and then switches on lines read from standard input ("nothing", "floor",
    /// "full N" with N the sampling period), answering "ok" to each, so that a benchmark can
    /// interleave configurations within milliseconds.
    #[command(hide = true)]
    Attach(attach::AttachArgs),
    /// Print the kernel-side memory of the maps at the given sizes (no root needed).
    Memory(memory::MemoryArgs),
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
        Err(err) => return clap_error(err, "syscall-profiler"),
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("syscall-profiler: {}", one_line(&err));
            1
        }
    }
}

/// `syscall-top` on its own: the same as `syscall-profiler top`.
#[derive(Parser)]
#[command(
    name = "syscall-top",
    version,
    about = "Live view of where processes' time at the kernel boundary goes"
)]
struct TopCli {
    #[command(flatten)]
    top: top::TopArgs,
}

/// The command lines of `syscall-profiler` and `syscall-top`, for their man pages.
pub fn command_lines() -> [clap::Command; 2] {
    use clap::CommandFactory;
    [Cli::command(), TopCli::command()]
}

/// Runs `syscall-top`; returns the process exit code.
pub fn syscall_top_main() -> i32 {
    let cli = match TopCli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_error(err, "syscall-top"),
    };
    match top::run(cli.top) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("syscall-top: {}", one_line(&err));
            1
        }
    }
}

/// Help and version as clap prints them; usage errors as one line.
fn clap_error(err: clap::Error, program: &str) -> i32 {
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
            eprintln!("{program}: {first} (see --help)");
            2
        }
    }
}

/// Writes a file the user named, with one clear line when it cannot be.
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// An error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
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

/// Runs a subcommand; returns the exit code (`report -- COMMAND`: the command's).
fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Report(args) => report::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Top(args) => top::run(args).map(|()| 0),
        Command::Serve(args) => serve::run(args).map(|()| 0),
        Command::Calibrate(args) => calibrate::run(args).map(|()| 0),
        Command::Attach(args) => attach::run(args).map(|()| 0),
        Command::Memory(args) => memory::run(args).map(|()| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMONSET: &str = include_str!("../../../deploy/kubernetes/daemonset.yaml");

    /// The items of the YAML block list under `key:` (comments skipped).
    fn list_under<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let mut lines = text.lines().skip_while(|l| l.trim() != key).skip(1);
        let mut items = Vec::new();
        for line in lines.by_ref() {
            let item = line.trim();
            if item.starts_with('#') {
                continue;
            }
            match item.strip_prefix("- ") {
                Some(item) => items.push(item.split(" #").next().unwrap_or(item).trim()),
                None => break,
            }
        }
        items
    }

    #[test]
    fn the_daemonsets_arguments_are_ones_serve_takes() {
        let args = list_under(DAEMONSET, "args:");
        assert_eq!(args.first(), Some(&"serve"), "{args:?}");
        let parsed = Cli::try_parse_from(std::iter::once("syscall-profiler").chain(args.iter().copied()));
        assert!(parsed.is_ok(), "{args:?}: {}", parsed.unwrap_err());
    }

    #[test]
    fn the_daemonset_asks_only_for_the_capabilities_loading_needs() {
        let mut added = list_under(DAEMONSET, "add:");
        added.sort_unstable();
        // Loading and attaching, starting at a raised priority (see `session::priority`), then
        // switching to --user (tests/dist.rs runs serve with them).
        assert_eq!(
            added,
            ["BPF", "PERFMON", "SETGID", "SETUID", "SYS_NICE", "SYS_RESOURCE"]
        );
        assert!(DAEMONSET.contains("drop: [ALL]"));
        assert!(DAEMONSET.contains("privileged: false"));
    }
}
