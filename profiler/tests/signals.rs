//! SIGINT and SIGTERM end `serve`, `report` and `syscall-top` within a second, with a spinner
//! on every CPU, and `report` still writes what it measured (so `timeout 30 syscall-profiler
//! report` works). Needs root.
mod common;

use std::{
    net::TcpListener,
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use common::*;

/// A spinner on every CPU (getppid in a loop), killed on drop.
struct Spinners(Vec<Child>);

impl Spinners {
    fn start() -> Spinners {
        let cpus = thread::available_parallelism().map_or(2, |n| n.get());
        Spinners(
            (0..cpus)
                .map(|_| Command::new(WORKLOAD).args(["spin", "120"]).spawn().unwrap())
                .collect(),
        )
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// How long `child` takes to exit after `signal`; its exit code.
fn time_to_exit(child: &mut Child, signal_number: i32) -> (Duration, Option<i32>) {
    let sent = Instant::now();
    signal(child, signal_number);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (sent.elapsed(), status.code());
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "still running 10 s after the signal"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn serve_stops_on_sigint_and_sigterm_within_a_second_under_load() {
    let _load = Spinners::start();
    for signal_number in [libc::SIGINT, libc::SIGTERM] {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Killed when dropped: one left running would skew the tests after this one.
        let mut serve = spawn_serve(port, &[]);
        // An answer, not a connection: the socket is bound (and accepts into its backlog)
        // before loading and calibrating, which take seconds here with every CPU busy; a
        // signal then still has its default action.
        wait_until("the endpoint", Duration::from_secs(60), || {
            http(port, "GET", "/metrics", None).is_some()
        });
        thread::sleep(Duration::from_millis(1500)); // a few reads of the maps
        let (took, code) = time_to_exit(&mut serve.0, signal_number);
        assert!(took < Duration::from_secs(1), "signal {signal_number}: {took:?}");
        assert_eq!(code, Some(0), "signal {signal_number}");
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn report_on_sigterm_writes_what_it_measured() {
    let _load = Spinners::start();
    let path = std::env::temp_dir().join(format!("sigterm-report-{}.json", std::process::id()));
    let mut report = Command::new(PROFILER)
        .args(["report", "--format", "json", "--duration", "120", "-o"])
        .arg(&path)
        .spawn()
        .unwrap();
    // Loading and calibrating take a second or two; then it measures.
    thread::sleep(Duration::from_secs(5));
    let (took, code) = time_to_exit(&mut report, libc::SIGTERM);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    let duration_ns = json["duration_ns"].as_u64().unwrap();
    assert!((1_000_000_000..120_000_000_000).contains(&duration_ns), "{duration_ns}");
    // The spinners were measured.
    let spinning = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| syscall(p, "getppid", NATIVE).is_some_and(|s| u64_of(s, "calls") > 1000))
        .count();
    assert!(spinning >= 1, "{json}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn syscall_top_stops_on_sigterm_and_restores_the_terminal() {
    let _load = Spinners::start();
    let session = format!("top-signal-{}", std::process::id());
    let top = env!("CARGO_BIN_EXE_syscall-top");
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"])
        .arg(format!("{top}; echo TOP-EXITED $?; sleep 30"))
        .status()
        .expect("tmux (cargo xtask test installs it)");
    assert!(status.success());
    let screen = || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the first refresh", Duration::from_secs(60), || {
        screen().contains("processes ")
    });
    let pid = Command::new("pgrep").args(["-x", "syscall-top"]).output().unwrap();
    let pid: i32 = String::from_utf8_lossy(&pid.stdout)
        .trim()
        .parse()
        .expect("one syscall-top");
    let sent = Instant::now();
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("syscall-top to exit", Duration::from_secs(10), || {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        !alive
    });
    let took = sent.elapsed();
    wait_until("the shell to run again", Duration::from_secs(5), || {
        screen().contains("TOP-EXITED 0")
    });
    let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
    assert!(took < Duration::from_secs(1), "{took:?}");
}
