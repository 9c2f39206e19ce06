//! `syscall-profiler serve`: the measurements as a Prometheus scrape endpoint.
//!
//! The maps are read every `--interval` into one [`Snapshot`]; each scrape encodes the latest
//! snapshot, so a scrape is always consistent and never touches the kernel. Hardened for
//! exposure: GET and HEAD only, small request headers, time limits per request and per
//! connection, a cap on concurrent connections, and an optional drop to an unprivileged user
//! (keeping only `CAP_BPF` and `CAP_PERFMON`) once the programs are attached.
use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;

use crate::{
    commands::MapArgs,
    metrics::{self, Format, GroupBy, Grouper, SelfMetrics, Snapshot},
    session::{
        cgroups::{proc_cgroup, CgroupPaths},
        Session, Target,
    },
};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to serve /metrics on. Loopback by default: exposing it is a choice to make.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Label series by process name, cgroup, or not at all.
    #[arg(long, value_enum, default_value_t = GroupBy::Comm)]
    pub group_by: GroupBy,
    /// Groups (by syscall time) that get their own series; the rest are `other`.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub top_k: u64,
    /// Seconds a group may stay idle before its series go away.
    #[arg(long, default_value_t = 300)]
    pub grace: u64,
    /// Seconds between reads of the maps.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// After attaching, switch to this user (keeping only CAP_BPF and CAP_PERFMON).
    #[arg(long)]
    pub user: Option<String>,
    /// Connections served at once; more wait.
    #[arg(long, default_value_t = 16)]
    pub max_connections: usize,
    #[command(flatten)]
    pub maps: MapArgs,
}

const INDEX: &str = "<!doctype html><html><head><title>syscall-profiler</title></head><body>\
<h1>syscall-profiler</h1><p>Where processes' time at the kernel boundary goes: \
entry, handler, blocked, runqueue.</p><p><a href=\"/metrics\">/metrics</a></p></body></html>\n";

fn response(status: StatusCode, content_type: &str, body: String, head: bool) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { Bytes::from(body) }));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type).expect("ascii"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    response
}

/// Answers one request from the latest snapshot.
pub fn handle(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    body_length: u64,
    snapshot: &Snapshot,
) -> Response<Full<Bytes>> {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if body_length > 0 {
        return response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "no request bodies\n".into(),
            head,
        );
    }
    match path {
        "/metrics" => {
            let format = Format::negotiate(accept);
            response(
                StatusCode::OK,
                format.content_type(),
                metrics::encode(snapshot, format),
                head,
            )
        }
        "/" => response(StatusCode::OK, "text/html; charset=utf-8", INDEX.into(), head),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".into(),
            head,
        ),
    }
}

/// Switches to `user`, keeping CAP_BPF and CAP_PERFMON so the maps stay readable.
fn drop_privileges(user: &str) -> anyhow::Result<()> {
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let name = std::ffi::CString::new(user).context("user name")?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let (uid, gid) = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            bail!("no such user: {user}");
        }
        ((*entry).pw_uid, (*entry).pw_gid)
    };
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // Capabilities 32..63 live in the second word.
    let keep = (1u32 << (CAP_PERFMON - 32)) | (1u32 << (CAP_BPF - 32));
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    }; // _LINUX_CAPABILITY_VERSION_3
    let data = [
        CapData::default(),
        CapData {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
    ];
    // SAFETY: plain syscalls with valid arguments; failures are checked.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
            || libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
            || libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0
        {
            bail!("cannot switch to user {user}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !(args.interval > 0.0 && args.interval <= 3600.0) {
        bail!("--interval must be between 0 and 3600 seconds");
    }
    // Bind first: a port in use should not cost loading and calibrating.
    let listener = std::net::TcpListener::bind(args.listen).map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!("cannot listen on {}: address already in use", args.listen),
        _ => anyhow::anyhow!("cannot listen on {}: {err}", args.listen),
    })?;
    listener.set_nonblocking(true)?;
    let mut session = Session::start(Target::SystemWide, args.maps.sizes(), args.maps.sample_every)?;
    if let Some(user) = &args.user {
        drop_privileges(user)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let latest = Arc::new(RwLock::new(Arc::new(Snapshot::default())));
        tokio::spawn(accept_loop(listener, latest.clone(), args.max_connections));
        eprintln!("syscall-profiler: serving http://{}/metrics", args.listen);
        let mut grouper = Grouper::new(args.top_k as usize, Duration::from_secs(args.grace));
        let mut cgroups: HashMap<u32, String> = HashMap::new();
        let mut cgroup_paths = CgroupPaths::default();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
            }
            let read_started = Instant::now();
            session.poll()?;
            let map_read_seconds = read_started.elapsed().as_secs_f64();
            let totals = session.store.totals();
            if args.group_by == GroupBy::Cgroup {
                // The kernel side recorded each process's cgroup id, so processes that are
                // already gone still have their group (where cgroup2 is mounted; else
                // /proc/PID/cgroup while the process lives).
                for key in totals.keys() {
                    if let std::collections::hash_map::Entry::Vacant(entry) = cgroups.entry(key.tgid) {
                        let by_id = session.cgroup_ids.get(&key.tgid).and_then(|id| cgroup_paths.path(*id));
                        if let Some(path) = by_id.or_else(|| proc_cgroup(key.tgid)) {
                            entry.insert(path);
                        }
                    }
                }
            }
            let group_of = |pid: u32| -> String {
                match args.group_by {
                    GroupBy::None => String::new(),
                    GroupBy::Comm => session.store.comm(pid).unwrap_or("unknown").to_owned(),
                    GroupBy::Cgroup => cgroups.get(&pid).cloned().unwrap_or_else(|| "unknown".into()),
                }
            };
            let calibration = &session.calibration;
            let per_group = metrics::by_group(
                &totals,
                &group_of,
                calibration.boundary_ns_per_call,
                calibration.instrumentation_ns_per_call,
            );
            let mut series = grouper.update(per_group, started.elapsed().as_secs_f64());
            if args.group_by == GroupBy::None {
                // One group for the machine: no group label.
                series = series
                    .into_iter()
                    .map(|((_, syscall), totals)| ((None, syscall), totals))
                    .collect();
            }
            let overflow = session.overflow()?;
            let snapshot = Snapshot {
                series,
                me: SelfMetrics {
                    programs_attached: session.programs_attached() as u64,
                    map_fill: session.map_fill(),
                    overflow_drops: vec![
                        ("slot_collision".into(), overflow.slot_collisions),
                        ("stats_full".into(), overflow.stats_full),
                        ("errno_full".into(), overflow.errno_full),
                        ("process_full".into(), overflow.process_full),
                    ],
                    map_read_seconds,
                    boundary_seconds: calibration.boundary_ns_per_call / 1e9,
                    sample_every: session.sample_every,
                },
            };
            *latest.write().expect("no panics while holding it") = Arc::new(snapshot);
        }
        session.stop()?;
        Ok(())
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, latest: Arc<RwLock<Arc<Snapshot>>>, max_connections: usize) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let snapshot = latest.read().expect("no panics while holding it").clone();
                async move {
                    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
                    let body_length = request
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(0u64);
                    Ok::<_, Infallible>(handle(
                        request.method(),
                        request.uri().path(),
                        accept,
                        body_length,
                        &snapshot,
                    ))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(16 * 1024)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // A connection (keep-alive included) gets at most a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), connection).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        let status = response.status();
        let bytes = block_on(response.into_body().collect()).expect("infallible").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn only_get_and_head_on_known_paths() {
        let snapshot = Snapshot::default();
        let (status, text) = body(handle(&Method::GET, "/metrics", None, 0, &snapshot));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("syscall_profiler_build_info"), "{text}");
        let (status, text) = body(handle(&Method::HEAD, "/metrics", None, 0, &snapshot));
        assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
        let response = handle(&Method::POST, "/metrics", None, 0, &snapshot);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            handle(&Method::GET, "/nope", None, 0, &snapshot).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&Method::GET, "/metrics", None, 10, &snapshot).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let (status, text) = body(handle(&Method::GET, "/", None, 0, &snapshot));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("href=\"/metrics\""));
    }

    #[test]
    fn open_metrics_when_asked() {
        let snapshot = Snapshot::default();
        let response = handle(
            &Method::GET,
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
            0,
            &snapshot,
        );
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let (_, text) = body(response);
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
