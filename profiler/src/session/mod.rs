//! A profiling session: load, calibrate, pick the processes to measure, then poll the maps
//! into a [`Store`] until told to stop. The surfaces (report, and later top and serve) drive
//! it; it owns the [`Probe`] and, for `-- COMMAND`, the command's process.
pub mod calibrate;

use std::{
    collections::HashSet,
    ffi::{CString, OsString},
    fs,
    io::Write as _,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    time::Instant,
};

use profiler_common::StatsKey;

use self::calibrate::Calibration;
use crate::{
    kernel::{MapSizes, Overflow, Probe, ProbeError, Scope},
    model::store::Store,
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

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Resolves a command name the way `execvp` would, so a missing command is reported before
/// anything is loaded (and the command is exec'd once, by absolute path).
pub fn resolve_command(name: &OsString) -> Result<PathBuf, SessionError> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |path: &Path| {
        fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let display = name.to_string_lossy().into_owned();
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(SessionError::CommandNotFound(display))
        };
    }
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or(SessionError::CommandNotFound(display))
}

/// The hidden `__exec-gate FD PATH ARGS...` subcommand, run in the command's process: waits
/// until the agent follows this pid, then execs the command. Only the `execve` happens after
/// the gate opens, so the command's own calls are all that is measured.
pub fn exec_gate(gate_fd: i32, program: &OsString, args: &[OsString]) -> ! {
    let to_c = |s: &OsString| CString::new(s.as_bytes()).unwrap_or_default();
    let path = to_c(program);
    let argv: Vec<CString> = args.iter().map(to_c).collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut byte = 0u8;
    // SAFETY: plain syscalls on our own fd and NUL-terminated strings that outlive the calls.
    unsafe {
        libc::fcntl(gate_fd, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::read(gate_fd, (&mut byte as *mut u8).cast(), 1);
        libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
    }
    eprintln!(
        "syscall-profiler: cannot run {}: {}",
        program.to_string_lossy(),
        std::io::Error::last_os_error()
    );
    std::process::exit(127);
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
        let calibration = calibrate::calibrate(&mut probe, sample_every)?;
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
        Ok(self.probe.overflow()?)
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

/// Starts the command behind a gate, follows its pid, then opens the gate.
fn spawn_gated(probe: &mut Probe, path: &Path, argv: &[OsString]) -> Result<tokio::process::Child, SessionError> {
    let spawn_error = |reason: String| SessionError::Spawn {
        command: argv[0].to_string_lossy().into_owned(),
        reason,
    };
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds; both are owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(spawn_error(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: fresh fds from pipe2.
    let (gate_read, gate_write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let gate_fd = gate_read.as_raw_fd();
    let exe = std::env::current_exe().map_err(|e| spawn_error(e.to_string()))?;
    let mut command = tokio::process::Command::new(exe);
    command.arg("__exec-gate").arg(gate_fd.to_string()).arg(path).args(argv);
    // SAFETY: fcntl is async-signal-safe; it lets the gate's read end survive the exec.
    unsafe {
        command.pre_exec(move || {
            libc::fcntl(gate_fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
    drop(gate_read);
    let pid = child.id().ok_or_else(|| spawn_error("exited at once".into()))?;
    // Follow only once the gate process sits in its read(): its own start-up (the loader's
    // file lookups and so on) must not be counted as the command's.
    wait_blocked_in_read(pid, gate_fd).map_err(spawn_error)?;
    probe.follow(pid)?;
    let mut gate = fs::File::from(gate_write);
    gate.write_all(&[1]).map_err(|e| spawn_error(e.to_string()))?;
    Ok(child)
}

/// Whether `/proc/PID/syscall` text says the task is blocked in `read(fd, ...)`.
fn is_blocked_in_read(proc_syscall: &str, fd: i32) -> bool {
    proc_syscall.starts_with(&format!("0 {:#x} ", fd))
}

fn wait_blocked_in_read(pid: u32, fd: i32) -> Result<(), String> {
    let path = format!("/proc/{pid}/syscall");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match fs::read_to_string(&path) {
            Ok(text) if is_blocked_in_read(&text, fd) => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(format!("cannot watch the command start ({path}: {err})")),
        }
        if Instant::now() > deadline {
            return Err("the command did not start within 30 s".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_like_execvp() {
        assert_eq!(resolve_command(&"sh".into()).unwrap().file_name().unwrap(), "sh");
        assert!(resolve_command(&"/bin/sh".into()).is_ok());
        assert!(matches!(
            resolve_command(&"no-such-command-xyz".into()),
            Err(SessionError::CommandNotFound(_))
        ));
        assert!(matches!(
            resolve_command(&"/no/such/file".into()),
            Err(SessionError::CommandNotFound(_))
        ));
        // A directory is not a command.
        assert!(resolve_command(&"/tmp/".into()).is_err());
    }

    #[test]
    fn recognises_a_task_blocked_in_read() {
        assert!(is_blocked_in_read(
            "0 0x3 0x7f840932c000 0x20000 0x0 0x0 0x0 0x7ffd 0x7f84\n",
            3
        ));
        assert!(is_blocked_in_read("0 0xa 0x1 0x1 0x0 0x0 0x0 0x7ffd 0x7f84\n", 10));
        assert!(!is_blocked_in_read("0 0x30 0x1 0x1 0x0 0x0 0x0 0x7ffd 0x7f84\n", 3));
        assert!(!is_blocked_in_read(
            "230 0x0 0x0 0x7ffd 0x7ffd 0x0 0x0 0x7ffd 0x7f58\n",
            3
        ));
        assert!(!is_blocked_in_read("running\n", 3));
    }

    #[test]
    fn kernel_comm_stops_at_nul() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"bash");
        assert_eq!(comm_from_kernel(&comm), "bash");
        assert_eq!(comm_from_kernel(&[b'x'; 16]), "x".repeat(16));
    }
}
