//! Errors of the kernel side, and how a failed load is told apart: not permitted, no BPF,
//! no BTF, or the verifier turning a program down (with the tail of its log).
use std::io;

use aya::{maps::MapError, programs::ProgramError};

use crate::kernel::btf::BtfError;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("permission denied loading eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON)")]
    NotPermitted,
    #[error("this kernel does not support eBPF (the bpf() system call is unavailable)")]
    NoBpf,
    #[error(
        "Linux {release} is too old: syscall-profiler needs Linux {}.{} or later (BTF tracepoints, bpf_get_current_task_btf, BPF compare-and-swap)",
        MINIMUM_KERNEL.0,
        MINIMUM_KERNEL.1
    )]
    KernelTooOld { release: String },
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("cannot load the eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach {program} to raw tracepoint {tracepoint}: {reason}")]
    Attach {
        program: &'static str,
        tracepoint: &'static str,
        reason: String,
    },
    #[error("cannot read map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// The oldest kernel the programs load on: BPF's compare-and-swap (`BPF_CMPXCHG`, which
/// claims every table entry) came in 5.12 (`bpf_get_current_task_btf` in 5.11, BTF
/// tracepoints in 5.5, memory-mappable arrays in 5.5, `CAP_BPF` and ring buffers in 5.8).
pub const MINIMUM_KERNEL: (u32, u32) = (5, 12);

/// Turns down a kernel older than [`MINIMUM_KERNEL`] by its release (`uname -r`), before
/// the verifier would with a log no user should have to read. A release that does not parse
/// is let through.
pub fn check_kernel_release(release: &str) -> Result<(), ProbeError> {
    match release_version(release) {
        Some(version) if version < MINIMUM_KERNEL => Err(ProbeError::KernelTooOld {
            release: release.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `(major, minor)` of a kernel release (`6.1.0-57-amd64` is `(6, 1)`).
pub(super) fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn is_errno(err: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(errno) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Whether `err` is the verifier turning a program down (it says why in its log; the errno,
/// often EACCES, says nothing about the caller's permissions).
fn is_verifier_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(ProgramError::LoadError { verifier_log, .. }) = err.downcast_ref::<ProgramError>() {
            return !verifier_log.to_string().trim().is_empty();
        }
        source = err.source();
    }
    false
}

pub(super) fn classify_load_error(err: &(dyn std::error::Error + 'static)) -> ProbeError {
    if (is_errno(err, libc::EPERM) || is_errno(err, libc::EACCES)) && !is_verifier_rejection(err) {
        ProbeError::NotPermitted
    } else if is_errno(err, libc::ENOSYS) {
        ProbeError::NoBpf
    } else {
        // A verifier rejection carries the whole verifier log; its last lines say why. One
        // line of them: an error is one line on stderr.
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        let mut text = text
            .split('\n')
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        if text.len() > 600 {
            let cut = text.ceil_char_boundary(text.len() - 600);
            text = format!("...{}", &text[cut..]);
        }
        ProbeError::Load(text)
    }
}

/// A map the object should have but does not.
pub(super) fn missing_map(map: &'static str) -> ProbeError {
    ProbeError::Map {
        map,
        source: MapError::InvalidName { name: map.into() },
    }
}

pub(super) fn attach_error(program: &'static str, tracepoint: &'static str, err: &ProgramError) -> ProbeError {
    match classify_load_error(err) {
        ProbeError::Load(reason) => ProbeError::Attach {
            program,
            tracepoint,
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_5_12_are_turned_down_by_release() {
        for release in ["5.11.22", "5.10.0-32-amd64", "4.19.0-27-amd64", "5.4.0"] {
            let err = check_kernel_release(release).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Linux {release} is too old: syscall-profiler needs Linux 5.12 or later (BTF tracepoints, bpf_get_current_task_btf, BPF compare-and-swap)")
            );
        }
        for release in ["5.12.0", "6.1.0-57-rt-amd64", "6.18.44-fc-v669", "10.0", "weird"] {
            assert!(check_kernel_release(release).is_ok(), "{release}");
        }
    }

    fn load_error(errno: i32, log: &str) -> ProgramError {
        ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(log.to_owned()),
        }
    }

    #[test]
    fn a_verifier_rejection_is_not_a_permission_problem() {
        // The verifier says EACCES for most rejections; its log says why.
        let rejected = load_error(libc::EACCES, "23: (77) r1 >>= 15\nR1 pointer arithmetic prohibited\n");
        match classify_load_error(&rejected) {
            ProbeError::Load(text) => assert!(text.contains("pointer arithmetic prohibited"), "{text}"),
            other => panic!("{other:?}"),
        }
        // No log: the kernel refused the caller.
        for errno in [libc::EPERM, libc::EACCES] {
            assert!(matches!(
                classify_load_error(&load_error(errno, "")),
                ProbeError::NotPermitted
            ));
        }
        assert!(matches!(
            classify_load_error(&io::Error::from_raw_os_error(libc::EPERM)),
            ProbeError::NotPermitted
        ));
        assert!(matches!(
            classify_load_error(&load_error(libc::ENOSYS, "")),
            ProbeError::NoBpf
        ));
    }
}
