//! `syscall-profiler serve`: the measurements as a Prometheus scrape endpoint.
//!
//! The maps are read every `--interval` into one [`Snapshot`]; each scrape encodes the latest
//! snapshot ([`metrics::http`]), so a scrape is always consistent and never touches the
//! kernel. Once the programs are attached it drops every capability ([`privileges`]), and
//! with `--user` runs as another user.
//!
//! [`privileges`]: crate::commands::privileges
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use clap::Args;

use crate::{
    commands::{
        args::{interval_seconds, KernelArgs},
        privileges::{drop_privileges, other_processes_of, resolve_user},
        stop::StopSignals,
    },
    metrics::{
        self,
        http::{self, Exposition},
        GroupBy, Grouper, SelfMetrics, Snapshot,
    },
    model::view,
    session::{
        cgroups::{proc_cgroup, CgroupPaths},
        Session, SessionError, Target,
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
    #[arg(long, default_value_t = 1.0, value_parser = interval_seconds)]
    pub interval: f64,
    /// After attaching, run as this user (a name, or a uid that need not exist in the password
    /// database). Use one of its own: any process of the same user could signal the agent.
    /// With or without it, every capability is dropped once the programs are attached.
    #[arg(long, value_name = "NAME|UID")]
    pub user: Option<String>,
    /// Connections open at once; a new one closes the oldest.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
    #[command(flatten)]
    pub maps: KernelArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Bind first: a port in use should not cost loading and calibrating.
    let listener = std::net::TcpListener::bind(args.listen).map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!("cannot listen on {}: address already in use", args.listen),
        _ => anyhow::anyhow!("cannot listen on {}: {err}", args.listen),
    })?;
    listener.set_nonblocking(true)?;
    let identity = args.user.as_deref().map(resolve_user).transpose()?;
    let mut session = Session::start(Target::SystemWide, args.maps.sizes(), args.maps.sample_every)?;
    drop_privileges(identity)?;
    if let Some(identity) = identity {
        let others = other_processes_of(identity.uid);
        if others > 0 {
            eprintln!(
                "syscall-profiler: warning: {others} other processes run as uid {}: they can signal the agent (give it a user of its own)",
                identity.uid
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let latest = Arc::new(RwLock::new(Arc::new(Exposition::default())));
        tokio::spawn(http::serve(listener, latest.clone(), args.max_connections as usize));
        eprintln!("syscall-profiler: serving http://{}/metrics", args.listen);
        let mut exporter = Exporter {
            group_by: args.group_by,
            grouper: Grouper::new(args.top_k as usize, Duration::from_secs(args.grace)),
            cgroups: HashMap::new(),
            cgroup_paths: CgroupPaths::default(),
            started: Instant::now(),
        };
        let mut stop = StopSignals::install()?;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.recv() => break,
            }
            let read_started = Instant::now();
            session.poll()?;
            let snapshot = exporter.snapshot(&session, read_started.elapsed().as_secs_f64())?;
            let exposition = Exposition::new(&snapshot);
            *latest.write().expect("no panics while holding it") = Arc::new(exposition);
        }
        session.stop()?;
        Ok(())
    })
}

/// Turns the session's totals into the snapshot that scrapes are answered from: each process's
/// group (`--group-by`), the top-K grouping, the profiler's own health.
struct Exporter {
    group_by: GroupBy,
    grouper: Grouper,
    /// cgroup path of each process seen (`--group-by cgroup`).
    cgroups: HashMap<u32, String>,
    cgroup_paths: CgroupPaths,
    started: Instant,
}

impl Exporter {
    fn snapshot(&mut self, session: &Session, map_read_seconds: f64) -> Result<Snapshot, SessionError> {
        let totals = session.store.totals();
        if self.group_by == GroupBy::Cgroup {
            for key in totals.keys() {
                self.learn_cgroup(session, key.tgid);
            }
        }
        let group_of = |pid: u32| -> String {
            match self.group_by {
                GroupBy::None => String::new(),
                GroupBy::Comm => session.store.comm(pid).unwrap_or("unknown").to_owned(),
                GroupBy::Cgroup => self.cgroups.get(&pid).cloned().unwrap_or_else(|| "unknown".into()),
            }
        };
        let charges = &session.calibration.charges;
        let per_group = metrics::by_group(&view::by_process(&totals, charges), &group_of);
        let mut series = self.grouper.update(per_group, self.started.elapsed().as_secs_f64());
        if self.group_by == GroupBy::None {
            // One group for the machine: no group label.
            series = series
                .into_iter()
                .map(|((_, syscall), totals)| ((None, syscall), totals))
                .collect();
        }
        Ok(Snapshot {
            series,
            me: SelfMetrics {
                programs_attached: session.programs_attached() as u64,
                map_fill: session.map_fill(),
                overflow: session.overflow()?,
                map_read_seconds,
                boundary_seconds: charges.boundary_ns_per_call / 1e9,
                sample_every: session.sample_every,
            },
        })
    }

    /// The kernel side recorded each process's cgroup id, so processes that are already gone
    /// still have their group (where cgroup2 is mounted; else `/proc/PID/cgroup` while the
    /// process lives).
    fn learn_cgroup(&mut self, session: &Session, pid: u32) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.cgroups.entry(pid) {
            let by_id = session.cgroup_ids.get(&pid).and_then(|id| self.cgroup_paths.path(*id));
            if let Some(path) = by_id.or_else(|| proc_cgroup(pid)) {
                entry.insert(path);
            }
        }
    }
}
