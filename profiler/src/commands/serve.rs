//! `syscall-profiler serve`: the measurements as a Prometheus scrape endpoint.
//!
//! The maps are read when scraped, at most once an `--interval` (a scrape within an interval
//! of the last read is answered from it), and every [`UNSCRAPED_READ_EVERY`] when nobody
//! scrapes, sooner when a table fills fast: the agent's cost follows the scrapes (Prometheus
//! scrapes every 15 s or more), not a clock of its own. Each read makes one [`Snapshot`];
//! each scrape encodes the latest ([`metrics::http`]), so a scrape is always consistent and
//! never touches the kernel itself. Once the programs are attached it drops every capability
//! ([`privileges`]), and with `--user` runs as another user.
//!
//! [`privileges`]: crate::commands::privileges
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use tokio::sync::{watch, Notify};

use crate::{
    commands::{
        args::{interval_seconds, BoundaryArgs, KernelArgs, RefreshArgs},
        privileges::{drop_privileges, other_processes_of, resolve_user},
        stop::StopSignals,
    },
    metrics::{
        http::{self, Exposition, Latest},
        Exported, GroupBy, Limits, SelfMetrics, Snapshot,
    },
    model::store::{Delta, Update},
    session::{containers::CgroupLabels, own_cpu_ns, own_resident_bytes, Session, SessionError, Target},
};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to serve /metrics on. Loopback by default: exposing it is a choice to make.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Label series by process name, cgroup, container, or not at all.
    #[arg(long, value_enum, default_value_t = GroupBy::Comm)]
    pub group_by: GroupBy,
    /// Where the host's root is (an agent in a container with the host's `/` mounted
    /// elsewhere): container runtimes' state is read under it. Once privileges are dropped,
    /// state only root can read (Docker's) is not: such containers show their short id.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// Groups with series of their own: the most active by syscall time, once active for
    /// 10 s; everything else is added into `group="other"`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub top_k: u64,
    /// Syscalls with series of their own in each group; the rest are `syscall="other"`.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub top_syscalls: u64,
    /// Syscalls with a latency histogram of their own (for the machine: the histogram has no
    /// group label); the rest are `syscall="other"`.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub latency_syscalls: u64,
    /// Seconds a group or syscall may stay idle before its series go away.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub grace: u64,
    /// How old, in seconds, the figures a scrape gets may be: a scrape later than that after
    /// the last read of the tables has them read first (they are read every 15 s when nobody
    /// scrapes, and sooner while processes that come and go fill them).
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
    #[command(flatten)]
    pub boundary: BoundaryArgs,
    #[command(flatten)]
    pub refresh: RefreshArgs,
}

/// How often the tables are read when nobody scrapes (or `--interval`, if longer): what
/// final slots hold is taken in and freed, the exported groups age, and a 32-bit bucket never
/// gains 2^32 between reads. A table that fills fast is read at once whatever this is.
const UNSCRAPED_READ_EVERY: Duration = Duration::from_secs(15);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Bind first: a port in use should not cost loading and calibrating.
    let listener = std::net::TcpListener::bind(args.listen).map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!("cannot listen on {}: address already in use", args.listen),
        _ => anyhow::anyhow!("cannot listen on {}: {err}", args.listen),
    })?;
    listener.set_nonblocking(true)?;
    let identity = args.user.as_deref().map(resolve_user).transpose()?;
    let mut session = Session::start(
        Target::SystemWide,
        args.maps.sizes(),
        args.maps.sample_every,
        args.boundary.boundary_ns,
    )?;
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
        let interval = Duration::from_secs_f64(args.interval);
        let (publish, exposition) = watch::channel(Arc::new(Exposition::default()));
        let wanted = Arc::new(Notify::new());
        let latest = Latest::new(exposition, wanted.clone(), interval);
        tokio::spawn(http::serve(listener, latest, args.max_connections as usize));
        eprintln!("syscall-profiler: serving http://{}/metrics", args.listen);
        let limits = Limits {
            top_groups: args.top_k as usize,
            top_syscalls: args.top_syscalls as usize,
            latency_syscalls: args.latency_syscalls as usize,
            grace_secs: args.grace as f64,
        };
        let mut exporter = Exporter {
            exported: Exported::new(args.group_by, limits),
            group_by: args.group_by,
            cgroups: CgroupLabels::new(&args.host_root),
            started: Instant::now(),
            map_read_seconds: 0.0,
            reads: 0,
        };
        let unscraped = interval.max(UNSCRAPED_READ_EVERY);
        let mut stop = StopSignals::install()?;
        let next_read = tokio::time::sleep(unscraped);
        tokio::pin!(next_read);
        let mut fill_alarm = session.fill_alarm()?;
        let mut published_at: Option<tokio::time::Instant> = None;
        // The boundary refresh keeps a clock of its own, not the scrapes': measuring while a
        // scraper (or whatever it scrapes for) has just woken would measure that too.
        let refresh_every = args.refresh.every();
        // (Without refreshes the timer is never polled.)
        let next_refresh = tokio::time::sleep(refresh_every.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(next_refresh);
        loop {
            let (scraped, refresh) = tokio::select! {
                _ = &mut next_read => (false, false),
                _ = wanted.notified() => (true, false),
                _ = &mut next_refresh, if refresh_every.is_some() => (false, true),
                raised = fill_alarm.raised() => {
                    raised.map_err(SessionError::FillAlarm)?;
                    (false, false)
                }
                _ = stop.recv() => break,
            };
            exporter.read(&mut session)?;
            let now = tokio::time::Instant::now();
            // A scrape waits for this one; otherwise (a fill alarm, a table over half full
            // read every 100 ms) one snapshot an interval is enough.
            if scraped || published_at.is_none_or(|at| now >= at + interval) {
                published_at = Some(now);
                publish.send_replace(Arc::new(Exposition::new(exporter.snapshot(&session))));
            }
            if let (true, Some(every)) = (refresh, refresh_every) {
                // Right after a read: the calls read so far were charged the old figure.
                session.refresh_boundary();
                next_refresh.as_mut().reset(tokio::time::Instant::now() + every);
            }
            next_read
                .as_mut()
                .reset(tokio::time::Instant::now() + session.next_read_in(unscraped));
        }
        let last = session.stop()?;
        exporter.take(&session, &last);
        Ok(())
    })
}

/// Turns what each read of the tables brings into the exported series: each call's group
/// (`--group-by`, from the name or cgroup its process had when it made it) and the series
/// budget; and the profiler's own health.
struct Exporter {
    exported: Exported,
    group_by: GroupBy,
    cgroups: CgroupLabels,
    started: Instant,
    /// How long the last read took.
    map_read_seconds: f64,
    /// Reads of the tables so far.
    reads: u64,
}

impl Exporter {
    fn read(&mut self, session: &mut Session) -> Result<(), SessionError> {
        let started = Instant::now();
        let update = session.poll()?;
        self.map_read_seconds = started.elapsed().as_secs_f64();
        self.reads += 1;
        self.take(session, &update);
        Ok(())
    }

    fn take(&mut self, session: &Session, update: &Update) {
        let now = self.started.elapsed().as_secs_f64();
        let (group_by, cgroups) = (self.group_by, &mut self.cgroups);
        let mut group_of = |delta: &Delta| match group_by {
            GroupBy::Cgroup | GroupBy::Container => cgroups.label(delta.cgroup_id, group_by == GroupBy::Container),
            _ if delta.comm.is_empty() => "unknown".into(),
            _ => delta.comm.text(),
        };
        self.exported
            .apply(&update.deltas, &mut group_of, &session.calibration.charges, now);
    }

    fn snapshot(&self, session: &Session) -> Snapshot {
        let (counters, latency) = self.exported.series();
        Snapshot {
            counters,
            latency,
            me: SelfMetrics {
                programs_attached: session.programs_attached() as u64,
                map_fill: session.map_fill(),
                overflow: session.overflow(),
                map_read_seconds: self.map_read_seconds,
                map_reads: self.reads,
                boundary_seconds: session.calibration.charges.boundary_ns_per_call / 1e9,
                boundary_spread_seconds: session.calibration.charges.boundary_spread_ns / 1e9,
                boundary_refreshes: session.calibration.refreshes,
                boundary_refreshes_too_busy: session.calibration.refreshes_too_busy,
                sample_every: session.sample_every,
                groups_tracked: self.exported.groups_tracked(),
                cpu_seconds: own_cpu_ns() as f64 / 1e9,
                resident_bytes: own_resident_bytes(),
            },
        }
    }
}
