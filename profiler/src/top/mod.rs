//! `syscall-top`'s state ([`app`]), rendering ([`ui`]) and terminal ([`terminal`]).
pub mod app;
pub mod terminal;
pub mod ui;
