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
        // A verifier rejection carries the whole verifier log; its last lines say why.
        let mut text = err.to_string();
        if text.len() > 600 {
            text = format!("...{}", &text[text.len() - 600..]);
        }
        let mut source = err.source();
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
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
