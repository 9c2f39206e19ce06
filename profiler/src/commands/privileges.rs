//! Least privilege for the always-on agent: once `serve` has loaded and attached its
//! programs, it needs no capability at all (it reads the maps through file descriptors and
//! memory mappings it already holds), so it drops every one, can gain none back, cannot be
//! traced or dumped, and optionally runs as another user (`--user NAME|UID`). A user of its own
//! keeps other processes from signalling it: any process of the same user could.
use std::ffi::CString;

use anyhow::{bail, Context};

/// The user and group to switch to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// A user by name (from the password database) or by number: a numeric uid need not exist
/// there (distroless images have no such database), and then its group is the same number.
pub fn resolve_user(user: &str) -> anyhow::Result<Identity> {
    let by_name = || -> anyhow::Result<Option<Identity>> {
        let name = CString::new(user).context("user name")?;
        // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
        Ok(unsafe {
            let entry = libc::getpwnam(name.as_ptr());
            (!entry.is_null()).then(|| Identity {
                uid: (*entry).pw_uid,
                gid: (*entry).pw_gid,
            })
        })
    };
    if let Some(identity) = by_name()? {
        return Ok(identity);
    }
    match user.parse::<u32>() {
        Ok(uid) if uid != u32::MAX => {
            // SAFETY: getpwuid, as getpwnam above.
            let gid = unsafe {
                let entry = libc::getpwuid(uid);
                if entry.is_null() {
                    uid
                } else {
                    (*entry).pw_gid
                }
            };
            Ok(Identity { uid, gid })
        }
        _ => bail!("no such user: {user}"),
    }
}

/// Other processes running as `uid` (they could signal the agent).
pub fn other_processes_of(uid: u32) -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.bytes().all(|b| b.is_ascii_digit()) && name != me
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| real_uid(status) == Some(uid))
        .count()
}

fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Drops every capability (effective, permitted, inheritable, ambient and the bounding set),
/// switches to `identity` if given, forbids gaining privileges back (`no_new_privs`) and
/// makes the process undumpable (no ptrace, no `/proc/PID/mem` for others of its user).
pub fn drop_privileges(identity: Option<Identity>) -> anyhow::Result<()> {
    let fail = |what: &str| anyhow::anyhow!("cannot drop privileges ({what}): {}", std::io::Error::last_os_error());
    // SAFETY: prctl, setgroups, setresgid, setresuid and capset with valid arguments; each
    // result is checked.
    unsafe {
        if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 {
            return Err(fail("ambient capabilities"));
        }
        // The bounding set while CAP_SETPCAP is still there; EINVAL past the last capability.
        // EPERM: started without CAP_SETPCAP (a service given only the capabilities it needs,
        // as the packaged systemd unit does). Then the bounding set stays: with no
        // capability left and no_new_privs set below, no exec can gain one from it.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINVAL) | Some(libc::EPERM) => break,
                    _ => return Err(fail("bounding set")),
                }
            }
        }
        if let Some(Identity { uid, gid }) = identity {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(fail("supplementary groups"));
            }
            if libc::setresgid(gid, gid, gid) != 0 {
                return Err(fail("group"));
            }
            // Leaving uid 0 clears the permitted and effective sets (no PR_SET_KEEPCAPS).
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(fail("user"));
            }
        }
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let none = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) != 0 {
            return Err(fail("capabilities"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(fail("no_new_privs"));
        }
        // After the uid change, which resets it.
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(fail("dumpable"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_or_number() {
        assert_eq!(resolve_user("root").unwrap(), Identity { uid: 0, gid: 0 });
        assert_eq!(resolve_user("0").unwrap(), Identity { uid: 0, gid: 0 });
        // A uid the password database does not know: its own number as the group.
        assert_eq!(
            resolve_user("4000123").unwrap(),
            Identity {
                uid: 4_000_123,
                gid: 4_000_123
            }
        );
        assert!(resolve_user("no-such-user-xyz").is_err());
        assert!(resolve_user("-1").is_err());
    }

    #[test]
    fn the_real_uid_of_a_status_file() {
        let status = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n";
        assert_eq!(real_uid(status), Some(1000));
        assert_eq!(real_uid("Name:\tx\n"), None);
    }
}
