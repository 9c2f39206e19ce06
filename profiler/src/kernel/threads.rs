//! Each thread's calls per syscall (`report --threads`): reading the per-thread table the
//! kernel side keeps when loaded with `MapSizes::thread_rows`. Through `bpf()` calls (a hash
//! map cannot be memory-mapped): for `report`, which keeps its capabilities to the end.
use profiler_common::{counter, object::map, ThreadKey, ThreadStats};

use crate::{
    kernel::{error::ProbeError, probe::Probe},
    model::store::comm_text,
};

/// One thread's calls of one syscall: exact counts, and its time off the CPU in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawThreadRow {
    pub tid: u32,
    pub tgid: u32,
    /// The thread's name at its first call of the syscall.
    pub name: String,
    /// As in `StatsKey::nr` (ABI flags included).
    pub nr: u32,
    pub calls: u64,
    pub errors: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
}

impl Probe {
    /// Every row of the per-thread table (empty when it was not asked for).
    pub fn thread_rows(&self) -> Result<Vec<RawThreadRow>, ProbeError> {
        if self.sizes.thread_rows == 0 {
            return Ok(Vec::new());
        }
        let rows = self.hash_entries::<ThreadKey, ThreadStats>(map::THREADS)?;
        Ok(rows
            .into_iter()
            .map(|(key, row)| RawThreadRow {
                tid: key.tid,
                tgid: row.tgid,
                name: comm_text(&row.comm),
                nr: key.nr,
                calls: row.calls,
                errors: row.errors,
                blocked_ns: row.blocked_ns,
                runqueue_ns: row.runqueue_ns,
            })
            .collect())
    }

    /// Calls the per-thread table had no room for.
    pub fn threads_lost(&self) -> u64 {
        self.counter(counter::THREADS_LOST)
    }
}
