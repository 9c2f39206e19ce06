//! Dropping root once the programs are attached (`serve --user`).
use anyhow::{bail, Context};

/// Switches to `user`, keeping CAP_BPF and CAP_PERFMON so the maps stay readable.
pub fn drop_privileges(user: &str) -> anyhow::Result<()> {
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let name = std::ffi::CString::new(user).context("user name")?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let (uid, gid) = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            bail!("no such user: {user}");
        }
        ((*entry).pw_uid, (*entry).pw_gid)
    };
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
    // Capabilities 32..63 live in the second word.
    let keep = (1u32 << (CAP_PERFMON - 32)) | (1u32 << (CAP_BPF - 32));
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    }; // _LINUX_CAPABILITY_VERSION_3
    let data = [
        CapData::default(),
        CapData {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
    ];
    // SAFETY: plain syscalls with valid arguments; failures are checked.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
            || libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
            || libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0
        {
            bail!("cannot switch to user {user}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
