//! Which CPUs the agent's thread may run on, and moving it onto some of them: the calibration
//! measures each CPU from on it (a few of a large machine's, [`spread_over`] it), and the
//! scheduler's per-CPU clocks are read from on their CPU (see
//! [`crate::session::procfs::task_clocks_now`]).

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

/// `cpus`, or `at_most` of them spread evenly over the list (on a machine of two kinds of
/// core, numbered kind by kind, both kinds in proportion).
pub fn spread_over(cpus: &[usize], at_most: usize) -> Vec<usize> {
    if cpus.len() <= at_most {
        return cpus.to_vec();
    }
    (0..at_most).map(|i| cpus[i * cpus.len() / at_most]).collect()
}

#[cfg(test)]
mod tests {
    use super::spread_over;

    #[test]
    fn a_few_cpus_spread_over_many() {
        assert_eq!(spread_over(&[0, 1], 8), vec![0, 1]);
        let many: Vec<usize> = (0..64).collect();
        assert_eq!(spread_over(&many, 8), vec![0, 8, 16, 24, 32, 40, 48, 56]);
        // 16 performance cores then 8 efficiency ones: two thirds and one third.
        let hybrid: Vec<usize> = (0..24).collect();
        let picked = spread_over(&hybrid, 6);
        assert_eq!(picked, vec![0, 4, 8, 12, 16, 20]);
        assert_eq!(picked.iter().filter(|&&cpu| cpu >= 16).count(), 2);
        // A cpuset's CPUs, not numbered from 0.
        assert_eq!(spread_over(&[4, 5, 6, 7, 12, 13], 3), vec![4, 6, 12]);
    }
}
