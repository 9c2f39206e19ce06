//! The syscall profiler's userspace agent: loads the eBPF programs, reads and aggregates
//! their maps, and turns them into reports.
pub mod commands;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod report;
pub mod session;
pub mod top;
