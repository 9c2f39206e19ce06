//! The kernel side, as the agent sees it: loading and attaching the eBPF programs, reading
//! and pruning their maps.
pub mod btf;
pub mod memory;
pub mod probe;
