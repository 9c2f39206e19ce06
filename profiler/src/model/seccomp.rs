//! A seccomp profile in the OCI runtime-spec format (`linux.seccomp` of a container's
//! `config.json`, as runc, crun and Docker's `--security-opt seccomp=FILE` take it) that allows
//! exactly the syscalls a command and its descendants made: anything else fails with EPERM.
use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::names::{syscall_name, Abi};

/// The profile, as the OCI runtime spec lays out `LinuxSeccomp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    pub default_action: String,
    pub default_errno_ret: u32,
    pub architectures: Vec<String>,
    pub syscalls: Vec<SyscallRule>,
}

/// Calls allowed by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyscallRule {
    pub names: Vec<String>,
    pub action: String,
}

/// The profile allowing `called` (each call's ABI and its number in that ABI's table): the
/// native architecture always, and each other ABI's that was used, its calls named from its
/// own table in a rule of their own. An error names a call no table has a name for (a
/// profile allows calls by name).
pub fn seccomp_profile(called: impl IntoIterator<Item = (Abi, u32)>) -> Result<SeccompProfile, String> {
    let mut by_abi: Vec<(Abi, BTreeSet<String>)> = vec![(Abi::Native, BTreeSet::new())];
    for (abi, nr) in called {
        let name = syscall_name(abi, nr);
        if name.starts_with("syscall_") {
            return Err(format!(
                "syscall {nr} ({}) has no name in the syscall table: a profile cannot allow it",
                abi.as_str()
            ));
        }
        match by_abi.iter_mut().find(|(known, _)| *known == abi) {
            Some((_, names)) => {
                names.insert(name.into_owned());
            }
            None => by_abi.push((abi, BTreeSet::from([name.into_owned()]))),
        }
    }
    by_abi.sort_by_key(|(abi, _)| *abi);
    Ok(SeccompProfile {
        default_action: "SCMP_ACT_ERRNO".to_owned(),
        default_errno_ret: libc::EPERM as u32,
        architectures: by_abi.iter().map(|(abi, _)| abi.seccomp_arch().to_owned()).collect(),
        syscalls: by_abi
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(_, names)| SyscallRule {
                names: names.into_iter().collect(),
                action: "SCMP_ACT_ALLOW".to_owned(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_abi_is_allowed_by_its_own_names() {
        // read, write, exit_group natively; getpid (20) and socketcall (102) through int 0x80.
        let profile = seccomp_profile([
            (Abi::Native, 1),
            (Abi::Native, 0),
            (Abi::Native, 231),
            (Abi::Native, 0),
            (Abi::Compat, 20),
            (Abi::Compat, 102),
        ])
        .unwrap();
        assert_eq!(profile.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(profile.default_errno_ret, 1);
        assert_eq!(profile.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(profile.syscalls[0].names, ["exit_group", "read", "write"]);
        assert_eq!(profile.syscalls[1].names, ["getpid", "socketcall"]);
        assert!(profile.syscalls.iter().all(|rule| rule.action == "SCMP_ACT_ALLOW"));
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(json["syscalls"][0]["names"][0], "exit_group");
    }

    #[test]
    fn a_call_without_a_name_cannot_be_allowed() {
        let err = seccomp_profile([(Abi::Native, 0), (Abi::Native, 4000)]).unwrap_err();
        assert!(err.contains("syscall 4000"), "{err}");
    }

    #[test]
    fn nothing_called_allows_nothing() {
        let profile = seccomp_profile([]).unwrap();
        assert_eq!(profile.architectures, ["SCMP_ARCH_X86_64"]);
        assert!(profile.syscalls.is_empty());
    }
}
