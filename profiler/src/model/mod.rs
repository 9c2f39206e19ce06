//! The pure model: numbers read from the maps in; totals ([`store`]), the time split and its
//! classes ([`split`]), the calibrated charges ([`charges`]), latency distributions
//! ([`histogram`]), names ([`names`]), lost events ([`overflow`]) out, and the per-syscall
//! [`view`] every output is built from. No kernel, no I/O: unit-tested without root.
pub mod charges;
pub mod histogram;
pub mod names;
pub mod overflow;
pub mod split;
pub mod store;
pub mod totals;
pub mod view;
