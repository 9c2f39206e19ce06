//! `cargo xtask`: bootstrap, build, run, test and benchmark tasks.
//!
//! Every task first makes sure the machine has what building eBPF programs in Rust needs,
//! installing what is missing (idempotently, saying what it does):
//! - the nightly toolchain with `rust-src` (the BPF target is built with `-Z build-std=core`);
//! - `bpf-linker`, built against the nightly's own LLVM so it can read its bitcode, cached
//!   under `~/.cache/syscall-profiler/`.
mod bench;
mod dist;
mod matrix;
mod setup;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Bootstrap, build, run, test and benchmark the syscall profiler"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly's rust-src and a matching bpf-linker (idempotent).
    Setup,
    /// Set up, then build the profiler (release).
    Build,
    /// Set up, build, and run `syscall-profiler ARGS` as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, then check formatting and lints and run every test, the eBPF ones as root.
    Test,
    /// Run the kernel tests that do not depend on timing on other kernels, under qemu:
    /// Debian's 6.1 generic and PREEMPT_RT for amd64, and 6.1 for arm64; and that 5.10 is
    /// turned down in one line.
    Matrix {
        /// Only the kernels whose description contains this (`generic`, `RT`, `5.10`, `arm64`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Build the Debian packages for amd64 and arm64 into target/dist/.
    Dist,
    /// Set up, build, and run the overhead benchmarks; writes the table to stdout.
    Bench(bench::BenchArgs),
}

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    TASK_START.get_or_init(std::time::Instant::now);
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup => {
            setup::ensure()?;
        }
        Task::Build => {
            let path = setup::ensure()?;
            cargo(&path, &["build", "--release", "--package", "profiler"])?;
        }
        Task::Run { args } => {
            let path = setup::ensure()?;
            cargo(&path, &["build", "--release", "--package", "profiler"])?;
            let binary = target_dir(&root).join("release/syscall-profiler");
            let status = as_root(&binary)
                .args(&args)
                .status()
                .context("running syscall-profiler")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test => {
            let path = setup::ensure()?;
            setup::ensure_test_tools()?;
            step("checking formatting");
            cargo(&path, &["fmt", "--all", "--check"])?;
            step("running clippy");
            cargo(&path, &["clippy", "--release", "--all-targets", "--", "-D", "warnings"])?;
            step("running clippy for arm64 (the code behind cfg(target_arch))");
            let arm64 = &dist::TARGETS[1];
            dist::ensure_cross(arm64)?;
            let status = dist::cross_cargo(
                &path,
                arm64,
                &[
                    "clippy",
                    "--release",
                    "--package",
                    "profiler",
                    "--target",
                    arm64.triple,
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
            .status()?;
            if !status.success() {
                bail!("clippy for arm64 failed");
            }
            step("building the packages (tests/dist.rs installs the amd64 one)");
            dist::run(&path)?;
            step("running every test (the ones that load eBPF programs run as root, one at a time)");
            // One test at a time: the kernel tests check time splits and classes, which other
            // tests' spinning threads would turn into CPU contention. The tests that load eBPF
            // are marked ignored (a plain `cargo test` without root lists them as skipped);
            // here they run, as root. Every test binary runs even when one fails, so that one
            // run shows every failure.
            let mut test = cargo_command(
                &path,
                &[
                    "test",
                    "--release",
                    "--no-fail-fast",
                    "--",
                    "--test-threads=1",
                    "--include-ignored",
                ],
            );
            if !is_root() {
                // Cargo runs each test binary through this runner.
                test.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
            }
            let (mut passed, mut failed) = run_counting_tests(test)?;
            step("running the kernel matrix (other kernels under qemu)");
            let matrix = matrix::run(&path, None)?;
            passed += matrix.passed;
            failed += matrix.failed;
            // One closing line for the whole suite, whatever binary cargo ran last.
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                bail!("tests failed");
            }
        }
        Task::Dist => {
            let path = setup::ensure()?;
            dist::run(&path)?;
        }
        Task::Matrix { only } => {
            let path = setup::ensure()?;
            let matrix = matrix::run(&path, only.as_deref())?;
            println!("{} passed, {} failed", matrix.passed, matrix.failed);
            if matrix.failed > 0 {
                bail!("tests failed on other kernels");
            }
        }
        Task::Bench(args) => {
            let path = setup::ensure()?;
            cargo(&path, &["build", "--release", "--package", "profiler"])?;
            bench::run(&root, &path, &args)?;
        }
    }
    Ok(())
}

/// Counts of a `test result: ok. 12 passed; 0 failed; ...` line.
pub fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |label: &str| -> Option<u64> {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(label)?.split_whitespace().last()?.parse().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

/// Runs `cargo test`, echoing its output, and adds up its `test result` lines.
fn run_counting_tests(mut test: Command) -> Result<(u64, u64)> {
    use std::io::BufRead;
    let mut child = test
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed");
    }
    Ok((passed, failed))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set, else the workspace's `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

static TASK_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Says what the task does next, with the time since the task started (so a slow CI run
/// shows where its minutes went).
pub fn step(what: &str) {
    let elapsed = TASK_START.get_or_init(std::time::Instant::now).elapsed().as_secs();
    eprintln!("xtask [{}:{:02}]: {what}", elapsed / 60, elapsed % 60);
}

pub fn is_root() -> bool {
    std::env::var("USER").as_deref() == Ok("root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command run as root: directly when we are root, through sudo otherwise.
pub fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.arg("-E").arg(program);
        command
    }
}

pub fn cargo_command(path: &OsString, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(args).env("PATH", path);
    command
}

/// Runs cargo with `PATH` extended by the tools setup installed.
pub fn cargo(path: &OsString, args: &[&str]) -> Result<()> {
    let status = cargo_command(path, args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_test_result_lines() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 39 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.33s"
            ),
            Some((39, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 8 passed; 2 failed; 0 ignored"),
            Some((8, 2))
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
