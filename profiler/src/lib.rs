//! The syscall profiler's userspace agent: loads the eBPF programs, reads and aggregates
//! their maps, and turns them into reports, a live view and Prometheus metrics.
//!
//! The layers, each using only those below it:
//! - [`commands`]: the command line, one module per command;
//! - `report`, `top`, `metrics`: the outputs, pure functions of the model's views (plus the
//!   terminal and the HTTP endpoint they need);
//! - `session`: a profiling session (calibrate, choose what to measure, poll the maps) and
//!   what it needs from `/proc`;
//! - [`kernel`]: the one place that talks to the kernel (load, attach, read the maps);
//! - `model`: the pure model: totals, the time split, charges, classes, histograms, names,
//!   and the per-syscall views every output is built from.
pub mod commands;
pub mod kernel;
mod metrics;
mod model;
mod report;
mod session;
mod top;
