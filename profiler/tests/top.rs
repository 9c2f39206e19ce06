//! `syscall-top` for real: in tmux next to a known workload, driven by keys, read back with
//! capture-pane. Needs root and tmux (`cargo xtask test` installs tmux when missing).
mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

const TOP: &str = env!("CARGO_BIN_EXE_syscall-top");

#[test]
fn not_a_terminal_is_one_clear_line() {
    let output = Command::new(TOP).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs a terminal") && stderr.contains("syscall-profiler report"),
        "{stderr}"
    );
}

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let session = format!("top-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "120", "-y", "32", command])
            .status()
            .expect("tmux (cargo xtask test installs it)");
        assert!(status.success());
        Tmux { session }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            Command::new("tmux")
                .args(["send-keys", "-t", &self.session, key])
                .status()
                .unwrap();
            thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until the screen satisfies `done`; returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn stuck_view_times_a_blocking_call_that_was_not_sampled() {
    // The sparsest sampling: after its first 64 sleeps the hang is almost surely untimed at
    // sys_enter, and timed from when it left the CPU, on the scheduler's clock.
    let tmux = Tmux::start(&format!(
        "sh -c '{TOP} --interval 0.5 --stuck-threshold 1 --sample 1024; sleep 60'"
    ));
    tmux.wait_for("syscall-top to start", |s| s.contains("syscalls/s"));
    let mut workload = Command::new(WORKLOAD)
        .args(["hang-after", "300", "30"])
        .spawn()
        .unwrap();
    let pid = workload.id().to_string();
    let started = std::time::Instant::now();
    tmux.keys(&["k"]);
    let screen = tmux.wait_for("the hanging sleep in the stuck view", |s| {
        s.lines()
            .any(|l| l.contains(&pid) && l.contains("nanosleep") && l.contains("blocked"))
    });
    let waited = started.elapsed().as_secs_f64();
    workload.kill().ok();
    workload.wait().ok();
    let row = screen
        .lines()
        .find(|l| l.contains(&pid) && l.contains("nanosleep"))
        .unwrap();
    // "FOR" is like "1.5s": the hang began after the 300 short sleeps, so it is under the
    // time since the workload started, and over the threshold.
    let seconds: f64 = row
        .split_whitespace()
        .find_map(|cell| cell.strip_suffix('s')?.parse().ok())
        .unwrap_or_else(|| panic!("a duration in {row:?}"));
    assert!(
        seconds >= 1.0 && seconds <= waited + 1.0,
        "{seconds} s in {row:?}, {waited} s since start"
    );
    assert!(!row.contains('≥'), "measured, not guessed from /proc: {row:?}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn live_view_in_a_real_terminal() {
    let mut workload = Command::new(WORKLOAD).args(["spin", "120"]).spawn().unwrap();
    let pid = workload.id();
    let tmux = Tmux::start(&format!(
        "sh -c '{TOP} --interval 0.5; echo RESTORED-$?; stty -a; sleep 60'"
    ));

    // The workload's row, with its top syscall, on one line.
    let screen = tmux.wait_for("the workload's row", |s| {
        s.lines()
            .any(|l| l.contains(&pid.to_string()) && l.contains("profiler-worklo") && l.contains("getppid"))
    });
    assert!(screen.contains("syscalls/s") && screen.contains("boundary"), "{screen}");
    assert!(screen.contains("TIME/s▼"), "sorted by time by default:\n{screen}");

    // Sort by the next column.
    tmux.keys(&["s"]);
    tmux.wait_for("sort by p99", |s| s.contains("P99▼"));

    // Filter to the workload and drill into its syscalls.
    tmux.keys(&["/", "profiler", "Enter"]);
    tmux.wait_for("the filter", |s| s.contains("filter: profiler"));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the syscalls view", |s| s.contains(&format!("syscalls of {pid}")));
    tmux.wait_for("getppid's histogram", |s| s.contains("getppid latency"));
    assert!(screen.contains("SYSCALL"), "{screen}");

    // Back, the stuck view, back, and quit.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the process list", |s| s.contains(" processes "));
    tmux.keys(&["k"]);
    tmux.wait_for("the stuck view", |s| s.contains("threads inside a syscall for over"));
    tmux.keys(&["k", "q"]);
    let screen = tmux.wait_for("syscall-top to exit", |s| s.contains("RESTORED-"));
    workload.kill().ok();
    workload.wait().ok();
    assert!(screen.contains("RESTORED-0"), "exit code 0:\n{screen}");
    // The terminal is back in cooked mode with echo: raw mode was undone.
    let stty = screen.split("RESTORED-0").nth(1).unwrap_or_default();
    assert!(stty.contains(" icanon") && !stty.contains("-icanon"), "{stty}");
    assert!(stty.contains(" echo ") && !stty.contains("-echo "), "{stty}");
    // And the alternate screen was left: the table is gone.
    assert!(!screen.contains("CALLS/s"), "{screen}");
}

/// The pids of the running syscall-top processes (this test binary's build).
fn top_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.to_string_lossy().starts_with(TOP))
        })
        .collect()
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_closed_terminal_ends_it() {
    // The terminal library spins for ever reading a terminal that has gone: such a view would
    // outlive its window, burning a CPU with its programs attached.
    let before = top_pids();
    let tmux = Tmux::start(&format!("{TOP} --interval 0.5"));
    tmux.wait_for("syscall-top to start", |s| s.contains("syscalls/s"));
    let mine: Vec<u32> = top_pids().into_iter().filter(|pid| !before.contains(pid)).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    drop(tmux); // kills the session: the terminal hangs up
    let started = Instant::now();
    // Gone, or exited and waiting for init to reap it (tmux, its parent, has gone).
    let running = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    };
    while running(mine[0]) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "syscall-top {} outlived its terminal",
            mine[0]
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_process_view_shows_where_its_blocked_calls_wait() {
    // 600 reads of a pipe whose writer sleeps 20 ms before each byte: 12 s of them.
    let dir = std::env::temp_dir();
    let mut workload = Command::new(WORKLOAD)
        .args(["waits", "600", dir.to_str().unwrap()])
        .spawn()
        .unwrap();
    let pid = workload.id();
    let tmux = Tmux::start(&format!("sh -c '{TOP} --interval 0.5; sleep 60'"));
    tmux.wait_for("syscall-top to start", |s| s.contains("syscalls/s"));
    tmux.keys(&["/", &pid.to_string(), "Enter"]);
    tmux.wait_for("the workload's row", |s| s.contains("profiler-worklo"));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the read's wait site and pipe", |s| {
        s.contains("where its blocked calls waited") && s.contains("pipe_read <- vfs_read") && s.contains("on fd ")
    });
    workload.kill().ok();
    workload.wait().ok();
    assert!(screen.contains(&format!("syscalls of {pid}")), "{screen}");
    assert!(
        screen.contains("woken by ") && screen.contains("pipe-writer"),
        "{screen}"
    );
    assert!(screen.contains("pipe:["), "{screen}");
}
