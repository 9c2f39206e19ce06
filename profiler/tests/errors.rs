//! Mistakes a user can make get one clear line on stderr and a non-zero exit, never a panic.
mod common;

use std::{os::unix::process::CommandExt, process::Command};

use common::*;

/// Asserts one line of stderr containing `needle`, no panic, and a non-zero exit.
fn assert_one_clear_line(output: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit code of {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("syscall-profiler: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr:?}"
    );
}

#[test]
fn unknown_flag() {
    let output = run(&["report", "--no-such-flag"]);
    assert_one_clear_line(&output, "--no-such-flag");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_flag_values() {
    assert_one_clear_line(&run(&["report", "--duration", "-3"]), "seconds");
    assert_one_clear_line(&run(&["report", "--format", "xml"]), "xml");
    assert_one_clear_line(&run(&["report", "--pid", "abc"]), "abc");
    assert_one_clear_line(&run(&["report", "--pid", "1", "--", "true"]), "--pid");
    assert_one_clear_line(&run(&["report", "--sample", "3"]), "power of two");
    assert_one_clear_line(&run(&["top", "--sample", "0"]), "power of two");
    assert_one_clear_line(&run(&["serve", "--sample", "2048"]), "power of two");
}

#[test]
fn bad_pid() {
    assert_one_clear_line(&run(&["report", "--pid", "999999999"]), "no such process: 999999999");
}

#[test]
fn command_that_does_not_exist() {
    assert_one_clear_line(
        &run(&["report", "--", "/no/such/command"]),
        "command not found: /no/such/command",
    );
    assert_one_clear_line(&run(&["report", "--", "no-such-command-anywhere"]), "command not found");
}

#[test]
fn unwritable_output() {
    assert_one_clear_line(
        &run(&["report", "-o", "/proc/no/such/dir/report.txt", "--", "true"]),
        "cannot write /proc/no/such/dir/report.txt",
    );
}

#[test]
fn no_btf() {
    let output = Command::new(PROFILER)
        .args(["report", "--duration", "1"])
        .env("SYSCALL_PROFILER_BTF", "/no/such/btf")
        .output()
        .unwrap();
    assert_one_clear_line(&output, "kernel BTF not found");
}

#[test]
fn not_root() {
    if !is_root() {
        // Already unprivileged: the real thing.
        assert_one_clear_line(&run(&["report", "--duration", "1"]), "run as root");
        return;
    }
    // Drop to nobody for the child, as a user without privileges would run it.
    let output = unsafe {
        Command::new(PROFILER)
            .args(["report", "--duration", "1"])
            .pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .output()
            .unwrap()
    };
    assert_one_clear_line(&output, "run as root");
}

/// A seccomp filter that makes bpf() fail with ENOSYS, as on a kernel without BPF.
fn deny_bpf_syscall() -> std::io::Result<()> {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let filter = [
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        }, // seccomp_data.nr
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_bpf as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const _) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn no_bpf() {
    let output = unsafe {
        Command::new(PROFILER)
            .args(["report", "--duration", "1"])
            .pre_exec(deny_bpf_syscall)
            .output()
            .unwrap()
    };
    assert_one_clear_line(&output, "does not support eBPF");
}
