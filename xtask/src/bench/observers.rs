//! Observers running beside the workload: `syscall-profiler attach` (one-shot, or `control`
//! switching states in milliseconds) and bpftrace.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::configs::{Build, Config, Observer};
use crate::as_root;

/// Something running beside the workload while it is measured; stopped on drop.
pub(super) struct Beside {
    pub(super) child: Child,
    /// bpftrace stops on SIGINT; syscall-profiler attach when its stdin closes.
    pub(super) interrupt: bool,
}

impl Beside {
    /// `syscall-profiler attach ARGS`, with `env` (`name`, `value`) set if given.
    pub(super) fn profiler(profiler: &Path, args: &[&str], env: Option<(&str, &str)>) -> Result<Beside> {
        let mut child = as_root(profiler)
            .arg("attach")
            .args(args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscall-profiler attach")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
        if !line.starts_with("attached") {
            let _ = child.kill();
            bail!("syscall-profiler attach {args:?} did not attach");
        }
        Ok(Beside {
            child,
            interrupt: false,
        })
    }

    pub(super) fn bpftrace(script: &str) -> Result<Beside> {
        let mut child = as_root(Path::new("bpftrace"))
            .args(["-e", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
        if !line.starts_with("Attaching") {
            let _ = child.kill();
            bail!("bpftrace did not attach");
        }
        thread::sleep(Duration::from_millis(500));
        Ok(Beside { child, interrupt: true })
    }

    /// Stops and returns what the observer printed after the workload.
    pub(super) fn finish(mut self) -> String {
        self.stop();
        if self.interrupt {
            // bpftrace has been seen to miss a SIGINT that came right after it attached:
            // ask again, then insist.
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
                // SAFETY: plain kill(2) of our own child.
                unsafe { libc_kill(self.child.id() as i32, 2) };
            }
            let _ = self.child.kill();
        }
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        let _ = self.child.wait();
        out
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

impl Beside {
    fn stop(&mut self) {
        drop(self.child.stdin.take()); // EOF: syscall-profiler attach detaches and exits
        if self.interrupt {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc_kill(self.child.id() as i32, 2) };
        }
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        self.stop();
        let _ = self.child.wait();
    }
}

/// One loaded `syscall-profiler attach control`: switches between nothing attached, the
/// floor and the profiler's modes in milliseconds, without reloading.
pub(super) struct Controller {
    pub(super) child: Child,
    pub(super) answers: BufReader<std::process::ChildStdout>,
}

impl Controller {
    pub(super) fn start(profiler: &Path, lanes: &str) -> Result<Controller> {
        let mut child = as_root(profiler)
            .args(["attach", "control", "--stats-lanes", lanes])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscall-profiler attach control")?;
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line)?;
        if !line.starts_with("attached") {
            let _ = child.kill();
            bail!("syscall-profiler attach control did not start");
        }
        Ok(Controller { child, answers })
    }

    pub(super) fn set(&mut self, state: &str) -> Result<()> {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{state}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.answers.read_line(&mut line)?;
        if line.trim() != "ok" {
            bail!("syscall-profiler attach control: {state}: {}", line.trim());
        }
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: detaches and exits
        let _ = self.child.wait();
    }
}

/// One loaded `attach control` process per (build, lane setting) among `configs`.
pub(super) fn start_controllers(
    configs: &[Config],
    profiler: &Path,
    against: Option<&Path>,
) -> Result<std::collections::BTreeMap<(Build, &'static str), Controller>> {
    let mut controllers = std::collections::BTreeMap::new();
    for config in configs {
        if let Observer::Profiler { lanes, build, .. } = config.observer {
            if let std::collections::btree_map::Entry::Vacant(entry) = controllers.entry((build, lanes)) {
                let binary = match build {
                    Build::Current => profiler,
                    Build::Against => against.expect("built before"),
                };
                entry.insert(Controller::start(binary, lanes)?);
            }
        }
    }
    Ok(controllers)
}
