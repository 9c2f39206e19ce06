//! The kernel side, as the agent sees it: loading and attaching the eBPF programs, reading
//! and pruning their maps. The one place that talks to the kernel.
//!
//! Requires Linux 5.8+ with BTF (`/sys/kernel/btf/vmlinux`), root or `CAP_BPF` +
//! `CAP_PERFMON`. No tracefs: the programs are BTF-enabled raw tracepoints (`tp_btf`); the
//! two empty floor programs are classic raw tracepoints.
pub mod btf;
pub mod error;
mod mapped;
mod maps;
pub mod probe;
pub mod sizes;

pub use error::ProbeError;
pub use probe::{enable_run_stats, Probe, Scope};
pub use sizes::MapSizes;
