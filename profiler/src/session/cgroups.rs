//! cgroup v2 paths of processes, by the cgroup id the kernel side recorded with their calls
//! (the inode number of the cgroup's directory), found by walking the cgroup2 mount. The id
//! travels with the counts, so processes that are already gone still have their group.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// The cgroup2 mount is walked again for an unknown id at most this often: ids of cgroups
/// removed before the walk stay unknown, and must not make every read walk the tree.
const WALK_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Paths of cgroup v2 directories by id (their inode number), found by walking
/// `/sys/fs/cgroup`; walked again when an id is not known yet (at most every 10 s).
#[derive(Default)]
pub struct CgroupPaths {
    by_id: HashMap<u64, String>,
    walked: Option<Instant>,
}

impl CgroupPaths {
    pub fn path(&mut self, id: u64) -> Option<String> {
        if !self.by_id.contains_key(&id) && self.walked.is_none_or(|at| at.elapsed() >= WALK_AGAIN_AFTER) {
            self.walked = Some(Instant::now());
            self.by_id.clear();
            // Inode numbers are unique only within one filesystem: walk only a cgroup2 mount.
            if let Some(root) = cgroup2_mount() {
                walk_cgroups(std::path::Path::new(root), "", &mut self.by_id);
            }
        }
        self.by_id.get(&id).cloned()
    }
}

/// The cgroup v2 id of a process (the inode of its cgroup's directory, as the kernel side
/// records it), from `/proc/PID/cgroup`; 0 when unknown.
pub fn cgroup_id_of(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Some(root) = cgroup2_mount() else {
        return 0;
    };
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .and_then(|path| std::fs::metadata(format!("{root}{}", path.trim_end_matches('/'))).ok())
        .map_or(0, |meta| meta.ino())
}

/// Where the cgroup v2 hierarchy is mounted (unified, or hybrid's `unified`), if it is.
pub fn cgroup2_mount() -> Option<&'static str> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().find(|path| {
        let path = std::ffi::CString::new(*path).expect("no NUL");
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: statfs fills the struct for a valid path.
        unsafe { libc::statfs(path.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == CGROUP2_SUPER_MAGIC }
    })
}

fn walk_cgroups(dir: &std::path::Path, relative: &str, found: &mut HashMap<u64, String>) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        found.insert(
            meta.ino(),
            if relative.is_empty() {
                "/".to_owned()
            } else {
                relative.to_owned()
            },
        );
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            walk_cgroups(&entry.path(), &format!("{relative}/{name}"), found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_come_from_the_cgroup2_mount() {
        if let Some(root) = cgroup2_mount() {
            use std::os::unix::fs::MetadataExt;
            let root_id = std::fs::metadata(root).unwrap().ino();
            assert_eq!(CgroupPaths::default().path(root_id).as_deref(), Some("/"));
        }
    }
}
