//! `syscall-profiler report`: profile for a while, a set of processes, or a command and its
//! descendants, then print the report as text or JSON.
use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsString,
    fs::File,
    io::{self, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant, SystemTime},
};

use clap::{Args, ValueEnum};

use crate::{
    commands::{
        args::{parse_duration, positive_seconds, BoundaryArgs, KernelArgs},
        stop::{Stop, StopSignals},
        write_file,
    },
    kernel::WaitRecording,
    model::{
        group::group,
        names::{decode_nr, syscall_name},
        seccomp::seccomp_profile,
        split::waits_by_name,
        thread_rows::{thread_reports, ThreadReport},
        threads::{returned_since_start, Hang, InSyscall},
        totals::ProcessTotals,
        view,
    },
    report::{
        self,
        html::render_report_html,
        text::{render_text, TextOptions},
        AgentCost, CommandExit, SortBy,
    },
    session::{
        cgroups::cgroup2_mount, containers::CgroupLabels, host::read_host, in_flight::read_hangs, monotonic_ns,
        own_cpu_ns, priority::RaisedPriority, Session, SessionError, Target,
    },
};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What a report's rows are.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per process.
    Pid,
    /// One row per process name: the processes of each name added up.
    Comm,
    /// One row per cgroup (v2) path: a container, a service.
    Cgroup,
    /// One row per container, named from its runtime's state (`docker:web`,
    /// `k8s:namespace/pod/container`); processes outside containers by cgroup path.
    Container,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// How long to profile, in seconds (ignored with a COMMAND, which is profiled until it exits).
    #[arg(long, default_value_t = 10.0, value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: f64,
    /// Profile only this process (repeatable); stops early when all of them have exited.
    #[arg(long = "pid", value_name = "PID", conflicts_with = "command")]
    pub pids: Vec<u32>,
    /// With --pid: also the processes they start while profiling (and theirs).
    #[arg(long, requires = "pids")]
    pub children: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page (no network needed to open it).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also save the report as a snapshot (its JSON) for `syscall-profiler diff`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Processes shown in the text report.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Syscalls shown per process in the text report.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Rows per process, or per name or cgroup with their processes added up.
    #[arg(long, value_enum, default_value_t = GroupBy::Pid)]
    pub group_by: GroupBy,
    /// Where the host's root is (an agent in a container with the host's `/` mounted
    /// elsewhere): container runtimes' state is read under it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// What ranks the rows: the time that holds work up (waits by design last), total time,
    /// calls or errors.
    #[arg(long, value_enum, default_value_t = SortBy::Active)]
    pub sort: SortBy,
    /// Also rows per thread under each process: each thread's calls, errors and time off
    /// the CPU counted apart (costs a table lookup per call; handler time is estimated from
    /// its process's).
    #[arg(long)]
    pub threads: bool,
    /// Threads inside one call for longer than this (seconds) at the end are listed, with
    /// what they wait on.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub hang_threshold: f64,
    #[command(flatten)]
    pub maps: KernelArgs,
    #[command(flatten)]
    pub boundary: BoundaryArgs,
    /// With a COMMAND: also write to FILE a seccomp profile (OCI runtime-spec format, for
    /// runc, crun, `docker run --security-opt seccomp=FILE`) that allows exactly the syscalls
    /// the command and its descendants made; refused if any call was not counted.
    #[arg(long, value_name = "FILE", requires = "command")]
    pub seccomp: Option<PathBuf>,
    /// Run this command and profile it and all its descendants until it exits.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Profiles and writes the report; returns the exit code: the command's (`-- COMMAND`), else 0.
pub fn run(args: ReportArgs) -> anyhow::Result<i32> {
    // Open the output first: a typo in the path should not cost a whole profiling run.
    let mut output: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?)
        }
        None => Box::new(io::stdout()),
    };
    // A typo in a path should not cost a run either (nothing is written yet: a refused
    // profile leaves no file).
    for path in [&args.seccomp, &args.html, &args.save].into_iter().flatten() {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            anyhow::bail!("cannot write {}: {} is not a directory", path.display(), dir.display());
        }
    }
    let target = if !args.command.is_empty() {
        Target::Command(args.command.clone())
    } else if !args.pids.is_empty() {
        Target::Pids {
            pids: args.pids.clone(),
            children: args.children,
        }
    } else {
        Target::SystemWide
    };
    if matches!(args.group_by, GroupBy::Cgroup | GroupBy::Container) && cgroup2_mount().is_none() {
        // Every process would land in one unknown group.
        anyhow::bail!("--group-by: this host has no cgroup v2 hierarchy mounted (cgroup v1 only)");
    }
    let scope = match target {
        Target::SystemWide => "system-wide",
        Target::Pids { .. } => "pids",
        Target::Command(_) => "command",
    };
    let launched = (Instant::now(), own_cpu_ns());
    // The whole run: a report is awaited (see `session::priority`).
    let _raised = RaisedPriority::raise();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let Profiled {
        mut session,
        totals,
        command_status,
        hangs,
        returned,
        agent_cost,
    } = runtime.block_on(profile(target, &args, launched))?;
    // When profiling began: on a loaded machine start-up alone takes seconds or minutes.
    let started = SystemTime::now() - Duration::from_nanos(session.elapsed_ns());
    let (wait_sites, wait_sites_lost) = session.waits(None, &|pid| totals.name(pid).map(str::to_owned))?;
    let command_exit = command_status.and_then(|status| match (status.code(), status.signal()) {
        (Some(code), _) => Some(CommandExit::Code(code)),
        (None, Some(signal)) => Some(CommandExit::Signal(signal)),
        _ => None,
    });
    let comm = |pid: u32| totals.name(pid).unwrap_or("?").to_owned();
    let grouped = match args.group_by {
        GroupBy::Pid => None,
        GroupBy::Comm => Some(group(totals.totals(), &wait_sites, &comm)),
        GroupBy::Cgroup | GroupBy::Container => {
            let mut labels = CgroupLabels::new(&args.host_root);
            let by_pid: HashMap<u32, String> = totals
                .totals()
                .keys()
                .map(|key| key.tgid)
                .map(|pid| {
                    let id = totals.cgroup(pid).unwrap_or(0);
                    (pid, labels.label(id, args.group_by == GroupBy::Container))
                })
                .collect();
            Some(group(totals.totals(), &wait_sites, &|pid| by_pid[&pid].clone()))
        }
    };
    let (rows, wait_sites) = match &grouped {
        Some(grouped) => (&grouped.totals, &grouped.waits),
        None => (totals.totals(), &wait_sites),
    };
    let processes = view::by_process(rows, &session.calibration.charges);
    let threads = match args.threads {
        true => {
            let (rows, renamed) = session.thread_rows()?;
            let mut threads = thread_reports(&rows, &renamed, totals.totals(), &session.calibration.charges);
            if let Some(grouped) = &grouped {
                // Under the row of the group each process is in.
                let mut by_group: BTreeMap<u32, Vec<ThreadReport>> = BTreeMap::new();
                for (first, (_, pids)) in &grouped.groups {
                    let members = by_group.entry(*first).or_default();
                    for pid in pids {
                        members.extend(threads.remove(pid).unwrap_or_default());
                    }
                    members.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.tid.cmp(&b.tid)));
                }
                threads = by_group;
            }
            Some((threads, session.threads_lost()))
        }
        false => None,
    };
    let report = report::build(&report::Inputs {
        host: read_host(started),
        processes: &processes,
        sort: args.sort,
        groups: grouped.as_ref().map(|grouped| &grouped.groups),
        comm: &comm,
        duration_ns: session.elapsed_ns(),
        charges: session.calibration.charges,
        scope,
        sample_every: session.sample_every,
        command_exit,
        overflow: session.overflow(),
        in_flight_total: hangs.len(),
        in_flight: read_hangs(&hangs[..hangs.len().min(report::HANGS_LISTED)]),
        returned,
        wait_sites,
        wait_sites_lost,
        threads: threads.as_ref().map(|(threads, lost)| (threads, *lost)),
        hang_threshold_ns: hang_threshold_ns(&args),
        agent_cost,
    });
    let written = match args.format {
        Format::Json => write_json(&mut output, &report),
        Format::Text => output.write_all(
            render_text(
                &report,
                &TextOptions {
                    processes: args.limit,
                    syscalls: args.top,
                },
            )
            .as_bytes(),
        ),
    };
    written.and_then(|()| output.flush()).map_err(|e| match &args.output {
        Some(path) => anyhow::anyhow!("cannot write {}: {e}", path.display()),
        None => anyhow::anyhow!("cannot write the report: {e}"),
    })?;
    if let Some(path) = &args.save {
        File::create(path)
            .and_then(|mut file| write_json(&mut file, &report))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.html {
        write_file(path, &render_report_html(&report))?;
    }
    if let Some(path) = &args.seccomp {
        write_seccomp_profile(path, &session, &totals)?;
    }
    Ok(command_exit.map_or(0, CommandExit::code))
}

/// Writes `value` as pretty JSON and a newline, as it is encoded: a report of a busy machine
/// is megabytes of text (9 MB beside 1,000 processes), which as one string raised the agent's
/// peak memory by twice that (the string doubling as it grew).
fn write_json(output: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    let mut output = io::BufWriter::with_capacity(64 << 10, output);
    serde_json::to_writer_pretty(&mut output, value)?;
    output.write_all(b"\n")?;
    output.flush()
}

/// Writes the seccomp profile of every syscall counted, unless a call went uncounted.
fn write_seccomp_profile(path: &Path, session: &Session, totals: &ProcessTotals) -> anyhow::Result<()> {
    let overflow = session.overflow();
    if overflow.any() {
        let lost: Vec<String> = overflow
            .by_name()
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| format!("{count} {name}"))
            .collect();
        anyhow::bail!(
            "--seccomp: {} not written: calls went uncounted ({}), so the profile could miss one the command needs; rerun with larger tables (--max-threads, --max-syscalls, --max-processes)",
            path.display(),
            lost.join(", ")
        );
    }
    let profile = seccomp_profile(totals.totals().keys().map(|key| decode_nr(key.nr)))
        .map_err(|reason| anyhow::anyhow!("--seccomp: {} not written: {reason}", path.display()))?;
    write_file(path, &(serde_json::to_string_pretty(&profile)? + "\n"))
}

/// Measures until the duration ends, the command exits, the pids are gone, or a signal: SIGINT
/// (with a command, the second one: the command got the first as well, from the terminal, and
/// is given the chance to exit) or SIGTERM (a command gets it too).
/// What a profiling run leaves for the report: the totals, how the command ended, the
/// threads in a long call at the end, and the hangs of the start that returned meanwhile.
struct Profiled {
    session: Session,
    totals: ProcessTotals,
    command_status: Option<ExitStatus>,
    hangs: Vec<InSyscall>,
    returned: Vec<Hang>,
    agent_cost: AgentCost,
}

/// `launched`: when the profiler started, and the CPU time it had used then.
async fn profile(target: Target, args: &ReportArgs, launched: (Instant, u64)) -> anyhow::Result<Profiled> {
    let mut stop = StopSignals::install()?;
    let mut sizes = args.maps.sizes();
    if args.threads {
        sizes.thread_rows = THREAD_ROWS;
    }
    let mut session = Session::start(target, sizes, args.maps.sample_every, args.boundary.boundary_ns)?;
    session.record_wait_sites(WaitRecording::Sampled)?;
    let started = Instant::now();
    let profiling_from = (started, own_cpu_ns());
    let threshold_ns = hang_threshold_ns(args);
    let system_wide = session.target == Target::SystemWide;
    // Read now: a hang that ends during the report would be counted, not listed.
    let mut asleep_at_start = session.asleep_in_syscalls(threshold_ns);
    asleep_at_start.retain(|thread| !made_to_wait(thread, system_wide));
    asleep_at_start.truncate(report::HANGS_LISTED);
    let hangs_at_start = read_hangs(&asleep_at_start);
    let mut totals = ProcessTotals::default();
    let next_read = tokio::time::sleep(READ_INTERVAL);
    tokio::pin!(next_read);
    let mut fill_alarm = session.fill_alarm()?;
    let deadline = tokio::time::sleep(Duration::from_secs_f64(args.duration));
    tokio::pin!(deadline);
    let next_file_naming = tokio::time::sleep(NAME_FILES_EVERY);
    tokio::pin!(next_file_naming);
    let next_waker_naming = tokio::time::sleep(LOOK_EVERY);
    tokio::pin!(next_waker_naming);
    let mut looks = tokio::time::interval(LOOK_EVERY);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut command_status = None;
    let mut interrupts = 0;
    loop {
        let has_child = session.child.is_some();
        tokio::select! {
            _ = &mut next_file_naming => {
                // Reading a table walks all of it in the kernel: a large one less often.
                let every = if session.name_new_files()? > NAME_OFTEN_UP_TO { LOOK_EVERY } else { NAME_FILES_EVERY };
                next_file_naming.as_mut().reset(tokio::time::Instant::now() + every);
            }
            _ = &mut next_waker_naming => {
                let every = if session.name_new_wakers()? > NAME_OFTEN_UP_TO { READ_INTERVAL } else { LOOK_EVERY };
                next_waker_naming.as_mut().reset(tokio::time::Instant::now() + every);
            }
            _ = looks.tick() => {
                if session.targets_gone() {
                    break;
                }
            }
            raised = fill_alarm.raised() => {
                raised.map_err(SessionError::FillAlarm)?;
                next_read.as_mut().reset(tokio::time::Instant::now());
            }
            _ = &mut next_read => {
                totals.apply(&session.poll()?, session.elapsed_ns() as f64 / 1e9);
                next_read.as_mut().reset(tokio::time::Instant::now() + session.next_read_in(READ_INTERVAL));
            }
            _ = &mut deadline, if !has_child => break,
            status = async { session.child.as_mut().expect("has_child").wait().await }, if has_child => {
                command_status = Some(status?);
                session.child = None;
                break;
            }
            signal = stop.recv() => {
                interrupts += 1;
                if signal == Stop::Terminate {
                    if let Some(child) = session.child.as_mut() {
                        command_status = terminate(child).await;
                        session.child = None;
                    }
                    break;
                }
                if !has_child || interrupts > 1 {
                    break;
                }
            }
        }
    }
    // A read first, while the end of its window is the end of the command (or of the
    // duration): a read's window is what bounds sampling's estimate (model::bound), and what
    // follows - reading /proc for hangs, detaching - can take tens of milliseconds on a busy
    // machine, which let a one-thread reader's sampled time come out 2% past its wall time.
    totals.apply(&session.poll()?, session.elapsed_ns() as f64 / 1e9);
    session.name_waits()?;
    let agent_cost = AgentCost {
        startup_ns: profiling_from.0.duration_since(launched.0).as_nanos() as u64,
        startup_cpu_ns: profiling_from.1.saturating_sub(launched.1),
        profiling_ns: profiling_from.0.elapsed().as_nanos() as u64,
        profiling_cpu_ns: own_cpu_ns().saturating_sub(profiling_from.1),
    };
    // Before the programs are detached: the kernel side knows when each call began.
    let mut hangs = session.threads_in_syscalls(monotonic_ns(), started, Some(threshold_ns));
    let returned = returned_since_start(hangs_at_start, &mut hangs, &call_name);
    hangs.retain(|thread| thread.elapsed_ns >= threshold_ns && !made_to_wait(thread, system_wide));
    hangs.sort_by(|a, b| b.elapsed_ns.cmp(&a.elapsed_ns).then(a.tid.cmp(&b.tid)));
    totals.apply(&session.stop()?, session.elapsed_ns() as f64 / 1e9);
    Ok(Profiled {
        session,
        totals,
        command_status,
        hangs,
        returned,
        agent_cost,
    })
}

/// Machine-wide, every idle event loop, timer and parent would be listed: not hangs.
fn made_to_wait(thread: &InSyscall, system_wide: bool) -> bool {
    system_wide && waits_by_name(&call_name(thread)).is_some()
}

fn call_name(thread: &InSyscall) -> String {
    let (abi, nr) = decode_nr(thread.nr);
    syscall_name(abi, nr).into_owned()
}

fn hang_threshold_ns(args: &ReportArgs) -> u64 {
    (args.hang_threshold * 1e9) as u64
}

/// Rows of the per-thread table (`--threads`): one per (thread, syscall).
const THREAD_ROWS: u32 = 32_768;

/// How often a report reads the tables: sooner while processes that come and go fill them
/// (the fill alarm, and [`Session::next_read_in`]). Nothing in a report needs the tables read
/// more often - what each slot gained adds up the same whatever the reads - and a read's cost
/// goes with the slots that made calls since the last one: beside 1,000 busy processes, all
/// of ~6,000 at every read. Often enough that no 32-bit bucket gains 2^32 between reads
/// (minutes of the fastest calls on every CPU).
const READ_INTERVAL: Duration = Duration::from_secs(5);
/// How often a report looks whether the `--pid` targets have exited (to stop early: a read
/// follows at the end), and names the processes that woke blocked calls while the wait-site
/// table has at most [`NAME_OFTEN_UP_TO`] entries (above, every [`READ_INTERVAL`]: reading
/// it walks the whole table).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How often a report reads what the descriptors blocked calls waited on refer to (only
/// while a process lives can they be read), while there are at most [`NAME_OFTEN_UP_TO`]
/// of them; above, every [`LOOK_EVERY`].
const NAME_FILES_EVERY: Duration = Duration::from_millis(200);
const NAME_OFTEN_UP_TO: usize = 512;

/// Passes SIGTERM on to the command and gives it half a second to exit; how it ended, if it
/// did by then.
async fn terminate(child: &mut tokio::process::Child) -> Option<ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    }
}
