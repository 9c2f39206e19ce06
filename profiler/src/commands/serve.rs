//! `syscall-profiler serve`: the measurements as a Prometheus scrape endpoint.
//!
//! The maps are read every `--interval` into one [`Snapshot`]; each scrape encodes the latest
//! snapshot ([`metrics::http`]), so a scrape is always consistent and never touches the
//! kernel. Optionally drops to an unprivileged user (keeping only `CAP_BPF` and `CAP_PERFMON`)
//! once the programs are attached.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Args;

use crate::{
    commands::{args::KernelArgs, privileges::drop_privileges},
    metrics::{self, http::accept_loop, GroupBy, Grouper, SelfMetrics, Snapshot},
    model::view,
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
    pub maps: KernelArgs,
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
            let processes = view::by_process(&totals, &calibration.charges);
            let per_group = metrics::by_group(&processes, &group_of);
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
                    overflow,
                    map_read_seconds,
                    boundary_seconds: calibration.charges.boundary_ns_per_call / 1e9,
                    sample_every: session.sample_every,
                },
            };
            *latest.write().expect("no panics while holding it") = Arc::new(snapshot);
        }
        session.stop()?;
        Ok(())
    })
}
