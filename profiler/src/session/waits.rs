//! What blocked calls waited on, for a report: their wait sites and wakers, and the files
//! behind the descriptors of those on one, named from `/proc` while their processes live.
use std::{collections::BTreeMap, os::unix::fs::MetadataExt};

use profiler_common::{StatsKey, THREAD_NAME_ROW};

use crate::{
    kernel::WaitRecording,
    model::thread_rows::ThreadCalls,
    model::wait::{files_by_key, sites_by_key, unnamed_target, waits_by_key, OnFile, SleptAt, Waits},
    session::{
        procfs::{fd_target, is_pipe_or_socket, other_ends, read_comm},
        Session, SessionError,
    },
};

/// The kernel side's counts of entries added to the wait-site and descriptor tables as of
/// the agent's last naming from each, and the descriptor entries that read found.
#[derive(Debug, Default)]
pub(super) struct NamedAt {
    sites_added: u64,
    files_added: u64,
    site_entries: usize,
    file_entries: usize,
}

impl Session {
    /// Records from now on where blocked calls sleep, who wakes them and which files they
    /// wait on, for `recording`'s calls (see [`Session::waits`]); or stops.
    pub fn record_wait_sites(&mut self, recording: WaitRecording) -> Result<(), SessionError> {
        Ok(self.probe.record_wait_sites(recording)?)
    }

    /// Forgets what was recorded so far.
    pub fn clear_wait_sites(&mut self) -> Result<(), SessionError> {
        self.probe.clear_wait_sites()?;
        // The tables are empty now; the next entry added moves their counts again.
        self.named_at.site_entries = 0;
        self.named_at.file_entries = 0;
        Ok(())
    }

    /// Reads in `/proc` the names of the processes that woke blocked calls, and what the
    /// descriptors of the blocked calls recorded so far refer to, for those not named yet:
    /// while a process lives they can be read (a report does this as it goes, and at its
    /// end). A descriptor is named only if it still refers to the file the call saw (same
    /// inode). Each table is read only when the kernel side added entries to it since the last
    /// time.
    pub fn name_waits(&mut self) -> Result<(), SessionError> {
        self.name_new_wakers()?;
        self.name_new_files()?;
        Ok(())
    }

    /// The wakers' part of [`Session::name_waits`]. How many entries the wait-site table had
    /// at its last read: reading it walks the whole table in the kernel (beside 1,000 busy
    /// processes, ~5 ms for thousands of entries), so a large one is read less often.
    pub fn name_new_wakers(&mut self) -> Result<usize, SessionError> {
        // Counted before the read: an entry added during it is read next time.
        let (sites_added, _) = self.probe.waits_added();
        if sites_added != self.named_at.sites_added {
            let wakers = self.probe.wakers()?;
            self.named_at.site_entries = wakers.len();
            let distinct: std::collections::HashSet<u32> = wakers.into_iter().collect();
            for pid in distinct {
                if pid != 0 && !self.waker_names.contains_key(&pid) {
                    if let Some(name) = read_comm(pid) {
                        self.waker_names.insert(pid, name);
                    }
                }
            }
            self.named_at.sites_added = sites_added;
        }
        Ok(self.named_at.site_entries)
    }

    /// The descriptors' part of [`Session::name_waits`]: cheap enough to do more often (a
    /// short-lived process's descriptors can be read only while it lives). How many
    /// (process, syscall, descriptor, file) entries the table had at its last read.
    pub fn name_new_files(&mut self) -> Result<usize, SessionError> {
        // Counted before the read: an entry added during it is read next time.
        let (_, files_added) = self.probe.waits_added();
        if files_added != self.named_at.files_added {
            self.named_at.file_entries = self.name_files()?.len();
            self.named_at.files_added = files_added;
        }
        Ok(self.named_at.file_entries)
    }

    /// Names the descriptors of every (process, syscall, descriptor, file) entry not named
    /// yet, and returns the entries.
    fn name_files(&mut self) -> Result<Vec<OnFile>, SessionError> {
        let files = self.probe.fd_waits()?;
        for file in &files {
            let pid = file.key.tgid;
            let id = (pid, file.fd, file.ino);
            if self.file_names.contains_key(&id) || pid == self.self_tgid {
                continue;
            }
            let path = format!("/proc/{pid}/fd/{}", file.fd);
            if std::fs::metadata(&path).is_ok_and(|meta| meta.ino() == file.ino) {
                if let Some(target) = fd_target(pid, i64::from(file.fd)) {
                    self.file_names.insert(id, target);
                }
            }
        }
        Ok(files)
    }

    /// What the blocked calls of each (process, syscall) waited on since recording began
    /// (the agent's own left out; with `only`, that process's alone): where they slept,
    /// their wakers named by `name_of` (else as `/proc` named them while they lived), and
    /// the files of those on a descriptor; for every process, with the other processes
    /// holding a pipe or socket now (a scan of every descriptor of the machine). And the
    /// blocked calls whose site could not be recorded.
    pub fn waits(
        &mut self,
        only: Option<u32>,
        name_of: &dyn Fn(u32) -> Option<String>,
    ) -> Result<(BTreeMap<StatsKey, Waits>, u64), SessionError> {
        self.name_waits()?;
        let on_files = self.name_files()?;
        let own = self.self_tgid;
        let wanted = |tgid: u32| tgid != own && only.is_none_or(|pid| pid == tgid);
        let stacks = self.probe.wait_sites(&wanted)?;
        let waker_names = &self.waker_names;
        let name_of = |pid: u32| match pid {
            0 => "interrupt or idle".to_owned(),
            pid => name_of(pid)
                .or_else(|| waker_names.get(&pid).cloned())
                .unwrap_or_else(|| "?".to_owned()),
        };
        let sites = sites_by_key(
            stacks.into_iter().map(|site| SleptAt {
                key: site.key,
                frames: site.frames,
                waker_tgid: site.waker_tgid,
                calls: site.calls,
                blocked_ns: site.blocked_ns,
            }),
            &name_of,
        );
        let file_names = &self.file_names;
        let mut files = files_by_key(
            on_files.into_iter().filter(|file| wanted(file.key.tgid)),
            &|file| match file_names.get(&(file.key.tgid, file.fd, file.ino)) {
                Some(name) => name.clone(),
                None => unnamed_target(file.mode, file.ino),
            },
        );
        if only.is_some() {
            return Ok((waits_by_key(sites, files), self.probe.wait_sites_lost()));
        }
        let ends: Vec<(u32, &str)> = files
            .iter()
            .flat_map(|(key, files)| files.iter().map(|file| (key.tgid, file.target.as_str())))
            .collect();
        let mut other_ends = other_ends(&ends, &is_pipe_or_socket).into_iter();
        for file in files.values_mut().flatten() {
            file.other_end = other_ends.next().unwrap_or_default();
        }
        Ok((waits_by_key(sites, files), self.probe.wait_sites_lost()))
    }

    /// Each thread's calls per syscall (with `MapSizes::thread_rows`), the agent's own left
    /// out; and the names threads gave themselves, by tid.
    pub fn thread_rows(&self) -> Result<(Vec<ThreadCalls>, BTreeMap<u32, String>), SessionError> {
        let (names, rows): (Vec<_>, Vec<_>) = self
            .probe
            .thread_rows()?
            .into_iter()
            .filter(|row| row.tgid != self.self_tgid)
            .partition(|row| row.nr == THREAD_NAME_ROW);
        let names = names.into_iter().map(|row| (row.tid, row.name)).collect();
        let rows = rows
            .into_iter()
            .map(|row| ThreadCalls {
                tid: row.tid,
                name: row.name,
                key: StatsKey {
                    tgid: row.tgid,
                    nr: row.nr,
                },
                calls: row.calls,
                errors: row.errors,
                blocked_ns: row.blocked_ns,
                runqueue_ns: row.runqueue_ns,
            })
            .collect();
        Ok((rows, names))
    }

    /// Calls the per-thread table had no room for.
    pub fn threads_lost(&self) -> u64 {
        self.probe.threads_lost()
    }
}
