//! A profiling session: load, calibrate, pick the processes to measure, then read the tables
//! through a [`Store`] until told to stop, handing what each read brought ([`Update`]) to the
//! command that drives it (report, top, serve). It owns the [`Probe`] and, for `-- COMMAND`,
//! the command's process.
pub mod affinity;
pub mod calibrate;
pub mod cgroups;
pub mod containers;
pub mod host;
pub mod in_flight;
pub mod launch;
pub mod priority;
pub mod procfs;
pub mod waits;

use std::{ffi::OsString, time::Duration, time::Instant};

use self::{
    calibrate::Calibration,
    launch::{resolve_command, spawn_gated},
    priority::RaisedPriority,
    procfs::{process_exists, read_comm},
};
use profiler_common::fill;

use crate::{
    kernel::{FillAlarm, MapSizes, Probe, ProbeError, Scope},
    model::{
        bound::bound_extrapolation,
        overflow::Overflow,
        store::{Store, Update},
    },
};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    SystemWide,
    /// These processes (and their threads); with `children`, also the processes they start
    /// from now on (and theirs).
    Pids {
        pids: Vec<u32>,
        children: bool,
    },
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
    #[error("cannot wait for the kernel side's fill alarm: {0}")]
    FillAlarm(std::io::Error),
}

pub struct Session {
    probe: Probe,
    store: Store,
    /// The process table as last read (kept for its capacity, see [`Probe::read_procs`]).
    procs: Vec<(u32, profiler_common::ProcSlot)>,
    pub calibration: Calibration,
    /// Timing sampling period (1: every call timed).
    pub sample_every: u32,
    pub target: Target,
    /// The running command of [`Target::Command`].
    pub child: Option<tokio::process::Child>,
    started: Instant,
    self_tgid: u32,
    /// Used share of the statistics table and of the process table at the last read.
    fill: (f64, f64),
    /// When the last read began (CLOCK_MONOTONIC ns): every call the next read counts ended
    /// after it (see [`bound_extrapolation`]).
    last_read_started_ns: u64,
    cpus_online: u32,
    /// What the descriptors blocked calls waited on referred to, by (process, descriptor,
    /// inode): read from `/proc` while the processes live (see [`Session::name_waits`]).
    file_names: std::collections::HashMap<(u32, u32, u64), String>,
    /// Names of the processes that woke blocked calls, read while they lived.
    waker_names: std::collections::HashMap<u32, String>,
    /// The kernel side's counts of wait-site and descriptor entries added, as of the last
    /// naming of each, and how many descriptor entries that read found.
    named_at: waits::NamedAt,
}

/// When a read leaves a table fuller than this, the next comes sooner (see
/// [`Session::next_read_in`]).
const BUSY_FILL: f64 = 0.5;
/// How soon, then.
const BUSY_READ_INTERVAL: Duration = Duration::from_millis(100);

impl Session {
    /// Loads and calibrates, then starts measuring `target`.
    /// `sample_every`: see [`Probe::set_sample_every`]; `pinned_boundary_ns`: the boundary
    /// cost to charge instead of the calibrated one.
    pub fn start(
        target: Target,
        sizes: MapSizes,
        sample_every: u32,
        pinned_boundary_ns: Option<f64>,
    ) -> Result<Session, SessionError> {
        // Check what the user gave us before touching the kernel.
        let command_path = match &target {
            Target::Pids { pids, .. } => {
                if let Some(&missing) = pids.iter().find(|&&pid| pid == 0 || !process_exists(pid)) {
                    return Err(SessionError::NoSuchProcess(missing));
                }
                None
            }
            Target::Command(argv) => Some(resolve_command(&argv[0])?),
            Target::SystemWide => None,
        };
        let scope = match &target {
            Target::SystemWide => Scope::SystemWide,
            Target::Pids { children, .. } => Scope::Followed { children: *children },
            Target::Command(_) => Scope::Followed { children: true },
        };
        raise_memlock_limit();
        // Start-up at a raised priority in every mode (see `priority`); `report` and `top`
        // keep it for their whole run.
        let raised = RaisedPriority::raise();
        let mut probe = Probe::load_default(sizes, scope)?;
        let self_tgid = std::process::id();
        if scope != Scope::SystemWide {
            // The calibration measures the agent's own calls (never reported: see `Store`).
            follow(&mut probe, self_tgid)?;
        }
        let calibration = calibrate::calibrate(&mut probe, pinned_boundary_ns, sample_every)?;
        drop(raised);
        if scope != Scope::SystemWide {
            // Not the agent, nor what it starts (the command, before its gate opens).
            probe.unfollow(self_tgid);
        }
        let mut child = None;
        match &target {
            Target::SystemWide => {}
            Target::Pids { pids, .. } => {
                for &pid in pids {
                    follow(&mut probe, pid)?;
                }
            }
            Target::Command(argv) => {
                let path = command_path.expect("resolved above");
                child = Some(spawn_gated(&mut probe, &path, argv)?);
            }
        }
        let sizes = probe.sizes;
        Ok(Session {
            probe,
            store: Store::new(self_tgid, sizes.syscalls, sizes.processes),
            procs: Vec::new(),
            calibration,
            sample_every,
            target,
            child,
            started: Instant::now(),
            self_tgid,
            fill: (0.0, 0.0),
            last_read_started_ns: monotonic_ns(),
            // SAFETY: sysconf has no preconditions.
            cpus_online: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32,
            file_names: Default::default(),
            named_at: Default::default(),
            waker_names: Default::default(),
        })
    }

    /// Measures the boundary cost again, attached (see [`calibrate::refresh`]); whether the
    /// charges moved. System-wide only: the agent's own calls are in the tables there.
    pub fn refresh_boundary(&mut self) -> bool {
        self.target == Target::SystemWide && calibrate::refresh(&self.probe, &mut self.calibration)
    }

    /// Nanoseconds since measuring started.
    pub fn elapsed_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Reads the tables: what every (process, syscall) gained since the last read; frees
    /// in the kernel what is final and taken in.
    pub fn poll(&mut self) -> Result<Update, SessionError> {
        let read_started_ns = monotonic_ns();
        self.probe.restart_claims();
        self.probe.read_procs(&mut self.procs);
        let gone = |tgid: u32| !process_exists(tgid);
        let in_flight = || self.probe.in_flight().iter().map(|call| call.key).collect();
        let mut update = self.store.update(&self.procs, self.probe.stats(), &gone, &in_flight);
        bound_extrapolation(
            &mut update.deltas,
            self.last_read_started_ns,
            monotonic_ns(),
            self.cpus_online,
        );
        self.last_read_started_ns = read_started_ns;
        self.probe.free_stats(&update.free_stats);
        self.probe.free_procs(&update.free_procs);
        self.fill = (update.stats_fill, update.procs_fill);
        Ok(update)
    }

    /// Whether the kernel side has claimed an eighth of a table since the last read: a fork
    /// storm filling it faster than reads every `interval` would free it. Read now, then.
    /// (What raises the [`FillAlarm`], for a loop that cannot wait on it.)
    pub fn filling_fast(&self) -> bool {
        let (stats, procs) = self.probe.claims_since_read();
        let sizes = self.probe.sizes;
        stats >= u64::from(fill::alarm_at(sizes.syscalls)) || procs >= u64::from(fill::alarm_at(sizes.processes))
    }

    /// The kernel side's wakeup when a table fills fast (see [`Session::filling_fast`]), to
    /// wait on beside the next read. Inside a tokio runtime; once.
    pub fn fill_alarm(&mut self) -> Result<FillAlarm, SessionError> {
        match self.probe.take_fill_alarm() {
            Some(alarm) => alarm.map_err(SessionError::FillAlarm),
            None => panic!("the fill alarm is taken once"),
        }
    }

    /// When to read the tables next: every `interval`, or sooner while the last read left a
    /// table more than half full (a fork storm), so that no call is lost to a full table.
    /// Steady churn does not read sooner: [`Session::filling_fast`] catches a table filling
    /// between reads, and every read costs the agent CPU in proportion to the used slots.
    pub fn next_read_in(&self, interval: Duration) -> Duration {
        if self.fill.0 > BUSY_FILL || self.fill.1 > BUSY_FILL {
            interval.min(BUSY_READ_INTERVAL)
        } else {
            interval
        }
    }

    /// In [`Target::Pids`], whether every target process has exited.
    pub fn targets_gone(&self) -> bool {
        match &self.target {
            Target::Pids { pids, .. } => pids.iter().all(|&pid| !process_exists(pid)),
            _ => false,
        }
    }

    pub fn programs_attached(&self) -> usize {
        self.probe.attached_programs()
    }

    /// Used share of the kernel tables as of the last read, `(map, ratio)`.
    pub fn map_fill(&self) -> Vec<(String, f64)> {
        vec![("stats".into(), self.fill.0), ("processes".into(), self.fill.1)]
    }

    /// Threads inside a syscall right now (the agent's own left out).
    /// See [`Probe::monotonic_minus_scheduler_ns`].
    pub fn monotonic_minus_scheduler_ns(&self) -> Option<i64> {
        self.probe.monotonic_minus_scheduler_ns()
    }

    pub fn in_flight(&self) -> Vec<profiler_common::InFlight> {
        let mut slots = self.probe.in_flight();
        slots.retain(|slot| slot.stats_key().tgid != self.self_tgid);
        slots
    }

    pub fn overflow(&self) -> Overflow {
        Overflow(self.probe.counters())
    }

    /// Stops measuring and takes a last read.
    pub fn stop(&mut self) -> Result<Update, SessionError> {
        self.probe.detach();
        self.poll()
    }
}

/// Follows `pid`, under its name as `/proc` has it now.
fn follow(probe: &mut Probe, pid: u32) -> Result<(), SessionError> {
    let mut comm = [0u8; 16];
    if let Some(name) = read_comm(pid) {
        let name = name.as_bytes();
        let len = name.len().min(15);
        comm[..len].copy_from_slice(&name[..len]);
    }
    Ok(probe.follow(pid, comm, cgroups::cgroup_id_of(pid))?)
}

/// CLOCK_MONOTONIC in ns: the clock of the kernel side's `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The CPU time the agent has used so far (all its threads), in ns.
pub fn own_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The agent's resident memory (`/proc/self/statm`), in bytes; 0 if unreadable.
pub fn own_resident_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
