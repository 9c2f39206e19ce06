//! `syscall-top`: the live view. Which processes are hammering the kernel right now, and is
//! it boundary cost, handler work, blocking or CPU contention?
//!
//! The refresh loop: polls the session every interval into the [`App`] (state and keys),
//! which [`ui`] draws on the terminal [`TerminalGuard`] holds.
use std::{
    collections::BTreeMap,
    io::{self, IsTerminal},
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Args;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};

use crate::{
    commands::{
        args::{interval_seconds, positive_seconds, BoundaryArgs, KernelArgs, RefreshArgs},
        stop::stop_flag,
    },
    kernel::WaitRecording,
    model::totals::ProcessTotals,
    session::{monotonic_ns, priority::RaisedPriority, procfs::read_comm, Session, Target},
    top::{
        app::{App, Event, Update, View},
        terminal::{restore_terminal, TerminalGuard},
        ui,
    },
};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Seconds between refreshes; rates are over the last interval.
    #[arg(long, default_value_t = 1.0, value_parser = interval_seconds)]
    pub interval: f64,
    /// Start filtered to this process id.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Start filtered to process names containing this.
    #[arg(long)]
    pub comm: Option<String>,
    /// The stuck view lists threads inside one syscall for longer than this (seconds).
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub stuck_threshold: f64,
    #[command(flatten)]
    pub maps: KernelArgs,
    #[command(flatten)]
    pub boundary: BoundaryArgs,
    #[command(flatten)]
    pub refresh: RefreshArgs,
}

/// A process gone and quiet this long leaves the view.
const FORGET_AFTER_SECONDS: f64 = 60.0;

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    if !io::stdout().is_terminal() {
        bail!("syscall-top needs a terminal; for output to a file or pipe use `syscall-profiler report`");
    }
    // The whole run: the view is watched (see `session::priority`).
    let _raised = RaisedPriority::raise();
    // Loading and calibrating first: their errors print as plain lines.
    let mut session = Session::start(
        Target::SystemWide,
        args.maps.sizes(),
        args.maps.sample_every,
        args.boundary.boundary_ns,
    )?;
    let filter = args
        .comm
        .clone()
        .or(args.pid.map(|pid| pid.to_string()))
        .unwrap_or_default();
    let mut app = App::new((args.stuck_threshold * 1e9) as u64, filter);
    let stop = stop_flag()?;
    exit_when_stuck_after(stop.clone());
    let tty = Tty::open();
    let mut guard = TerminalGuard::enter()?;
    let interval = Duration::from_secs_f64(args.interval);
    let started = Instant::now();
    let mut last_refresh = Instant::now();
    let mut next_refresh = Instant::now() + interval;
    let mut next_read = next_refresh;
    let boundary_every = args.refresh.every();
    let mut next_boundary = boundary_every.map(|every| Instant::now() + every);
    let mut totals = ProcessTotals::default();
    let mut terminal_gone = false;
    // The process whose view is open: its blocked calls' wait sites are recorded, every one.
    let mut recording: Option<u32> = None;
    while !app.quit && !stop.load(Ordering::Relaxed) {
        guard.terminal.draw(|frame| ui::render(frame, &app))?;
        // Wake up at least every 100 ms to see a stop signal.
        let timeout = next_read
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        // Wait on the terminal ourselves: input, a hang-up, a signal (a resize, a stop) or
        // the timeout; then take what crossterm has without waiting in it.
        if tty.wait(timeout) == Readiness::HungUp {
            // The terminal is gone (closed window, killed session): nothing to show or
            // restore, and crossterm would spin reading its end of file inside `poll`.
            terminal_gone = true;
            break;
        }
        let mut had_event = false;
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => app.on_event(Event::Key(key)),
                TermEvent::Resize(_, _) => app.on_event(Event::Resize),
                _ => {}
            }
            had_event = true;
        }
        if had_event {
            continue;
        }
        let now = Instant::now();
        if now < next_read && !session.filling_fast() {
            continue;
        }
        let seconds = started.elapsed().as_secs_f64();
        totals.apply(&session.poll()?, seconds);
        if let (Some(every), Some(due)) = (boundary_every, next_boundary) {
            if now >= due {
                session.refresh_boundary();
                next_boundary = Some(now + every);
            }
        }
        // Processes gone and quiet for a while leave the view (and the memory).
        totals.forget_unseen_since(seconds - FORGET_AFTER_SECONDS);
        next_read = now + session.next_read_in(interval);
        // The view refreshes on a read (rates are over the reads they span), every interval.
        if now < next_refresh {
            continue;
        }
        next_refresh = now + interval;
        // The name the kernel side has (current: a rename starts a new epoch under the new
        // name), else /proc's, for a process with no call counted yet.
        let comm = |pid: u32| {
            totals
                .name(pid)
                .map(str::to_owned)
                .or_else(|| read_comm(pid))
                .unwrap_or_else(|| pid.to_string())
        };
        let viewed = match app.view {
            View::Syscalls { pid } => Some(pid),
            _ => None,
        };
        if viewed != recording {
            session.clear_wait_sites()?;
            session.record_wait_sites(viewed.map_or(WaitRecording::Off, WaitRecording::Process))?;
            recording = viewed;
        }
        let waits = match recording {
            Some(pid) => session.waits(Some(pid), &|pid| totals.name(pid).map(str::to_owned))?.0,
            None => BTreeMap::new(),
        };
        app.update(&Update {
            totals: totals.totals(),
            comm: &comm,
            interval_secs: now.duration_since(last_refresh).as_secs_f64(),
            since_start_secs: started.elapsed().as_secs_f64(),
            charges: session.calibration.charges,
            overhead_ns_per_call: session.calibration.overhead_ns_per_call,
            sample_every: session.sample_every,
            lost_events: session.overflow().total(),
            // Every refresh: the rates spread long calls over the intervals they lasted.
            in_flight: session.threads_in_syscalls(
                monotonic_ns(),
                started,
                (app.view == View::Stuck).then_some(app.stuck_threshold_ns),
            ),
            waits,
        });
        last_refresh = now;
    }
    if terminal_gone {
        // Restoring a terminal that has gone fails, and ratatui reports the failure on
        // stderr, which has gone too: that panics. Nothing to restore.
        std::mem::forget(guard);
    } else {
        drop(guard);
    }
    Ok(())
}

/// The terminal `syscall-top` reads keys from, waited on here rather than in crossterm: once
/// the terminal has hung up, crossterm's `event::poll` spins for ever reading end-of-file,
/// never returning, even with a timeout (crossterm issue #793, unfixed in 0.29). That left
/// orphaned views burning 40% of a CPU each, their programs attached, for hours.
struct Tty {
    /// `/dev/tty` (the controlling terminal, whatever stdin is); stdin without one.
    fd: Option<OwnedFd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// Input to read, a signal, or the timeout: crossterm can be asked without waiting.
    Ready,
    HungUp,
}

impl Tty {
    fn open() -> Tty {
        Tty {
            fd: std::fs::File::open("/dev/tty").ok().map(OwnedFd::from),
        }
    }

    /// Waits up to `timeout` for input or a hang-up; a signal (a resize, a stop) ends the
    /// wait early.
    fn wait(&self, timeout: Duration) -> Readiness {
        let fd = self.fd.as_ref().map_or(libc::STDIN_FILENO, |fd| fd.as_raw_fd());
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll on one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            Readiness::HungUp
        } else {
            Readiness::Ready
        }
    }
}

/// Once a stop signal has come, gives the refresh loop a second to end and restore the
/// terminal; past that (stuck in the terminal library, say), restores what it can and exits,
/// which detaches the programs: a stop signal always ends `syscall-top` within a second or so.
fn exit_when_stuck_after(stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(Duration::from_secs(1));
        restore_terminal();
        std::process::exit(1);
    });
}
