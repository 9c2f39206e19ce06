//! Names for syscall numbers and errno values.
//!
//! The kernel side tags each call with the ABI it came through ([`NR_COMPAT_FLAG`]); a 32-bit
//! task's call numbers index its own table (i386 on x86_64, arm EABI on arm64), so they are
//! named from it and never from the native one. Tables come from the `syscalls` crate, for
//! the architecture the agent is built for.
use std::borrow::Cow;

use profiler_common::{NR_COMPAT_FLAG, NR_X32_FLAG};

/// The syscall ABI a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Abi {
    /// Native 64-bit: the x86_64 or arm64 table.
    Native,
    /// A 32-bit compat task: ia32 (`int 0x80`/`sysenter`, i386 table) on x86_64, AArch32
    /// (arm EABI table) on arm64.
    Compat,
    /// x32 (x86_64 only): 64-bit registers, 32-bit pointers; numbers carry
    /// `__X32_SYSCALL_BIT`.
    X32,
}

#[cfg(not(target_arch = "aarch64"))]
mod table {
    pub use syscalls::{x86 as compat, x86_64 as native};
    pub const NATIVE: &str = "x86_64";
    pub const COMPAT: &str = "ia32";
    pub const SECCOMP_NATIVE: &str = "SCMP_ARCH_X86_64";
    pub const SECCOMP_COMPAT: &str = "SCMP_ARCH_X86";
}
#[cfg(target_arch = "aarch64")]
mod table {
    pub use syscalls::{aarch64 as native, arm as compat};
    pub const NATIVE: &str = "aarch64";
    pub const COMPAT: &str = "arm";
    pub const SECCOMP_NATIVE: &str = "SCMP_ARCH_AARCH64";
    pub const SECCOMP_COMPAT: &str = "SCMP_ARCH_ARM";
}

impl Abi {
    /// The ABI's label in reports and metrics: `x86_64`, `ia32`, `x32`; `aarch64`, `arm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Native => table::NATIVE,
            Abi::Compat => table::COMPAT,
            Abi::X32 => "x32",
        }
    }

    /// The architecture's name in an OCI seccomp profile (`SCMP_ARCH_X86_64`).
    pub fn seccomp_arch(self) -> &'static str {
        match self {
            Abi::Native => table::SECCOMP_NATIVE,
            Abi::Compat => table::SECCOMP_COMPAT,
            Abi::X32 => "SCMP_ARCH_X32",
        }
    }
}

/// Whether `label` (as in a report's `abi`) is the native ABI's, whose calls go by their bare
/// names.
pub fn is_native(label: &str) -> bool {
    label == Abi::Native.as_str()
}

/// Splits a number as the kernel side stores it into its ABI and the number in that ABI's
/// table.
pub fn decode_nr(raw: u32) -> (Abi, u32) {
    if raw & NR_COMPAT_FLAG != 0 {
        (Abi::Compat, raw & !NR_COMPAT_FLAG)
    } else if raw & NR_X32_FLAG != 0 {
        (Abi::X32, raw & !NR_X32_FLAG)
    } else {
        (Abi::Native, raw)
    }
}

/// Name of syscall `nr` in `abi`'s table; `syscall_<nr>` when the table has no such entry.
pub fn syscall_name(abi: Abi, nr: u32) -> Cow<'static, str> {
    let name = match abi {
        // x32 shares the x86_64 names for the numbers it has in common.
        Abi::Native | Abi::X32 => table::native::Sysno::new(nr as usize).map(|s| s.name()),
        Abi::Compat => table::compat::Sysno::new(nr as usize).map(|s| s.name()),
    };
    match name {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("syscall_{nr}")),
    }
}

/// The native number of the syscall called `name`.
pub fn native_nr(name: &str) -> Option<u32> {
    name.parse::<table::native::Sysno>().ok().map(|sysno| sysno.id() as u32)
}

/// Symbolic name of a positive errno (`ENOENT`), including the kernel-internal restart codes
/// (512..) that a tracepoint can see; `E<n>` when unknown, and `other` for 0: the errors of
/// any errno beyond the first few of a statistics entry (see `store::OTHER_ERRNO`).
pub fn errno_name(errno: u32) -> Cow<'static, str> {
    if errno == 0 {
        return Cow::Borrowed("other");
    }
    match syscalls::Errno::new(errno as i32).name() {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("E{errno}")),
    }
}

/// The name of a Linux signal (`SIGKILL`), or `SIG<n>` for one without a name (real-time
/// signals).
pub fn signal_name(signal: i32) -> Cow<'static, str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(signal).ok().and_then(|n| NAMES.get(n.wrapping_sub(1))) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("SIG{signal}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn native_numbers_use_the_x86_64_table() {
        for (nr, name) in [
            (0, "read"),
            (1, "write"),
            (39, "getpid"),
            (110, "getppid"),
            (257, "openat"),
            (231, "exit_group"),
        ] {
            assert_eq!(decode_nr(nr), (Abi::Native, nr));
            assert_eq!(syscall_name(Abi::Native, nr), name);
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ia32_numbers_use_the_i386_table() {
        // 3 is read on i386 but close on x86_64; 5 is open, 20 getpid, 64 getppid.
        for (nr, name) in [
            (3, "read"),
            (4, "write"),
            (5, "open"),
            (20, "getpid"),
            (64, "getppid"),
            (252, "exit_group"),
        ] {
            assert_eq!(decode_nr(nr | NR_COMPAT_FLAG), (Abi::Compat, nr));
            assert_eq!(syscall_name(Abi::Compat, nr), name);
        }
        assert_ne!(syscall_name(Abi::Compat, 3), syscall_name(Abi::Native, 3));
    }

    #[test]
    fn x32_numbers_are_recognised() {
        assert_eq!(decode_nr(NR_X32_FLAG | 1), (Abi::X32, 1));
        assert_eq!(Abi::X32.as_str(), "x32");
    }

    #[test]
    fn unknown_numbers_get_a_placeholder() {
        assert_eq!(syscall_name(Abi::Native, 4000), "syscall_4000");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(40), "SIG40");
    }

    #[test]
    fn errno_names() {
        for (errno, name) in [
            (2, "ENOENT"),
            (11, "EAGAIN"),
            (4, "EINTR"),
            (110, "ETIMEDOUT"),
            (512, "ERESTARTSYS"),
        ] {
            assert_eq!(errno_name(errno), name);
        }
        assert_eq!(errno_name(3999), "E3999");
        assert_eq!(errno_name(0), "other");
    }
}
