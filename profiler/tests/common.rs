//! Helpers shared by the integration tests: run the real binaries and read their JSON.
#![allow(dead_code)]
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const PROFILER: &str = env!("CARGO_BIN_EXE_syscall-profiler");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_profiler-workload");
/// The native ABI's label in reports (the kernel matrix runs the tests on arm64 too).
#[cfg(target_arch = "x86_64")]
pub const NATIVE: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
pub const NATIVE: &str = "aarch64";

/// Whether times mean something here: the kernel matrix runs tests under CPU emulation and
/// says so with `PROFILER_TESTS_EMULATED`; there only counts, names and invariants hold.
pub fn timing_is_real() -> bool {
    std::env::var_os("PROFILER_TESTS_EMULATED").is_none()
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn run(args: &[&str]) -> Output {
    Command::new(PROFILER)
        .args(args)
        .output()
        .expect("run syscall-profiler")
}

/// `syscall-profiler report --format json ARGS`, which must succeed.
pub fn report_json(args: &[&str]) -> Value {
    let mut full = vec!["report", "--format", "json"];
    full.extend_from_slice(args);
    let output = run(&full);
    assert!(
        output.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("report is JSON")
}

/// `report -- profiler-workload ARGS` as JSON.
pub fn profile_workload(args: &[&str]) -> Value {
    let mut full = vec!["--", WORKLOAD];
    full.extend_from_slice(args);
    report_json(&full)
}

/// `report -- profiler-workload ARGS` as JSON, with `name=value` in the profiler's
/// environment.
pub fn profile_workload_env(args: &[&str], name: &str, value: &str) -> Value {
    let output = Command::new(PROFILER)
        .args(["report", "--format", "json", "--", WORKLOAD])
        .args(args)
        .env(name, value)
        .output()
        .expect("run syscall-profiler");
    assert!(
        output.status.success(),
        "report {args:?} with {name}={value} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("report is JSON")
}

/// The processes whose comm is the workload's (the kernel truncates it to 15 bytes).
pub fn workload_processes(report: &Value) -> Vec<&Value> {
    report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| {
            p["comm"]
                .as_str()
                .is_some_and(|c| "profiler-workload".starts_with(c) && c.len() >= 8)
        })
        .collect()
}

/// The row of syscall `name` (native ABI unless `abi` says otherwise) of a process.
pub fn syscall<'a>(process: &'a Value, name: &str, abi: &str) -> Option<&'a Value> {
    process["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .find(|s| s["name"] == name && s["abi"] == abi)
}

pub fn u64_of(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
}

/// The one workload process of a report.
pub fn only_workload(report: &Value) -> &Value {
    let found = workload_processes(report);
    assert_eq!(found.len(), 1, "one workload process in {report}");
    found[0]
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP/1.1 request over loopback, with `headers` (each ending in CRLF) added; returns
/// the whole response as received.
pub fn http_raw(port: u16, method: &str, path: &str, headers: &str) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    Some(response)
}

/// A plain HTTP/1.1 request over loopback; returns (status line, headers + body).
pub fn http(port: u16, method: &str, path: &str, accept: Option<&str>) -> Option<(String, String)> {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let response = String::from_utf8(http_raw(port, method, path, &accept)?).ok()?;
    let (status, rest) = response.split_once("\r\n")?;
    Some((status.to_owned(), rest.to_owned()))
}

/// `syscall-profiler serve --listen 127.0.0.1:PORT ARGS`, its stderr dropped, killed when the
/// guard goes.
pub fn spawn_serve(port: u16, args: &[&str]) -> Killed {
    Killed(
        Command::new(PROFILER)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Retries `attempt` every 250 ms until it gives something, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

/// A child process killed (and reaped) when dropped, whatever the test's outcome.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's CPU time (user and system) and resident memory, from `/proc/PID/stat`.
pub fn cpu_and_resident(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the name, which may hold spaces: fields 3 onwards.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let field = |number: usize| fields[number - 3].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let (ticks, page_bytes) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let cpu = Duration::from_secs_f64((field(14) + field(15)) as f64 / ticks as f64);
    (cpu, field(24) * page_bytes as u64)
}

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus server (Debian's, installed by `cargo xtask test`) scraping `target`
/// every second with the project's rules loaded; stopped and its data removed when dropped.
pub struct Prometheus {
    pub port: u16,
    dir: PathBuf,
    _server: Killed,
}

impl Prometheus {
    pub fn start(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("prometheus-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prometheus/rules.yml")
            .canonicalize()
            .unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: syscall-profiler\n    static_configs: [{{targets: ['{target}']}}]\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let server = Killed(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus"),
        );
        Prometheus {
            port,
            dir,
            _server: server,
        }
    }

    /// The result vector of an instant query (empty when the server is not up yet or the
    /// query fails).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let Some((_, response)) = http(self.port, "GET", &path, None) else {
            return Vec::new();
        };
        let body = body_of(&response);
        // Chunked or not, the JSON is in there.
        let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else {
            return Vec::new();
        };
        let json: Value = serde_json::from_str(&body[start..=end]).unwrap_or_default();
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self._server.0.kill();
        let _ = self._server.0.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A container as Docker's systemd driver lays one out: a cgroup v2 scope named by its id,
/// and its state (its name) under `/var/lib/docker`, here under a host root of the test's
/// own. Both removed on drop (the cgroup once its processes have exited).
pub struct FakeContainer {
    pub mount: std::path::PathBuf,
    pub cgroup: std::path::PathBuf,
    pub host_root: std::path::PathBuf,
}

impl FakeContainer {
    pub fn docker(name: &str) -> FakeContainer {
        let unique = format!(
            "{:08x}{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let id = unique.repeat(4);
        let mount = std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].to_owned())
            })
            .expect("a cgroup v2 mount");
        let cgroup = std::path::Path::new(&mount)
            .join(format!("profiler-test-{unique}.slice"))
            .join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&cgroup).unwrap();
        let host_root = std::env::temp_dir().join(format!("host-root-{unique}"));
        let state = host_root.join(format!("var/lib/docker/containers/{id}"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("config.v2.json"), format!(r#"{{"Name":"/{name}"}}"#)).unwrap();
        FakeContainer {
            mount: mount.into(),
            cgroup,
            host_root,
        }
    }

    /// The container's cgroup path, as `/proc/PID/cgroup` has it.
    pub fn cgroup_path(&self) -> String {
        format!("/{}", self.cgroup.strip_prefix(&self.mount).unwrap().display())
    }

    /// A shell script that moves itself into the container's cgroup and execs `command`: as
    /// a runtime starts a container's program (after its first calls, outside).
    pub fn run(&self, command: &str) -> String {
        format!("echo $$ > {}/cgroup.procs && exec {command}", self.cgroup.display())
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for FakeContainer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(parent) = self.cgroup.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        let _ = std::fs::remove_dir_all(&self.host_root);
    }
}
