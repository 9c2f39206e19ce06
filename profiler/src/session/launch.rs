//! Running a command under the profiler: resolved like `execvp` before anything is loaded,
//! started behind a gate (a pipe the child reads before it execs), followed by pid, and only
//! then let through, so that only the command's own calls are measured.
use std::{
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

use crate::{kernel::Probe, session::SessionError};

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

/// Starts the command behind a gate, follows its pid, then opens the gate.
pub fn spawn_gated(probe: &mut Probe, path: &Path, argv: &[OsString]) -> Result<tokio::process::Child, SessionError> {
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
    super::follow(probe, pid)?;
    let mut gate = fs::File::from(gate_write);
    gate.write_all(&[1]).map_err(|e| spawn_error(e.to_string()))?;
    Ok(child)
}

/// Whether `/proc/PID/syscall` text says the task is blocked in `read(fd, ...)` (the
/// architecture's number: 0 on x86_64, 63 on arm64).
fn is_blocked_in_read(proc_syscall: &str, fd: i32) -> bool {
    proc_syscall.starts_with(&format!("{} {:#x} ", libc::SYS_read, fd))
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
        let read = libc::SYS_read;
        assert!(is_blocked_in_read(
            &format!("{read} 0x3 0x7f840932c000 0x20000 0x0 0x0 0x0 0x7ffd 0x7f84\n"),
            3
        ));
        assert!(is_blocked_in_read(
            &format!("{read} 0xa 0x1 0x1 0x0 0x0 0x0 0x7ffd 0x7f84\n"),
            10
        ));
        assert!(!is_blocked_in_read(
            &format!("{read} 0x30 0x1 0x1 0x0 0x0 0x0 0x7ffd 0x7f84\n"),
            3
        ));
        // Another call on the same descriptor: on x86_64 230 is clock_nanosleep, on arm64 write.
        assert!(!is_blocked_in_read(
            "230 0x3 0x0 0x7ffd 0x7ffd 0x0 0x0 0x7ffd 0x7f58\n",
            3
        ));
        assert!(!is_blocked_in_read(
            "64 0x3 0x0 0x7ffd 0x7ffd 0x0 0x0 0x7ffd 0x7f58\n",
            3
        ));
        assert!(!is_blocked_in_read("running\n", 3));
    }
}
