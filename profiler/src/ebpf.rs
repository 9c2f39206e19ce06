//! The one place that talks to the kernel: loads the embedded eBPF object, attaches its
//! programs to the raw tracepoints, and reads and prunes its maps.
//!
//! Requires Linux 5.8+ with BTF (`/sys/kernel/btf/vmlinux`), root or `CAP_BPF` +
//! `CAP_PERFMON`. No tracefs: only raw tracepoints are used.
use std::{io, path::Path};

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{raw_trace_point::RawTracePointLinkId, ProgramError, RawTracePoint},
    Ebpf, EbpfError, EbpfLoader,
};
use profiler_common::{counter, ErrnoKey, InFlight, ProcInfo, StatsKey, SyscallStats};

use crate::btf::{BtfError, TaskOffsets, VMLINUX_BTF};

static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// The profiler's programs, `(program, raw tracepoint)`.
pub const PROGRAMS: [(&str, &str); 8] = [
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("sched_switch", "sched_switch"),
    ("sched_wakeup", "sched_wakeup"),
    ("sched_wakeup_new", "sched_wakeup_new"),
    ("sched_process_exit", "sched_process_exit"),
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
];

/// Empty programs on the two syscall tracepoints: the cost floor any profiler built on them
/// pays, measured by `cargo xtask bench`.
pub const FLOOR_PROGRAMS: [(&str, &str); 2] = [("floor_sys_enter", "sys_enter"), ("floor_sys_exit", "sys_exit")];

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

/// Map sizes; together they bound the kernel-side memory (see [`crate::memory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// In-flight slots, one per thread inside a syscall; rounded up to a power of two.
    pub threads: u32,
    /// (process, syscall) pairs.
    pub syscalls: u32,
    /// (process, syscall, errno) triples.
    pub errnos: u32,
    /// Processes (names, and followed processes).
    pub processes: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            threads: 32_768,
            syscalls: 16_384,
            errnos: 8_192,
            processes: 8_192,
        }
    }
}

/// Which processes are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every process on the machine.
    SystemWide,
    /// Only processes added with [`Probe::follow`]; with `children`, also everything they
    /// fork from then on.
    Followed { children: bool },
}

/// Snapshot of the overflow counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Overflow {
    pub slot_collisions: u64,
    pub stats_full: u64,
    pub errno_full: u64,
    pub process_full: u64,
    pub follow_full: u64,
}

impl Overflow {
    pub fn any(&self) -> bool {
        *self != Overflow::default()
    }
}

/// Loaded (and possibly attached) eBPF programs with their maps.
pub struct Probe {
    ebpf: Ebpf,
    links: Vec<(&'static str, RawTracePointLinkId)>,
    pub sizes: MapSizes,
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

fn classify_load_error(err: &(dyn std::error::Error + 'static)) -> ProbeError {
    if is_errno(err, libc::EPERM) || is_errno(err, libc::EACCES) {
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

impl Probe {
    /// Loads and verifies the programs (not attached yet). `btf_path` is normally
    /// [`VMLINUX_BTF`].
    pub fn load(sizes: MapSizes, scope: Scope, btf_path: &Path) -> Result<Probe, ProbeError> {
        let offsets = TaskOffsets::from_btf_file(btf_path)?;
        let threads = sizes.threads.max(1).next_power_of_two();
        let sizes = MapSizes { threads, ..sizes };
        let slot_mask = threads - 1;
        let status_offset = offsets.thread_info_status.unwrap_or(0);
        let (follow_only, follow_forks) = match scope {
            Scope::SystemWide => (0u32, 0u32),
            Scope::Followed { children } => (1, u32::from(children)),
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TASK_TI_STATUS_OFFSET", &status_offset, true)
            .override_global("TASK_PID_OFFSET", &offsets.pid, true)
            .override_global("TASK_TGID_OFFSET", &offsets.tgid, true)
            .override_global("SLOT_MASK", &slot_mask, true)
            .override_global("FOLLOW_ONLY", &follow_only, true)
            .override_global("FOLLOW_FORKS", &follow_forks, true)
            .map_max_entries("SLOTS", threads)
            .map_max_entries("STATS", sizes.syscalls)
            .map_max_entries("ERRNOS", sizes.errnos)
            .map_max_entries("PROCS", sizes.processes)
            .map_max_entries("FOLLOWED", sizes.processes);
        let mut ebpf = loader
            .load(PROGRAM_OBJECT)
            .map_err(|err: EbpfError| classify_load_error(&err))?;
        for (name, _) in PROGRAMS.iter().chain(&FLOOR_PROGRAMS) {
            let program: &mut RawTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the object")))?
                .try_into()
                .map_err(|err: ProgramError| ProbeError::Load(err.to_string()))?;
            program.load().map_err(|err| classify_load_error(&err))?;
        }
        Ok(Probe {
            ebpf,
            links: Vec::new(),
            sizes,
        })
    }

    /// Loads with default BTF location.
    pub fn load_default(sizes: MapSizes, scope: Scope) -> Result<Probe, ProbeError> {
        let btf = std::env::var_os("SYSCALL_PROFILER_BTF").unwrap_or_else(|| VMLINUX_BTF.into());
        Probe::load(sizes, scope, Path::new(&btf))
    }

    /// Attaches the profiler's programs ([`PROGRAMS`]).
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        self.attach_set(&PROGRAMS)
    }

    /// Attaches `programs` (`(program, raw tracepoint)` pairs) that are not attached yet.
    pub fn attach_set(&mut self, programs: &[(&'static str, &'static str)]) -> Result<(), ProbeError> {
        for &(name, tracepoint) in programs {
            if self.links.iter().any(|(attached, _)| *attached == name) {
                continue;
            }
            let program: &mut RawTracePoint = self.program(name)?;
            let link = program
                .attach(tracepoint)
                .map_err(|err| match classify_load_error(&err) {
                    ProbeError::Load(reason) => ProbeError::Attach {
                        program: name,
                        tracepoint,
                        reason,
                    },
                    other => other,
                })?;
            self.links.push((name, link));
        }
        Ok(())
    }

    /// Detaches every program; the maps keep their contents.
    pub fn detach(&mut self) {
        for (name, link) in std::mem::take(&mut self.links) {
            if let Ok(program) = self.program(name) {
                let _ = program.detach(link);
            }
        }
    }

    pub fn attached_programs(&self) -> usize {
        self.links.len()
    }

    fn program(&mut self, name: &'static str) -> Result<&mut RawTracePoint, ProbeError> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| ProbeError::Load(format!("program {name} missing")))?
            .try_into()
            .map_err(|err: ProgramError| ProbeError::Load(err.to_string()))
    }

    fn hash<K: aya::Pod, V: aya::Pod>(&self, map: &'static str) -> Result<HashMap<&MapData, K, V>, ProbeError> {
        let data = self.ebpf.map(map).ok_or(ProbeError::Map {
            map,
            source: MapError::InvalidName { name: map.into() },
        })?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    fn hash_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        map: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, ProbeError> {
        let data = self.ebpf.map_mut(map).ok_or(ProbeError::Map {
            map,
            source: MapError::InvalidName { name: map.into() },
        })?;
        HashMap::try_from(data).map_err(|source| ProbeError::Map { map, source })
    }

    /// Measures the processes with these tgids (in [`Scope::Followed`]).
    pub fn follow(&mut self, tgid: u32) -> Result<(), ProbeError> {
        let mut followed = self.hash_mut::<u32, u8>("FOLLOWED")?;
        followed.insert(tgid, 1, 0).map_err(|source| ProbeError::Map {
            map: "FOLLOWED",
            source,
        })
    }

    pub fn unfollow(&mut self, tgid: u32) -> Result<(), ProbeError> {
        let mut followed = self.hash_mut::<u32, u8>("FOLLOWED")?;
        match followed.remove(&tgid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(ProbeError::Map {
                map: "FOLLOWED",
                source,
            }),
        }
    }

    /// Every (process, syscall) entry. Entries deleted while iterating are skipped.
    pub fn read_stats(&self) -> Result<Vec<(StatsKey, SyscallStats)>, ProbeError> {
        Ok(self
            .hash::<StatsKey, SyscallStats>("STATS")?
            .iter()
            .filter_map(Result::ok)
            .collect())
    }

    /// The entry of one (process, syscall), if it has one.
    pub fn stats_of(&self, key: StatsKey) -> Result<Option<SyscallStats>, ProbeError> {
        match self.hash::<StatsKey, SyscallStats>("STATS")?.get(&key, 0) {
            Ok(stats) => Ok(Some(stats)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(ProbeError::Map { map: "STATS", source }),
        }
    }

    pub fn read_errnos(&self) -> Result<Vec<(ErrnoKey, u64)>, ProbeError> {
        Ok(self
            .hash::<ErrnoKey, u64>("ERRNOS")?
            .iter()
            .filter_map(Result::ok)
            .collect())
    }

    pub fn read_processes(&self) -> Result<Vec<(u32, ProcInfo)>, ProbeError> {
        Ok(self
            .hash::<u32, ProcInfo>("PROCS")?
            .iter()
            .filter_map(Result::ok)
            .collect())
    }

    pub fn followed(&self) -> Result<Vec<u32>, ProbeError> {
        Ok(self
            .hash::<u32, u8>("FOLLOWED")?
            .keys()
            .filter_map(Result::ok)
            .collect())
    }

    /// Threads inside a syscall right now, with their in-flight state.
    pub fn in_flight(&self) -> Result<Vec<InFlight>, ProbeError> {
        let data = self.ebpf.map("SLOTS").ok_or(ProbeError::Map {
            map: "SLOTS",
            source: MapError::InvalidName { name: "SLOTS".into() },
        })?;
        let slots: aya::maps::Array<&MapData, InFlight> =
            aya::maps::Array::try_from(data).map_err(|source| ProbeError::Map { map: "SLOTS", source })?;
        Ok(slots
            .iter()
            .filter_map(Result::ok)
            .filter(|slot| slot.enter_ns != 0)
            .collect())
    }

    /// The overflow counters, summed over CPUs.
    pub fn overflow(&self) -> Result<Overflow, ProbeError> {
        let data = self.ebpf.map("COUNTERS").ok_or(ProbeError::Map {
            map: "COUNTERS",
            source: MapError::InvalidName {
                name: "COUNTERS".into(),
            },
        })?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(data).map_err(|source| ProbeError::Map {
            map: "COUNTERS",
            source,
        })?;
        let read = |index: u32| -> Result<u64, ProbeError> {
            let values = counters.get(&index, 0).map_err(|source| ProbeError::Map {
                map: "COUNTERS",
                source,
            })?;
            Ok(values.iter().sum())
        };
        Ok(Overflow {
            slot_collisions: read(counter::SLOT_COLLISION)?,
            stats_full: read(counter::STATS_FULL)?,
            errno_full: read(counter::ERRNO_FULL)?,
            process_full: read(counter::PROC_FULL)?,
            follow_full: read(counter::FOLLOW_FULL)?,
        })
    }

    /// Deletes every map entry of the processes in `tgids` (after the agent has folded them
    /// into its own totals), so that processes that come and go do not fill the maps.
    pub fn forget_processes(&mut self, tgids: &std::collections::HashSet<u32>) -> Result<(), ProbeError> {
        fn remove_matching<K: aya::Pod + Copy, V: aya::Pod>(
            mut map: HashMap<&mut MapData, K, V>,
            matches: impl Fn(&K) -> bool,
        ) {
            let doomed: Vec<K> = map.keys().filter_map(Result::ok).filter(|key| matches(key)).collect();
            for key in doomed {
                let _ = map.remove(&key);
            }
        }
        if tgids.is_empty() {
            return Ok(());
        }
        remove_matching(self.hash_mut::<StatsKey, SyscallStats>("STATS")?, |key| {
            tgids.contains(&key.tgid)
        });
        remove_matching(self.hash_mut::<ErrnoKey, u64>("ERRNOS")?, |key| {
            tgids.contains(&key.tgid)
        });
        remove_matching(self.hash_mut::<u32, ProcInfo>("PROCS")?, |tgid| tgids.contains(tgid));
        remove_matching(self.hash_mut::<u32, u8>("FOLLOWED")?, |tgid| tgids.contains(tgid));
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.detach();
    }
}
