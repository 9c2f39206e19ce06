//! Kernel struct offsets from the running kernel's BTF.
//!
//! Rust eBPF programs get no CO-RE field relocations, so the few fields they read
//! (`task_struct.pid`, `.tgid`, `pt_regs.cs`, ...) are looked up here at load time and
//! passed in as read-only globals. Needs a kernel built with `CONFIG_DEBUG_INFO_BTF` (most
//! distributions since 5.4), which exposes `/sys/kernel/btf/vmlinux`.
use std::path::{Path, PathBuf};

use btf_rs::{Backend, Btf, Type};

/// Where the kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("kernel BTF not found at {0} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Missing(PathBuf),
    #[error("cannot parse kernel BTF at {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("kernel BTF has no field {0}")]
    NoField(String),
}

/// The `pt_regs` fields the programs read, by the architecture the agent is built for (the
/// kernel's: a tracing agent runs natively).
pub struct RegsFields {
    /// Tells a 32-bit compat task's call (see `is_compat` in the programs).
    pub mode: &'static str,
    /// The number of the call being made, kept while it runs.
    pub syscall_nr: &'static str,
    /// The first argument (an array's offset is its first element's).
    pub arg0: &'static str,
}

#[cfg(not(target_arch = "aarch64"))]
pub const REGS: RegsFields = RegsFields {
    mode: "cs",
    syscall_nr: "orig_ax",
    arg0: "di",
};
#[cfg(target_arch = "aarch64")]
pub const REGS: RegsFields = RegsFields {
    mode: "pstate",
    syscall_nr: "syscallno",
    arg0: "regs",
};

/// Byte offsets of the kernel struct fields the eBPF programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.pid`
    pub pid: u32,
    /// `task_struct.tgid`
    pub tgid: u32,
    /// `pt_regs.cs` on x86_64, `.pstate` on arm64 (see [`REGS`]): whether a call came from a
    /// 32-bit compat task. `None` where there is no such field, and then no call is
    /// recognised as one.
    pub regs_mode: Option<u32>,
    /// `task_struct.se.cfs_rq`, `cfs_rq.rq`, `rq.clock`: the way from a task to its CPU's
    /// scheduler clock (CONFIG_FAIR_GROUP_SCHED). `None` without it, and then the time off
    /// the CPU is timed with a clock read instead.
    pub scheduler_clock: Option<[u32; 3]>,
    /// `task_struct.sched_info.last_queued`: when the task was put on a runqueue
    /// (CONFIG_SCHED_INFO, which CONFIG_TASK_DELAY_ACCT and CONFIG_SCHEDSTATS select).
    /// `None` without it, and then time off the CPU is all counted as blocked.
    pub last_queued: Option<u32>,
    /// `task_struct.group_leader`, `.real_parent` and `.comm`: a process's name, and whether
    /// a process's parent is followed.
    pub group_leader: u32,
    pub real_parent: u32,
    pub comm: u32,
    /// `task_struct.signal` and `signal_struct.live` (an `atomic_t`: its counter comes first):
    /// the threads of a process still running, which tells its last thread's exit.
    pub signal: u32,
    pub signal_live: u32,
    /// `task_struct.thread_info.flags` and `pt_regs.orig_ax` (`.syscallno` on arm64): whether a thread
    /// reschedules on its way out of a call, and whether it is still on that way.
    /// `None` without them, and then the wait for a CPU on the way out is not timed.
    pub exit_path: Option<ExitPathOffsets>,
    /// The way from a task asleep in a call to the file behind its first argument. `None`
    /// without one of the fields, and then blocked calls are not traced to their files.
    pub files: Option<FileOffsets>,
}

/// See [`TaskOffsets::files`]: `pt_regs`' first argument register (`di` on x86_64, `regs[0]`
/// on arm64),
/// `task_struct.stack` and `.files`, `files_struct.fdt`, `fdtable.max_fds` and `.fd`,
/// `file.f_inode`, `inode.i_ino` and `.i_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOffsets {
    pub regs_arg0: u32,
    pub task_stack: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_mode: u32,
}

/// See [`TaskOffsets::exit_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitPathOffsets {
    pub thread_flags: u32,
    pub regs_orig_ax: u32,
}

impl TaskOffsets {
    /// Reads the offsets from the BTF file at `path` (normally [`VMLINUX_BTF`]).
    pub fn from_btf_file(path: &Path) -> Result<TaskOffsets, BtfError> {
        if !path.exists() {
            return Err(BtfError::Missing(path.to_owned()));
        }
        // Mapping the file parses only what we look up: a fraction of the memory of a full parse.
        let btf = Btf::from_file_with_backend(path, Backend::Mmap)
            .or_else(|_| Btf::from_file(path))
            .map_err(|err| BtfError::Parse {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        let field = |path: &[&str]| -> Result<Option<u32>, BtfError> {
            field_offset(&btf, path).map_err(|reason| BtfError::Parse {
                path: VMLINUX_BTF.into(),
                reason,
            })
        };
        let required =
            |path: &[&str]| -> Result<u32, BtfError> { field(path)?.ok_or_else(|| BtfError::NoField(path.join("."))) };
        Ok(TaskOffsets {
            pid: required(&["task_struct", "pid"])?,
            tgid: required(&["task_struct", "tgid"])?,
            regs_mode: field(&["pt_regs", REGS.mode])?,
            scheduler_clock: match (
                field(&["task_struct", "se", "cfs_rq"])?,
                field(&["cfs_rq", "rq"])?,
                field(&["rq", "clock"])?,
            ) {
                (Some(cfs_rq), Some(rq), Some(clock)) => Some([cfs_rq, rq, clock]),
                _ => None,
            },
            last_queued: field(&["task_struct", "sched_info", "last_queued"])?,
            group_leader: required(&["task_struct", "group_leader"])?,
            real_parent: required(&["task_struct", "real_parent"])?,
            comm: required(&["task_struct", "comm"])?,
            signal: required(&["task_struct", "signal"])?,
            signal_live: required(&["signal_struct", "live"])?,
            exit_path: match (
                field(&["task_struct", "thread_info", "flags"])?,
                field(&["pt_regs", REGS.syscall_nr])?,
            ) {
                (Some(thread_flags), Some(regs_orig_ax)) => Some(ExitPathOffsets {
                    thread_flags,
                    regs_orig_ax,
                }),
                _ => None,
            },
            files: match [
                field(&["pt_regs", REGS.arg0])?,
                field(&["task_struct", "stack"])?,
                field(&["task_struct", "files"])?,
                field(&["files_struct", "fdt"])?,
                field(&["fdtable", "max_fds"])?,
                field(&["fdtable", "fd"])?,
                field(&["file", "f_inode"])?,
                field(&["inode", "i_ino"])?,
                field(&["inode", "i_mode"])?,
            ] {
                [Some(regs_arg0), Some(task_stack), Some(task_files), Some(files_fdt), Some(fdt_max_fds), Some(fdt_fd), Some(file_inode), Some(inode_ino), Some(inode_mode)] => {
                    Some(FileOffsets {
                        regs_arg0,
                        task_stack,
                        task_files,
                        files_fdt,
                        fdt_max_fds,
                        fdt_fd,
                        file_inode,
                        inode_ino,
                        inode_mode,
                    })
                }
                _ => None,
            },
        })
    }
}

/// Byte offset of `path[1..]` inside struct `path[0]`, descending through nested structs and
/// anonymous members; `Ok(None)` when a field is not there.
fn field_offset(btf: &Btf, path: &[&str]) -> Result<Option<u32>, String> {
    let (struct_name, fields) = path.split_first().ok_or("empty field path")?;
    let mut current = None;
    for ty in btf.resolve_types_by_name(struct_name).map_err(|e| e.to_string())? {
        if let Type::Struct(s) = ty {
            if !s.members.is_empty() {
                current = Some(s);
                break;
            }
        }
    }
    let Some(mut current) = current else {
        return Ok(None);
    };
    let mut offset_bits = 0u32;
    for (depth, field) in fields.iter().enumerate() {
        let Some((member_bits, member_type)) = find_member(btf, &current, field)? else {
            return Ok(None);
        };
        offset_bits += member_bits;
        if depth + 1 < fields.len() {
            match member_type {
                Type::Struct(s) | Type::Union(s) => current = s,
                _ => return Ok(None),
            }
        }
    }
    Ok(Some(offset_bits / 8))
}

/// Finds `name` among the members of `s`, looking inside anonymous struct/union members too.
/// Returns its bit offset from the start of `s` and its (typedef-resolved) type.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<Option<(u32, Type)>, String> {
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let ty = resolve_typedefs(btf, btf.resolve_chained_type(member).map_err(|e| e.to_string())?)?;
        if member_name == name {
            return Ok(Some((member.bit_offset(), ty)));
        }
        if member_name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) = &ty {
                if let Some((bits, found)) = find_member(btf, inner, name)? {
                    return Ok(Some((member.bit_offset() + bits, found)));
                }
            }
        }
    }
    Ok(None)
}

fn resolve_typedefs(btf: &Btf, mut ty: Type) -> Result<Type, String> {
    loop {
        match &ty {
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) => {
                let inner = ty.as_btf_type().ok_or("typedef without a type")?;
                ty = btf.resolve_chained_type(inner).map_err(|e| e.to_string())?;
            }
            _ => return Ok(ty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = TaskOffsets::from_btf_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_btf_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("not-btf-{}", std::process::id()));
        std::fs::write(&path, b"definitely not BTF").unwrap();
        let err = TaskOffsets::from_btf_file(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(matches!(err, BtfError::Parse { .. }), "{err}");
    }

    // Reads the running kernel's BTF (no root needed: the file is world-readable).
    #[test]
    fn running_kernel_offsets_are_plausible() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF}");
            return;
        }
        let offsets = TaskOffsets::from_btf_file(Path::new(VMLINUX_BTF)).unwrap();
        // pid and tgid are adjacent pid_t fields.
        assert_eq!(offsets.tgid, offsets.pid + 4);
        if cfg!(target_arch = "x86_64") {
            // r15..r8, rbp..rdi, orig_ax, ip, then cs: the 18th of 21 u64 registers.
            assert_eq!(offsets.regs_mode, Some(17 * 8));
            let exit_path = offsets.exit_path.expect("thread_info.flags and pt_regs.orig_ax in BTF");
            assert_eq!(exit_path.regs_orig_ax, 15 * 8);
            // thread_info is the first member of task_struct on x86 (THREAD_INFO_IN_TASK).
            assert_eq!(exit_path.thread_flags, 0);
            let files = offsets.files.expect("the way to a descriptor's file in BTF");
            // di: the 15th of pt_regs' u64 registers.
            assert_eq!(files.regs_arg0, 14 * 8);
            assert!([files.task_files, files.fdt_fd, files.file_inode]
                .iter()
                .all(|o| o.is_multiple_of(8)));
        }
        if cfg!(target_arch = "aarch64") {
            // regs[31], sp, pc, then pstate; then orig_x0 and syscallno.
            assert_eq!(offsets.regs_mode, Some(33 * 8));
            let exit_path = offsets
                .exit_path
                .expect("thread_info.flags and pt_regs.syscallno in BTF");
            assert_eq!(exit_path.regs_orig_ax, 35 * 8);
            assert_eq!(exit_path.thread_flags, 0);
            assert_eq!(
                offsets.files.expect("the way to a descriptor's file in BTF").regs_arg0,
                0
            );
        }
        // /proc/PID/schedstat exists exactly when the kernel keeps sched_info.
        if Path::new("/proc/self/schedstat").exists() {
            let last_queued = offsets.last_queued.expect("sched_info.last_queued in BTF");
            assert!(last_queued.is_multiple_of(8), "{last_queued}");
        }
        if let Some([cfs_rq, rq, clock]) = offsets.scheduler_clock {
            // Pointers and a u64: all 8-byte aligned.
            assert!(
                cfs_rq % 8 == 0 && rq % 8 == 0 && clock % 8 == 0,
                "{cfs_rq} {rq} {clock}"
            );
        }
    }
}
