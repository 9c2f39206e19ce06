//! The pure model: numbers read from the maps in; totals ([`store`]), the time split and its
//! classes ([`split`]), the calibrated charges ([`charges`]), containers by cgroup path ([`container`]), latency distributions
//! ([`histogram`]), names ([`names`]), lost events ([`overflow`]), the bound on what sampling
//! extrapolates ([`bound`]) out, and the per-syscall [`view`] every output is built from. No kernel, no I/O: unit-tested without root.
pub mod bound;
pub mod charges;
pub mod container;
pub mod diff;
pub mod group;
pub mod histogram;
pub mod host;
pub mod names;
pub mod overflow;
pub mod seccomp;
pub mod split;
pub mod store;
pub mod thread_rows;
pub mod threads;
pub mod totals;
pub mod view;
pub mod wait;
