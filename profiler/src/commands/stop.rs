//! Stopping on SIGINT and SIGTERM. The handlers are installed once, before the work starts,
//! so that a signal arriving while a command is busy (reading the maps, say) is kept until
//! the command looks, never lost.
use std::{
    io,
    sync::{atomic::AtomicBool, Arc},
};

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Which signal asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT: Ctrl-C, or `kill -INT`.
    Interrupt,
    /// SIGTERM: `kill`, `timeout`, a service manager.
    Terminate,
}

/// SIGINT and SIGTERM for the async commands (report, serve).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}

/// A flag set by SIGINT, SIGTERM or SIGHUP, for the synchronous loop of `syscall-top` (in raw
/// mode Ctrl-C is a key, but `kill` and a closed terminal still send signals).
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}
