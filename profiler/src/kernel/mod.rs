//! The kernel side, as the agent sees it: loading and attaching the eBPF programs, reading
//! and pruning their maps. The one place that talks to the kernel.
//!
//! Requires Linux 5.12+ with BTF (`/sys/kernel/btf/vmlinux`), root or `CAP_BPF` +
//! `CAP_PERFMON`. No tracefs: the programs are BTF-enabled raw tracepoints (`tp_btf`); the
//! two empty floor programs are classic raw tracepoints.
mod batch;
mod btf;
mod error;
mod fill_alarm;
mod mapped;
mod maps;
mod probe;
pub(crate) mod sizes;
mod symbols;
mod threads;
mod wait_sites;

pub use btf::BtfError;
pub use error::ProbeError;
pub use fill_alarm::FillAlarm;
pub(crate) use probe::enable_run_stats;
pub use probe::{Probe, Scope};
pub use sizes::MapSizes;
pub use threads::RawThreadRow;
pub use wait_sites::{RawWaitSite, WaitRecording};
