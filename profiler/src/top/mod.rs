//! `syscall-top`'s state ([`app`]), rendering ([`ui`]) and terminal ([`terminal`]).
pub mod app;
pub mod spread;
pub mod terminal;
pub mod ui;
