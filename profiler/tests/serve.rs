//! `syscall-profiler serve` for real: scraped over loopback, checked by promtool, and scraped
//! by a real Prometheus server whose query API must return a known workload's call count.
//! Needs root, promtool and prometheus (`cargo xtask test` installs Debian's prometheus).
mod common;

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = run(&["serve", "--listen", &address]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}: address already in use")),
        "{stderr}"
    );
}

#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"]] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn grafana_dashboard_is_valid_json_on_these_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = dashboard.to_string();
    for metric in [
        "syscall_profiler_time_seconds_total",
        "syscall_profiler_latency_seconds_bucket",
        "syscall_profiler_errors_total",
    ] {
        assert!(text.contains(metric), "{metric}");
    }
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn scraped_by_promtool_and_a_real_prometheus() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // One group for the machine, and room for every syscall: getppid's series counts every
    // getppid call exactly (nothing else on the machine makes them).
    let _serve = spawn_serve(
        port,
        &[
            "--interval",
            "0.5",
            "--user",
            "65533",
            "--group-by",
            "none",
            "--top-syscalls",
            "500",
        ],
    );
    let serve_pid = _serve.0.id();
    wait_for("the endpoint", Duration::from_secs(30), || http(port, "GET", "/", None));
    // It runs as the (numeric, not in the password database) user it was given, with no
    // capability left and no way to gain one, and keeps serving.
    let status = std::fs::read_to_string(format!("/proc/{serve_pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}"));
        line[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(field("Uid:").iter().all(|uid| uid == "65533"), "{status}");
    for capabilities in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(capabilities), ["0000000000000000"], "{capabilities}");
    }
    assert_eq!(field("NoNewPrivs:"), ["1"]);
    // A process of another unprivileged user (nobody) cannot signal it.
    let probe = unsafe {
        use std::os::unix::process::CommandExt;
        Command::new("kill")
            .args(["-0", &serve_pid.to_string()])
            .stderr(Stdio::null())
            .pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .status()
            .unwrap()
    };
    assert!(!probe.success(), "nobody could signal the agent");

    // A workload with an exact number of calls, then the series that counts them.
    assert!(Command::new(WORKLOAD)
        .args(["getppid", "4321"])
        .status()
        .unwrap()
        .success());
    // System-wide: other processes on the machine (shells) may add a few getppid calls.
    let series = r#"syscall_profiler_calls_total{syscall="getppid",abi="x86_64"} "#;
    let getppid_of = |body: &str| -> Option<u64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    };
    let metrics = wait_for("the workload's series", Duration::from_secs(15), || {
        let (status, response) = http(port, "GET", "/metrics", None)?;
        let body = body_of(&response);
        (status.contains("200") && getppid_of(body).is_some_and(|calls| calls >= 4321)).then(|| body.to_owned())
    });
    let counted = getppid_of(&metrics).unwrap();
    assert!(counted <= 4321 + 200, "{counted} getppid counted, 4321 made");

    // The agent's own cost, as of its last read (half a second at most), against /proc.
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the scrape"))
    };
    let (proc_cpu, proc_rss_bytes) = cpu_and_resident(serve_pid);
    let (proc_cpu_seconds, proc_rss_bytes) = (proc_cpu.as_secs_f64(), proc_rss_bytes as f64);
    let cpu_seconds = sample("process_cpu_seconds_total");
    assert!(
        cpu_seconds > 0.0 && cpu_seconds <= proc_cpu_seconds + 0.02 && proc_cpu_seconds - cpu_seconds < 0.25,
        "exported {cpu_seconds} s of CPU, /proc says {proc_cpu_seconds} s"
    );
    let rss_bytes = sample("process_resident_memory_bytes");
    assert!(
        (rss_bytes / proc_rss_bytes - 1.0).abs() < 0.25,
        "exported {rss_bytes} bytes resident, /proc says {proc_rss_bytes}"
    );

    // promtool accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Concurrent scrapes all get a whole, consistent answer.
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                http(port, "GET", "/metrics", None).map(|(status, r)| (status, body_of(&r).to_owned()))
            })
        })
        .collect();
    for scraper in scrapers {
        let (status, body) = scraper.join().unwrap().expect("an answer");
        assert!(
            status.contains("200") && body.contains("syscall_profiler_build_info"),
            "{status}"
        );
    }

    // OpenMetrics when asked; only GET and HEAD; unknown paths are 404.
    let (_, open) = http(
        port,
        "GET",
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert!(open.contains("application/openmetrics-text") && body_of(&open).trim_end().ends_with("# EOF"));
    assert!(http(port, "POST", "/metrics", None).unwrap().0.contains("405"));
    assert!(http(port, "GET", "/secret", None).unwrap().0.contains("404"));
    let (status, head) = http(port, "HEAD", "/metrics", None).unwrap();
    assert!(status.contains("200") && body_of(&head).is_empty());

    // A real Prometheus scrapes it and answers for the workload's series.
    let prometheus = Prometheus::start(&listen);
    let answer = wait_for("Prometheus to have the series", Duration::from_secs(60), || {
        prometheus
            .query(r#"syscall_profiler_calls_total{syscall="getppid"}"#)
            .first()
            .cloned()
    });
    let scraped: u64 = answer["value"][1].as_str().unwrap().parse().unwrap();
    assert!((counted..counted + 1000).contains(&scraped), "{answer}");
    // The example rules loaded into the server without errors.
    let (_, rules_response) = http(prometheus.port, "GET", "/api/v1/rules", None).unwrap();
    assert!(
        body_of(&rules_response).contains("SyscallCpuContention"),
        "{rules_response}"
    );
    assert!(
        !body_of(&rules_response).contains(r#""health":"err""#),
        "{rules_response}"
    );
}

/// The tables are read when scraped: a scrape sees the calls made just before it, scrapes
/// within an interval of the last read are answered from it, and an agent nobody scrapes
/// reads every 15 s (its cost follows the scrapes, not a clock of its own).
#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn the_tables_are_read_when_scraped_at_most_once_an_interval() {
    let port = free_port();
    let _serve = spawn_serve(
        port,
        &["--group-by", "none", "--top-syscalls", "500", "--interval", "1"],
    );
    // The index page does not read the tables.
    wait_for("the endpoint", Duration::from_secs(60), || http(port, "GET", "/", None));
    let value = |body: &str, series: &str| -> Option<u64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    };
    let scrape = || {
        let (status, response) = http(port, "GET", "/metrics", None).expect("an answer");
        assert!(status.contains("200"), "{status}");
        body_of(&response).to_owned()
    };
    // Unscraped for 6 s: no read yet (every 15 s); this scrape's is the first (a table
    // filling fast would add one).
    thread::sleep(Duration::from_secs(6));
    let first = scrape();
    let reads = |body: &str| value(body, "syscall_profiler_map_reads_total").expect("map_reads_total");
    assert!(reads(&first) <= 2, "{} reads unscraped", reads(&first));
    // Within the interval: answered from that read, however many ask at once.
    let at_once: Vec<_> = (0..10)
        .map(|_| thread::spawn(move || http(port, "GET", "/metrics", None)))
        .collect();
    let answered: Vec<String> = at_once
        .into_iter()
        .map(|scraper| body_of(&scraper.join().unwrap().expect("an answer").1).to_owned())
        .collect();
    assert!(
        answered.iter().all(|body| reads(body) <= reads(&first) + 1),
        "a read a scrape"
    );
    // Past the interval, a scrape reads first: it sees the calls made just before it.
    thread::sleep(Duration::from_millis(1200));
    assert!(Command::new(WORKLOAD)
        .args(["getppid", "4321"])
        .status()
        .unwrap()
        .success());
    let fresh = scrape();
    let getppid = value(
        &fresh,
        r#"syscall_profiler_calls_total{syscall="getppid",abi="x86_64"}"#,
    );
    assert!(
        getppid.is_some_and(|calls| calls >= 4321),
        "{getppid:?} getppid calls in the scrape right after 4321"
    );
    assert!(reads(&fresh) <= reads(&first) + 3, "{} reads", reads(&fresh));
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn idle_connections_do_not_starve_scrapes() {
    let port = free_port();
    let _serve = spawn_serve(port, &[]);
    wait_for("the endpoint", Duration::from_secs(60), || http(port, "GET", "/", None));
    // Twice the connection cap, opened and left idle (never a byte sent).
    let idle: Vec<TcpStream> = (0..512)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let started = Instant::now();
        let (status, response) = http(port, "GET", "/metrics", None).expect("an answer");
        slowest = slowest.max(started.elapsed());
        assert!(status.contains("200"), "{status}");
        assert!(body_of(&response).contains("syscall_profiler_build_info"));
        thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    assert!(slowest < Duration::from_millis(100), "slowest scrape {slowest:?}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn a_fork_storm_loses_no_call() {
    let port = free_port();
    // The default table sizes; one group for the machine and room for every syscall, so that
    // getppid's series counts every getppid call rather than its first read going to
    // `syscall="other"` while the budget is full.
    let _serve = spawn_serve(port, &["--group-by", "none", "--top-syscalls", "500"]);
    let getppid = |body: &str| -> Option<u64> {
        body.lines()
            .find(|l| l.starts_with(r#"syscall_profiler_calls_total{syscall="getppid",abi="x86_64"}"#))
            .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
    };
    let before = wait_for("the endpoint", Duration::from_secs(60), || {
        let (status, response) = http(port, "GET", "/metrics", None)?;
        status.contains("200").then(|| getppid(body_of(&response)).unwrap_or(0))
    });
    assert!(Command::new(WORKLOAD)
        .args(["fork-storm", "20000", "5"])
        .status()
        .unwrap()
        .success());
    let mut last = (0, String::new());
    let counted = wait_for("every call of the storm", Duration::from_secs(15), || {
        let (_, response) = http(port, "GET", "/metrics", None)?;
        last = (getppid(body_of(&response))? - before, body_of(&response).to_owned());
        (last.0 >= 100_000).then_some(last.0)
    });
    // None lost; a few more may come from elsewhere on the machine (a shell calls getppid as
    // it starts) and cannot be told apart without a group label.
    assert!((100_000..100_100).contains(&counted), "{counted}");
    let drops: Vec<&str> = last
        .1
        .lines()
        .filter(|l| l.starts_with("syscall_profiler_overflow_drops_total") && !l.ends_with(" 0"))
        .collect();
    assert!(drops.is_empty(), "{drops:?}");
}

#[test]
#[ignore = "needs root: loads eBPF programs (cargo xtask test runs it as root)"]
fn series_by_container_are_named_from_the_runtimes_state() {
    let container = FakeContainer::docker("shop-api");
    let port = free_port();
    let host_root = container.host_root.to_str().unwrap();
    let _serve = spawn_serve(
        port,
        &[
            "--group-by",
            "container",
            "--host-root",
            host_root,
            "--top-syscalls",
            "500",
        ],
    );
    wait_for("the endpoint", Duration::from_secs(60), || {
        http(port, "GET", "/metrics", None).filter(|(status, _)| status.contains("200"))
    });
    // A group gets series of its own once active over 10 s: a container busy for 15.
    let busy = format!("sh -c 'for i in $(seq 75); do {WORKLOAD} getppid 100; sleep 0.2; done'");
    let _container = Killed(Command::new("sh").args(["-c", &container.run(&busy)]).spawn().unwrap());
    let series = r#"syscall_profiler_calls_total{group="docker:shop-api",syscall="getppid",abi="x86_64"}"#;
    wait_for("the container's series", Duration::from_secs(30), || {
        let (_, response) = http(port, "GET", "/metrics", None)?;
        let line = body_of(&response).lines().find(|l| l.starts_with(series))?.to_owned();
        line.rsplit_once(' ')?.1.parse::<u64>().ok().filter(|&n| n >= 100)
    });
}
