//! The four-part split of syscall time, and the class (and advice) it implies.
//!
//! `total = entry + handler + blocked + runqueue`, exactly: handler, blocked and runqueue are
//! measured between the tracepoints; entry is the calibrated boundary cost charged per call.
use serde::Serialize;

/// Time of a set of calls, split by where it went. All in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Split {
    pub entry_ns: u64,
    pub handler_ns: u64,
    pub blocked_ns: u64,
    pub runqueue_ns: u64,
}

impl Split {
    pub fn total_ns(&self) -> u64 {
        self.entry_ns + self.handler_ns + self.blocked_ns + self.runqueue_ns
    }

    pub fn add(&mut self, other: &Split) {
        self.entry_ns += other.entry_ns;
        self.handler_ns += other.handler_ns;
        self.blocked_ns += other.blocked_ns;
        self.runqueue_ns += other.runqueue_ns;
    }

    /// Shares of the total in the order entry, handler, blocked, runqueue (all 0 if empty).
    pub fn fractions(&self) -> [f64; 4] {
        let total = self.total_ns();
        if total == 0 {
            return [0.0; 4];
        }
        let share = |part: u64| part as f64 / total as f64;
        [
            share(self.entry_ns),
            share(self.handler_ns),
            share(self.blocked_ns),
            share(self.runqueue_ns),
        ]
    }
}

/// What kind of problem a set of calls is, from its split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Boundary cost is a large share and the calls are frequent: batch them.
    TinyFrequent,
    /// Mostly asleep waiting for a resource.
    Blocked,
    /// Mostly on-CPU work inside the kernel.
    HandlerHeavy,
    /// Mostly runnable but waiting for a CPU.
    CpuContention,
    /// No part dominates.
    Mixed,
    /// Waiting by design for something to happen: an event loop or a poll with nothing to
    /// do, a timed wait that timed out. Not work held up.
    IdleWait,
    /// Asked to sleep (`nanosleep`).
    Sleep,
    /// A parent waiting for its child (`wait4`, `waitid`).
    ChildWait,
}

/// Thresholds of [`classify`], as shares of total time (or calls per second).
pub mod thresholds {
    /// `blocked` when at least half of the time was spent asleep.
    pub const BLOCKED_SHARE: f64 = 0.5;
    /// `cpu-contention` when at least 30% was spent waiting for a CPU: on a healthy box
    /// this share is near zero, so 30% is already a serious queue.
    pub const RUNQUEUE_SHARE: f64 = 0.3;
    /// `tiny-frequent` when crossing the boundary is at least 25% of the time...
    pub const ENTRY_SHARE: f64 = 0.25;
    /// ...and the calls come at least this often (per second): a rare cheap call is no problem.
    pub const FREQUENT_CALLS_PER_SEC: f64 = 1000.0;
    /// `handler-heavy` when at least half of the time was on-CPU in the handler.
    pub const HANDLER_SHARE: f64 = 0.5;
}

/// Classifies calls by their split; rules are tried in this order: blocked, cpu-contention,
/// tiny-frequent, handler-heavy, else mixed.
pub fn classify(split: &Split, calls_per_sec: f64) -> Class {
    use thresholds::*;
    let [entry, handler, blocked, runqueue] = split.fractions();
    if split.total_ns() == 0 {
        Class::Mixed
    } else if blocked >= BLOCKED_SHARE {
        Class::Blocked
    } else if runqueue >= RUNQUEUE_SHARE {
        Class::CpuContention
    } else if entry >= ENTRY_SHARE && calls_per_sec >= FREQUENT_CALLS_PER_SEC {
        Class::TinyFrequent
    } else if handler >= HANDLER_SHARE {
        Class::HandlerHeavy
    } else {
        Class::Mixed
    }
}

/// Syscalls whose purpose is to wait for events.
const EVENT_WAITS: [&str; 12] = [
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "_newselect",
    "io_getevents",
    "io_pgetevents",
    "rt_sigtimedwait",
    "pause",
];

/// The class of calls that wait by design, if these are: mostly asleep (see
/// [`thresholds::BLOCKED_SHARE`]) in a call made to wait for events, a timer or a child, or
/// in a `futex` whose waits mostly timed out (`timed_out` of `calls`: a condition variable's
/// timed wait with nothing to wake it). A `read` on a pipe is not such a call: it waits for
/// data the program needs.
pub fn waiting_by_design(syscall: &str, split: &Split, calls: u64, timed_out: u64) -> Option<Class> {
    if split.total_ns() == 0 || split.fractions()[2] < thresholds::BLOCKED_SHARE {
        return None;
    }
    match syscall {
        "futex" if calls > 0 && timed_out * 2 >= calls => Some(Class::IdleWait),
        name => waits_by_name(name),
    }
}

/// The class of a syscall made only to wait (for events, a timer, a child), by its name.
pub fn waits_by_name(syscall: &str) -> Option<Class> {
    match syscall {
        name if EVENT_WAITS.contains(&name) => Some(Class::IdleWait),
        "nanosleep" | "clock_nanosleep" | "clock_nanosleep_time64" => Some(Class::Sleep),
        "wait4" | "waitid" | "waitpid" => Some(Class::ChildWait),
        _ => None,
    }
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::TinyFrequent => "tiny-frequent",
            Class::Blocked => "blocked",
            Class::HandlerHeavy => "handler-heavy",
            Class::CpuContention => "cpu-contention",
            Class::Mixed => "mixed",
            Class::IdleWait => "idle-wait",
            Class::Sleep => "sleep",
            Class::ChildWait => "child-wait",
        }
    }

    /// One line of advice: what to do next for this kind of problem.
    pub fn advice(self) -> &'static str {
        match self {
            Class::TinyFrequent => {
                "boundary cost dominates: batch the work (bigger buffers, readv/writev, sendmmsg/recvmmsg, io_uring) or avoid the call"
            }
            Class::Blocked => {
                "mostly asleep: find what it waits on (lock, pipe, socket peer, disk, timer) - the syscall is only where it sleeps"
            }
            Class::HandlerHeavy => {
                "in-kernel work dominates: look into the subsystem behind it (page cache, VFS path walk, copies, network stack)"
            }
            Class::CpuContention => {
                "waiting for a CPU after wakeups or preemption: too many runnable threads for the CPUs; check load, limits and affinity"
            }
            Class::Mixed => "no single part dominates: compare entry, handler, blocked and runqueue times",
            Class::IdleWait => {
                "waiting by design for events (an idle event loop, a poll, a timed wait that timed out): a problem only if what should wake it is late - look there"
            }
            Class::Sleep => "sleeping on purpose: a problem only if the sleeps delay work (retry or polling intervals)",
            Class::ChildWait => "waiting for a child process: the time is the child's - look at its own rows",
        }
    }
}

/// How many of `width` cells each part of the split gets (entry, handler, blocked,
/// runqueue), proportionally, summing to exactly `width` (largest remainders round up).
pub fn split_cells(split: &Split, width: usize) -> [usize; 4] {
    if split.total_ns() == 0 {
        return [0; 4];
    }
    let exact: Vec<f64> = split.fractions().iter().map(|f| f * width as f64).collect();
    let mut cells = [0usize; 4];
    for (cell, x) in cells.iter_mut().zip(&exact) {
        *cell = x.floor() as usize;
    }
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut missing = width - cells.iter().sum::<usize>();
    for i in order {
        if missing == 0 {
            break;
        }
        cells[i] += 1;
        missing -= 1;
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(entry: u64, handler: u64, blocked: u64, runqueue: u64) -> Split {
        Split {
            entry_ns: entry,
            handler_ns: handler,
            blocked_ns: blocked,
            runqueue_ns: runqueue,
        }
    }

    #[test]
    fn total_is_exactly_the_sum_of_the_parts() {
        let s = split(52_400, 30_000, 7, 11);
        assert_eq!(s.total_ns(), 82_418);
        let mut sum = s;
        sum.add(&s);
        assert_eq!(sum.total_ns(), 2 * s.total_ns());
    }

    #[test]
    fn fractions_sum_to_one() {
        let f = split(1, 2, 3, 4).fractions();
        assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(Split::default().fractions(), [0.0; 4]);
    }

    #[test]
    fn classes_follow_the_thresholds() {
        let frequent = 10_000.0;
        let cases = [
            (split(60, 30, 0, 10), frequent, Class::TinyFrequent),
            (split(60, 30, 0, 10), 10.0, Class::Mixed), // cheap but rare: no problem to name
            (split(1, 10, 89, 0), frequent, Class::Blocked),
            (split(1, 10, 50, 39), frequent, Class::Blocked), // exactly 50% blocked
            (split(1, 10, 49, 40), frequent, Class::CpuContention),
            (split(1, 60, 9, 30), frequent, Class::CpuContention), // exactly 30% runqueue
            (split(1, 70, 9, 20), frequent, Class::HandlerHeavy),
            (split(25, 40, 20, 15), frequent, Class::TinyFrequent), // exactly 25% entry
            (split(20, 40, 25, 15), frequent, Class::Mixed),
            (Split::default(), frequent, Class::Mixed),
        ];
        for (s, rate, want) in cases {
            assert_eq!(classify(&s, rate), want, "{s:?} at {rate}/s");
        }
    }

    #[test]
    fn waits_by_design_have_classes_of_their_own() {
        let asleep = split(1, 10, 900, 0);
        let busy = split(100, 800, 50, 50);
        assert_eq!(waiting_by_design("epoll_wait", &asleep, 10, 0), Some(Class::IdleWait));
        assert_eq!(waiting_by_design("ppoll", &asleep, 10, 0), Some(Class::IdleWait));
        assert_eq!(waiting_by_design("clock_nanosleep", &asleep, 10, 0), Some(Class::Sleep));
        assert_eq!(waiting_by_design("wait4", &asleep, 1, 0), Some(Class::ChildWait));
        // A futex wait that timed out is idle; one that was woken waited on another thread.
        assert_eq!(waiting_by_design("futex", &asleep, 10, 6), Some(Class::IdleWait));
        assert_eq!(waiting_by_design("futex", &asleep, 10, 1), None);
        // A read waits for data the program needs; a busy event loop is not idle.
        assert_eq!(waiting_by_design("read", &asleep, 10, 0), None);
        assert_eq!(waiting_by_design("epoll_wait", &busy, 10, 0), None);
    }

    #[test]
    fn every_class_has_a_name_and_advice() {
        for class in [
            Class::TinyFrequent,
            Class::Blocked,
            Class::HandlerHeavy,
            Class::CpuContention,
            Class::Mixed,
            Class::IdleWait,
            Class::Sleep,
            Class::ChildWait,
        ] {
            assert!(!class.advice().is_empty());
            assert_eq!(serde_json::to_value(class).unwrap(), class.as_str());
        }
    }
}
