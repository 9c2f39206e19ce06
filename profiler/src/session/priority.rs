//! The agent's scheduling priority on an overloaded machine.
//!
//! When the tool is needed most, the machine has more runnable tasks than CPUs, and a thread at
//! the default priority gets a few milliseconds of CPU a second in a scheduling group it
//! shares with them (the same session, cgroup or container). Beside 1,000 busy processes
//! (500 a CPU) start-up took two minutes for about a second of CPU, the calibration's
//! batches were nearly all preempted, so that three attempts ended with no boundary cost, and
//! a report of 13 s came up to 8 s late. So:
//! - the agent raises its nice value to -20 ([`RaisedPriority`]): while it starts, in every
//!   mode; for their whole run in `report` and `syscall-top`, which a user started and waits
//!   on. `serve` goes back to its priority once started: a daemon's share is its operator's
//!   call (its systemd unit and Kubernetes requests give it a group of its own).
//! - when busy processes preempted too many calibration batches, they are measured again at
//!   the lowest real-time priority ([`Realtime`]), which no ordinary task preempts: with
//!   nice -20 alone, most batches were still preempted beside 1,000 busy processes.
//!
//! The agent uses about 2% of a CPU either way; priority only decides that it gets it on time.
//! Both guards restore the calling thread when dropped (the agent's commands run on one
//! thread), and both are best effort: without `CAP_SYS_NICE` (`serve` drops it once attached;
//! containers may not have it) or without a real-time budget in the cgroup, nothing changes,
//! and the calibration throws its interrupted batches away as before. Neither is inherited:
//! both set `SCHED_RESET_ON_FORK`, so a command the agent starts runs at nice 0, as a normal
//! task.

/// The calling thread at nice -20 until dropped, if it was at the default nice 0 and may
/// raise itself.
pub struct RaisedPriority {
    /// The policy to restore (with nice 0); `None` if nothing was changed.
    before: Option<i32>,
}

impl RaisedPriority {
    pub fn raise() -> RaisedPriority {
        let tid = current_tid();
        // SAFETY: getpriority/setpriority/sched_* on the calling thread. (getpriority's error
        // return, -1, is not 0: no need to tell it from a nice of -1.)
        let before = unsafe {
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
            let policy = libc::sched_getscheduler(0);
            let normal = policy >= 0 && policy & !libc::SCHED_RESET_ON_FORK == libc::SCHED_OTHER;
            // Children reset to nice 0 first: a command started meanwhile is a normal task.
            let param = libc::sched_param { sched_priority: 0 };
            // A nice value the user chose (`nice -n 10 syscall-profiler ...`) is theirs.
            (normal
                && nice == 0
                && libc::sched_setscheduler(0, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK, &param) == 0
                && libc::setpriority(libc::PRIO_PROCESS, tid, HIGHEST_NICE) == 0)
                .then_some(policy)
        };
        RaisedPriority { before }
    }
}

impl Drop for RaisedPriority {
    fn drop(&mut self) {
        if let Some(policy) = self.before {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above; lowering one's own priority needs no privilege, and the policy
            // flag is only cleared again with the privilege that set it.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, current_tid(), 0);
                libc::sched_setscheduler(0, policy, &param);
            }
        }
    }
}

const HIGHEST_NICE: i32 = -20;

/// The calling thread at real-time priority 1 (`SCHED_FIFO`) until dropped, if it was a
/// normal thread and may be raised.
pub struct Realtime {
    /// The policy to restore; `None` if it was not changed.
    policy_before: Option<i32>,
}

impl Realtime {
    pub fn enter() -> Realtime {
        // SAFETY: sched_getscheduler/sched_setscheduler on the calling thread (0).
        let policy_before = unsafe {
            let policy = libc::sched_getscheduler(0);
            let param = libc::sched_param { sched_priority: 1 };
            (policy >= 0
                && policy & !libc::SCHED_RESET_ON_FORK == libc::SCHED_OTHER
                && libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) == 0)
                .then_some(policy)
        };
        Realtime { policy_before }
    }

    /// Whether the thread runs at real-time priority (raised by this guard).
    pub fn raised(&self) -> bool {
        self.policy_before.is_some()
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if let Some(policy) = self.policy_before {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above; a normal policy keeps the thread's nice value.
            unsafe { libc::sched_setscheduler(0, policy, &param) };
        }
    }
}

fn current_tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: as in `raise`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, current_tid()) }
    }

    fn policy() -> i32 {
        // SAFETY: as in `enter`.
        unsafe { libc::sched_getscheduler(0) }
    }

    // On a thread of its own: the test harness's threads stay as they were.
    #[test]
    fn the_guards_nest_and_restore_the_thread_as_it_was() {
        std::thread::spawn(|| {
            let (nice_before, policy_before) = (nice(), policy());
            {
                let raised = RaisedPriority::raise();
                if raised.before.is_some() {
                    assert_eq!(nice(), HIGHEST_NICE);
                    assert_eq!(policy(), libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK);
                }
                // Already raised: nothing to do, nothing to restore.
                assert!(RaisedPriority::raise().before.is_none());
                {
                    let realtime = Realtime::enter();
                    if realtime.raised() {
                        assert_eq!(policy(), libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK);
                    }
                }
                if raised.before.is_some() {
                    assert_eq!(
                        (nice(), policy()),
                        (HIGHEST_NICE, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK)
                    );
                }
            }
            assert_eq!((nice(), policy()), (nice_before, policy_before));
        })
        .join()
        .unwrap();
    }
}
