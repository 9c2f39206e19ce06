//! A profiling session: load, calibrate, pick the processes to measure, then poll the maps
//! into a [`Store`] until told to stop. The commands (report, top, serve) drive it; it owns
//! the [`Probe`] and, for `-- COMMAND`, the command's process.
pub mod calibrate;
pub mod cgroups;
pub mod launch;
pub mod procfs;

use std::{collections::HashSet, ffi::OsString, time::Instant};

use profiler_common::StatsKey;

use self::{
    calibrate::Calibration,
    launch::{resolve_command, spawn_gated},
    procfs::{process_exists, read_comm},
};
use crate::{
    kernel::{MapSizes, Probe, ProbeError, Scope},
    model::{overflow::Overflow, store::Store},
};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    SystemWide,
    /// These processes (and their threads), not their children.
    Pids(Vec<u32>),
    /// Run this command and measure it and all its descendants.
    Command(Vec<OsString>),
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("command not found: {0}")]
    CommandNotFound(String),
    #[error("cannot run {command}: {reason}")]
    Spawn { command: String, reason: String },
}

pub struct Session {
    probe: Probe,
    pub store: Store,
    pub calibration: Calibration,
    /// Timing sampling period (1: every call timed).
    pub sample_every: u32,
    pub target: Target,
    /// The running command of [`Target::Command`].
    pub child: Option<tokio::process::Child>,
    started: Instant,
    self_tgid: u32,
    /// Entries of the statistics table, errno map and process map at the last poll.
    last_used: (usize, usize, usize),
    /// cgroup v2 id of each process seen, recorded by the kernel side.
    pub cgroup_ids: std::collections::HashMap<u32, u64>,
}

impl Session {
    /// Loads and calibrates, then starts measuring `target`.
    /// `sample_every`: see [`Probe::set_sample_every`].
    pub fn start(target: Target, sizes: MapSizes, sample_every: u32) -> Result<Session, SessionError> {
        // Check what the user gave us before touching the kernel.
        let command_path = match &target {
            Target::Pids(pids) => {
                if let Some(&missing) = pids.iter().find(|&&pid| pid == 0 || !process_exists(pid)) {
                    return Err(SessionError::NoSuchProcess(missing));
                }
                None
            }
            Target::Command(argv) => Some(resolve_command(&argv[0])?),
            Target::SystemWide => None,
        };
        let scope = match target {
            Target::SystemWide => Scope::SystemWide,
            Target::Pids(_) => Scope::Followed { children: false },
            Target::Command(_) => Scope::Followed { children: true },
        };
        raise_memlock_limit();
        let mut probe = Probe::load_default(sizes, scope)?;
        let self_tgid = std::process::id();
        if scope != Scope::SystemWide {
            probe.follow(self_tgid)?;
        }
        let mut calibration = calibrate::calibrate(&mut probe)?;
        calibrate::start_sampling(&mut probe, &mut calibration, sample_every)?;
        // Our own calls (the calibration loop) are not part of any report.
        probe.forget_processes(&HashSet::from([self_tgid]))?;
        let mut child = None;
        match &target {
            Target::SystemWide => {}
            Target::Pids(pids) => {
                for &pid in pids {
                    probe.follow(pid)?;
                }
            }
            Target::Command(argv) => {
                let path = command_path.expect("resolved above");
                child = Some(spawn_gated(&mut probe, &path, argv)?);
            }
        }
        Ok(Session {
            probe,
            store: Store::default(),
            calibration,
            sample_every,
            target,
            child,
            started: Instant::now(),
            self_tgid,
            last_used: (0, 0, 0),
            cgroup_ids: Default::default(),
        })
    }

    /// Nanoseconds since measuring started.
    pub fn elapsed_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Reads the maps into the store, and moves processes that are gone out of the maps.
    pub fn poll(&mut self) -> Result<(), SessionError> {
        let mut stats = self.probe.read_stats();
        self.last_used.0 = stats.len();
        stats.retain(|(_, slot)| StatsKey::unpack(slot.key).tgid != self.self_tgid);
        let errnos = self.probe.read_errnos()?;
        self.last_used.1 = errnos.len();
        self.store.update(&stats, &errnos);
        let processes = self.probe.read_processes()?;
        self.last_used.2 = processes.len();
        for (tgid, info) in processes {
            let comm = read_comm(tgid).unwrap_or_else(|| comm_from_kernel(&info.comm));
            self.store.set_comm(tgid, comm);
            self.cgroup_ids.insert(tgid, info.cgroup_id);
        }
        let gone: HashSet<u32> = self
            .store
            .live_tgids()
            .into_iter()
            .filter(|&tgid| !process_exists(tgid))
            .collect();
        let freed = self.store.retire(&gone);
        self.probe.forget(&freed, &gone)?;
        Ok(())
    }

    /// In [`Target::Pids`], whether every target process has exited.
    pub fn targets_gone(&self) -> bool {
        match &self.target {
            Target::Pids(pids) => pids.iter().all(|&pid| !process_exists(pid)),
            _ => false,
        }
    }

    pub fn programs_attached(&self) -> usize {
        self.probe.attached_programs()
    }

    /// Used share of the kernel tables as of the last poll, `(map, ratio)`.
    pub fn map_fill(&self) -> Vec<(String, f64)> {
        let sizes = self.probe.sizes;
        let ratio = |used: usize, capacity: u32| used as f64 / f64::from(capacity.max(1));
        vec![
            ("stats".into(), ratio(self.last_used.0, sizes.syscalls)),
            ("errnos".into(), ratio(self.last_used.1, sizes.errnos)),
            ("processes".into(), ratio(self.last_used.2, sizes.processes)),
        ]
    }

    /// Threads inside a syscall right now (the agent's own left out).
    /// See [`Probe::monotonic_minus_scheduler_ns`].
    pub fn monotonic_minus_scheduler_ns(&self) -> Option<i64> {
        self.probe.monotonic_minus_scheduler_ns()
    }

    pub fn in_flight(&self) -> Vec<profiler_common::InFlight> {
        let mut slots = self.probe.in_flight();
        slots.retain(|slot| slot.tgid != self.self_tgid);
        slots
    }

    pub fn overflow(&self) -> Result<Overflow, SessionError> {
        Ok(Overflow(self.probe.counters()?))
    }

    /// Stops measuring and takes a last read.
    pub fn stop(&mut self) -> Result<(), SessionError> {
        self.probe.detach();
        self.poll()
    }
}

fn comm_from_kernel(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_comm_stops_at_nul() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"bash");
        assert_eq!(comm_from_kernel(&comm), "bash");
        assert_eq!(comm_from_kernel(&[b'x'; 16]), "x".repeat(16));
    }
}
