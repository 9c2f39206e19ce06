//! Which CPUs the agent's thread may run on, and moving it onto some of them: the calibration
//! measures each CPU from on it, and the scheduler's per-CPU clocks are read from on their
//! CPU (see [`crate::session::procfs::task_clocks_now`]).

/// The CPUs the calling thread may run on (its affinity; CPU 0 if it cannot be read).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: plain libc calls on a zeroed cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Moves the calling thread onto `cpus` (at once: the kernel migrates it before returning);
/// whether it could.
pub fn pin_to(cpus: &[usize]) -> bool {
    // SAFETY: as above; pins only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
