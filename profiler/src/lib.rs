//! The syscall profiler's userspace agent: loads the eBPF programs, reads and aggregates
//! their maps, and turns them into reports.
//!
//! Kernel-facing code lives in [`ebpf`] (and [`btf`] for the offsets it needs); everything
//! else is plain computation on the numbers read from the maps, unit-tested without root.
pub mod btf;
pub mod calibrate;
pub mod cli;
pub mod ebpf;
pub mod histogram;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod report;
pub mod serve;
pub mod session;
pub mod split;
pub mod store;
pub mod top;
