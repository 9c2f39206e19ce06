//! The tables' fill alarm, as the agent waits for it: the kernel side writes a record to a
//! ring buffer when a table's claims since the last read reach an eighth of it (see
//! `profiler_common::fill`), and the agent, asleep until its next read, wakes at once. Rather
//! than a look at the claim counters every few milliseconds: twenty wakeups a second cost a
//! quiet agent about a third of its CPU.
//!
//! Requires Linux 5.8+ (BPF ring buffers).
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

/// The ring buffer of fill alarms, registered with the tokio reactor.
pub struct FillAlarm {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl FillAlarm {
    /// Must be called inside a tokio runtime (it registers the ring buffer's descriptor).
    pub(super) fn new(ring: RingBuf<MapData>) -> io::Result<FillAlarm> {
        // SAFETY: the descriptor is the ring buffer's own, which it keeps open (and the same)
        // for as long as it lives, and the `AsyncFd` owns it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|err| err.into_parts().1)?;
        Ok(FillAlarm { ring })
    }

    /// Waits until a table raises its alarm, and takes every alarm record waiting. Cancel
    /// safe: a record not taken yet is taken by the next wait.
    pub async fn raised(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.ring.readable_mut().await?;
            let mut records = 0;
            while ready.get_inner_mut().next().is_some() {
                records += 1;
            }
            ready.clear_ready();
            if records > 0 {
                return Ok(());
            }
        }
    }
}
