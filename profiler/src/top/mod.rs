//! `syscall-top`'s state ([`app`]) and rendering ([`ui`]).
pub mod app;
pub mod ui;
