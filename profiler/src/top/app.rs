//! `syscall-top`'s state: what is shown and how, and how keys change it. No terminal and no
//! kernel here: [`App::update`] takes plain numbers, [`App::on_event`] takes events, and
//! rendering (`ui.rs`) is a pure function of the state.
use std::collections::BTreeMap;

use profiler_common::StatsKey;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::model::{
    charges::Charges,
    histogram::Latency,
    names::{decode_nr, syscall_name},
    split::{Class, Split},
    store::SyscallTotals,
    view::{self, ProcessView, SyscallView},
    wait::Waits,
};
use crate::{model::threads::InSyscall, top::spread::Spread};

/// Everything that can happen to the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size (rendering adapts; nothing to store).
    Resize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Processes,
    /// The syscalls of one process.
    Syscalls {
        pid: u32,
    },
    /// Threads inside a syscall for longer than the threshold.
    Stuck,
}

/// Columns the tables can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Pid,
    Name,
    Calls,
    Errors,
    Time,
    P99,
}

impl SortBy {
    pub const ALL: [SortBy; 6] = [
        SortBy::Pid,
        SortBy::Name,
        SortBy::Calls,
        SortBy::Errors,
        SortBy::Time,
        SortBy::P99,
    ];

    fn next(self, step: isize) -> SortBy {
        let index = SortBy::ALL.iter().position(|s| *s == self).unwrap_or(0) as isize;
        SortBy::ALL[(index + step).rem_euclid(SortBy::ALL.len() as isize) as usize]
    }
}

/// Per-second rates over the last interval, or totals since start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Rates,
    Totals,
}

/// One line of a table: a process, or a syscall of a process. Numbers are per second in
/// [`Mode::Rates`], totals in [`Mode::Totals`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub pid: u32,
    /// Process name, or syscall name in the syscalls view.
    pub name: String,
    pub calls: f64,
    pub errors: f64,
    pub split: Split,
    /// Syscall time (entry + handler + blocked + runqueue), ns (per second in rates).
    pub time_ns: f64,
    pub p99_ns: u64,
    /// Process rows: the syscall with the most time. Syscall rows: the syscall's ABI.
    pub detail: String,
    pub class: Class,
    /// Syscall rows: the latency distribution and errors by errno name. The distribution
    /// is of the time between the tracepoints; `latency_offset_ns` shifts it to the call as
    /// its caller sees it, entry included, as `p99_ns` is.
    pub latency: Latency,
    pub latency_offset_ns: i64,
    pub errnos: Vec<(String, u64)>,
    /// Syscall rows: the (process, syscall), to find what its blocked calls waited on.
    pub key: Option<StatsKey>,
}

/// A thread inside a syscall right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckThread {
    pub tid: u32,
    pub pid: u32,
    pub comm: String,
    pub syscall: String,
    pub elapsed_ns: u64,
    /// Asleep (blocked) rather than runnable or running.
    pub blocked: bool,
    /// It was already inside the call when profiling started: `elapsed_ns` is a lower bound.
    pub before_start: bool,
    /// Where in the kernel it waits (empty if unknown).
    pub wait_site: String,
}

/// Header facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub calls_per_sec: f64,
    pub boundary_ns_per_call: f64,
    /// Estimated CPU the profiler's programs take, in % of one CPU.
    pub overhead_percent: f64,
    /// Calls not counted since start (full maps, exits not matched).
    pub lost_events: u64,
    pub interval_secs: f64,
    /// Timing sampling period (1: every call timed).
    pub sample_every: u32,
}

/// One refresh worth of numbers, from the session.
pub struct Update<'a> {
    pub totals: &'a BTreeMap<StatsKey, SyscallTotals>,
    pub comm: &'a dyn Fn(u32) -> String,
    pub interval_secs: f64,
    pub since_start_secs: f64,
    pub charges: Charges,
    pub overhead_ns_per_call: f64,
    pub sample_every: u32,
    pub lost_events: u64,
    /// Threads inside a syscall.
    pub in_flight: Vec<InSyscall>,
    /// In the view of one process: what its blocked calls waited on since it opened.
    pub waits: BTreeMap<StatsKey, Waits>,
}

pub struct App {
    pub view: View,
    pub mode: Mode,
    pub sort: SortBy,
    pub descending: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub paused: bool,
    pub show_help: bool,
    pub quit: bool,
    /// Selected row in the current table.
    pub selected: usize,
    pub stuck_threshold_ns: u64,
    pub header: Header,
    /// Per-process rows for both modes, and per-(process, syscall) rows.
    processes: BTreeMap<Mode, Vec<Row>>,
    syscalls: BTreeMap<Mode, BTreeMap<u32, Vec<Row>>>,
    pub stuck: Vec<StuckThread>,
    /// See [`Update::waits`].
    pub waits: BTreeMap<StatsKey, Waits>,
    previous: BTreeMap<StatsKey, SyscallTotals>,
    /// Long calls spread over the intervals they lasted, in the rates.
    spread: Spread,
    /// Set once the first refresh came in.
    pub ready: bool,
}

impl PartialOrd for Mode {
    fn partial_cmp(&self, other: &Mode) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Mode {
    fn cmp(&self, other: &Mode) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl Row {
    /// `per` divides the numbers (the interval's seconds for rates, 1 for totals); `seconds`
    /// is the time the class judges the calls' frequency over.
    fn syscall(view: &SyscallView, per: f64, seconds: f64) -> Row {
        Row {
            pid: view.pid,
            name: view.name.clone(),
            calls: view.calls as f64 / per,
            errors: view.errors as f64 / per,
            time_ns: view.total_ns() as f64 / per,
            split: view.split,
            p99_ns: view.percentiles().p99,
            detail: view.abi.as_str().to_owned(),
            class: view.class(seconds),
            latency: view.latency.clone(),
            latency_offset_ns: view.latency_offset_ns,
            errnos: view.errnos.clone(),
            key: Some(view.key),
        }
    }

    fn process(view: &ProcessView, comm: String, per: f64, seconds: f64) -> Row {
        Row {
            pid: view.pid,
            name: comm,
            calls: view.calls as f64 / per,
            errors: view.errors as f64 / per,
            time_ns: view.total_ns() as f64 / per,
            split: view.split,
            p99_ns: view.percentiles().p99,
            detail: view.syscalls.first().map(|s| s.name.clone()).unwrap_or_default(),
            class: view.class(seconds),
            latency: Latency::default(),
            latency_offset_ns: 0,
            errnos: Vec::new(),
            key: None,
        }
    }
}

impl App {
    pub fn new(stuck_threshold_ns: u64, filter: String) -> App {
        App {
            view: View::Processes,
            mode: Mode::Rates,
            sort: SortBy::Time,
            descending: true,
            filter,
            editing_filter: false,
            paused: false,
            show_help: false,
            quit: false,
            selected: 0,
            stuck_threshold_ns,
            header: Header::default(),
            processes: BTreeMap::new(),
            syscalls: BTreeMap::new(),
            stuck: Vec::new(),
            waits: BTreeMap::new(),
            previous: BTreeMap::new(),
            spread: Spread::default(),
            ready: false,
        }
    }

    /// Takes in a refresh. While paused the screen holds still, but the totals are taken in:
    /// the first rates after the pause are over the last interval, not the whole pause.
    pub fn update(&mut self, update: &Update) {
        if self.paused {
            self.previous = update.totals.clone();
            return;
        }
        let since_start = update.since_start_secs.max(1e-3);
        let interval = update.interval_secs.max(1e-3);
        let mut deltas: BTreeMap<StatsKey, SyscallTotals> = update
            .totals
            .iter()
            .map(|(key, totals)| {
                (
                    *key,
                    totals.since(self.previous.get(key).unwrap_or(&SyscallTotals::default())),
                )
            })
            .collect();
        self.spread.apply(&mut deltas, &update.in_flight);
        for (mode, totals, per, seconds) in [
            (Mode::Rates, &deltas, interval, interval),
            (Mode::Totals, update.totals, 1.0, since_start),
        ] {
            let views = view::by_process(totals, &update.charges);
            let processes = views
                .iter()
                .map(|process| Row::process(process, (update.comm)(process.pid), per, seconds))
                .collect();
            let syscalls = views
                .iter()
                .map(|process| {
                    let rows = process.syscalls.iter().map(|s| Row::syscall(s, per, seconds));
                    (process.pid, rows.collect())
                })
                .collect();
            self.processes.insert(mode, processes);
            self.syscalls.insert(mode, syscalls);
        }
        self.previous = update.totals.clone();
        self.waits = update.waits.clone();
        let calls_per_sec: f64 = self.processes[&Mode::Rates].iter().map(|r| r.calls).sum();
        self.header = Header {
            calls_per_sec,
            boundary_ns_per_call: update.charges.boundary_ns_per_call,
            overhead_percent: calls_per_sec * update.overhead_ns_per_call / 1e9 * 100.0,
            lost_events: update.lost_events,
            interval_secs: update.interval_secs,
            sample_every: update.sample_every,
        };
        self.stuck = update
            .in_flight
            .iter()
            .filter(|t| t.elapsed_ns >= self.stuck_threshold_ns)
            .map(|t| {
                let (abi, nr) = decode_nr(t.nr);
                StuckThread {
                    tid: t.tid,
                    pid: t.pid,
                    comm: t.name.clone().unwrap_or_else(|| (update.comm)(t.pid)),
                    syscall: syscall_name(abi, nr).into_owned(),
                    elapsed_ns: t.elapsed_ns,
                    blocked: t.blocked,
                    before_start: t.before_start,
                    wait_site: t.wait_site.clone().unwrap_or_default(),
                }
            })
            .collect();
        self.stuck
            .sort_by(|a, b| b.elapsed_ns.cmp(&a.elapsed_ns).then(a.tid.cmp(&b.tid)));
        self.ready = true;
        self.clamp_selection();
    }

    fn matches_filter(&self, row: &Row) -> bool {
        self.filter.is_empty() || row.name.contains(&self.filter) || row.pid.to_string() == self.filter
    }

    fn sorted(&self, mut rows: Vec<Row>) -> Vec<Row> {
        rows.sort_by(|a, b| {
            let order = match self.sort {
                SortBy::Pid => a.pid.cmp(&b.pid),
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::Calls => a.calls.total_cmp(&b.calls),
                SortBy::Errors => a.errors.total_cmp(&b.errors),
                SortBy::Time => a.time_ns.total_cmp(&b.time_ns),
                SortBy::P99 => a.p99_ns.cmp(&b.p99_ns),
            };
            let order = if self.descending { order.reverse() } else { order };
            order.then(a.pid.cmp(&b.pid)).then(a.name.cmp(&b.name))
        });
        rows
    }

    /// The process rows shown: filtered and sorted.
    pub fn process_rows(&self) -> Vec<Row> {
        let rows = self.processes.get(&self.mode).cloned().unwrap_or_default();
        self.sorted(rows.into_iter().filter(|row| self.matches_filter(row)).collect())
    }

    /// The syscall rows of a process, sorted.
    pub fn syscall_rows(&self, pid: u32) -> Vec<Row> {
        let rows = self
            .syscalls
            .get(&self.mode)
            .and_then(|by_pid| by_pid.get(&pid))
            .cloned()
            .unwrap_or_default();
        self.sorted(rows)
    }

    fn row_count(&self) -> usize {
        match self.view {
            View::Processes => self.process_rows().len(),
            View::Syscalls { pid } => self.syscall_rows(pid).len(),
            View::Stuck => self.stuck.len(),
        }
    }

    fn clamp_selection(&mut self) {
        self.selected = self.selected.min(self.row_count().saturating_sub(1));
    }

    pub fn on_event(&mut self, event: Event) {
        let Event::Key(key) = event else {
            return;
        };
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.show_help {
            // Any key closes the help; q still quits.
            self.show_help = false;
            if key.code != KeyCode::Char('q') {
                return;
            }
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::Char('h') => self.show_help = true,
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('t') => {
                self.mode = match self.mode {
                    Mode::Rates => Mode::Totals,
                    Mode::Totals => Mode::Rates,
                }
            }
            KeyCode::Char('s') | KeyCode::Right => self.sort = self.sort.next(1),
            KeyCode::Char('S') | KeyCode::Left => self.sort = self.sort.next(-1),
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.view = View::Processes;
            }
            KeyCode::Char('k') => {
                self.view = if self.view == View::Stuck {
                    View::Processes
                } else {
                    View::Stuck
                };
                self.selected = 0;
            }
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected += 1,
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => self.selected += 10,
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = usize::MAX,
            KeyCode::Enter if self.view == View::Processes => {
                if let Some(row) = self.process_rows().get(self.selected) {
                    self.view = View::Syscalls { pid: row.pid };
                    self.selected = 0;
                }
            }
            KeyCode::Esc | KeyCode::Backspace => {
                if self.view != View::Processes {
                    self.view = View::Processes;
                    self.selected = 0;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                }
            }
            _ => {}
        }
        self.clamp_selection();
    }
}

#[cfg(test)]
pub mod tests {

    use super::*;
    use crate::model::wait::{WaitSite, Waker};

    /// An app after two refreshes one second apart: pid 100 "busy" (getppid loop),
    /// pid 200 "sleeper" (nanosleep), pid 300 "opener" (failing openat).
    pub fn sample_app() -> App {
        let mut app = App::new(1_000_000_000, String::new());
        let comm = |pid: u32| match pid {
            100 => "busy".to_owned(),
            200 => "sleeper".to_owned(),
            _ => "opener".to_owned(),
        };
        let mut map = BTreeMap::new();
        for step in 1..=2u64 {
            map.insert(
                StatsKey { tgid: 100, nr: 110 },
                SyscallTotals::of_calls(1_000_000 * step, 30_000_000 * step, 0, 0, 30),
            );
            map.insert(
                StatsKey { tgid: 200, nr: 35 },
                SyscallTotals::of_calls(10 * step, 10_000, 500_000_000 * step, 0, 50_000_000),
            );
            let mut openat = SyscallTotals::of_calls(100 * step, 200_000 * step, 0, 0, 2_000);
            openat.errors = 100 * step;
            openat.errnos.insert(2, 100 * step);
            map.insert(StatsKey { tgid: 300, nr: 257 }, openat);
            app.update(&Update {
                totals: &map,
                comm: &comm,
                interval_secs: 1.0,
                since_start_secs: step as f64,
                charges: Charges {
                    boundary_ns_per_call: 50.0,
                    instrumentation_ns_per_call: 0.0,
                    ..Charges::default()
                },
                overhead_ns_per_call: 40.0,
                sample_every: 16,
                lost_events: 0,
                in_flight: vec![
                    InSyscall {
                        tid: 201,
                        pid: 200,
                        name: Some("sleeper-worker".into()),
                        nr: 35,
                        blocked: true,
                        elapsed_ns: 3_000_000_000,
                        before_start: false,
                        wait_site: None,
                    },
                    InSyscall {
                        tid: 101,
                        pid: 100,
                        name: None,
                        nr: 110,
                        blocked: false,
                        elapsed_ns: 10,
                        before_start: false,
                        wait_site: None,
                    },
                    InSyscall {
                        tid: 301,
                        pid: 300,
                        name: None,
                        nr: 0,
                        blocked: true,
                        elapsed_ns: 2_000_000_000,
                        before_start: true,
                        wait_site: Some("anon_pipe_read <- vfs_read".into()),
                    },
                ],
                waits: BTreeMap::from([(
                    StatsKey { tgid: 300, nr: 257 },
                    Waits {
                        sites: vec![WaitSite {
                            site: "wait_for_partner <- fifo_open".into(),
                            io_wait: false,
                            calls: 3,
                            blocked_ns: 1_500_000_000,
                            wakers: vec![Waker {
                                pid: 400,
                                name: "writer".into(),
                                calls: 3,
                                blocked_ns: 1_500_000_000,
                            }],
                        }],
                        files: Vec::new(),
                    },
                )]),
            });
        }
        app
    }

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn rates_are_per_second_over_the_last_interval() {
        let app = sample_app();
        let rows = app.process_rows();
        let busy = rows.iter().find(|r| r.name == "busy").unwrap();
        assert_eq!(busy.calls, 1_000_000.0);
        assert_eq!(busy.detail, "getppid");
        assert_eq!(busy.class, Class::TinyFrequent);
        let opener = rows.iter().find(|r| r.name == "opener").unwrap();
        assert_eq!(opener.errors, 100.0);
        assert!((app.header.calls_per_sec - 1_000_110.0).abs() < 1e-6);
        // 1M calls/s at 40 ns each: 4% of a CPU.
        assert!((app.header.overhead_percent - 4.0).abs() < 0.01);
    }

    #[test]
    fn totals_mode_counts_since_start() {
        let mut app = sample_app();
        app.on_event(key(KeyCode::Char('t')));
        let busy = app.process_rows().into_iter().find(|r| r.name == "busy").unwrap();
        assert_eq!(busy.calls, 2_000_000.0);
    }

    #[test]
    fn default_sort_is_by_time_and_keys_change_it() {
        let mut app = sample_app();
        let names = |app: &App| app.process_rows().iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&app), ["sleeper", "busy", "opener"]);
        app.on_event(key(KeyCode::Char('s'))); // Time -> P99
        assert_eq!(app.sort, SortBy::P99);
        app.on_event(key(KeyCode::Char('s'))); // P99 -> Pid (wraps)
        assert_eq!(app.sort, SortBy::Pid);
        app.on_event(key(KeyCode::Char('r')));
        assert_eq!(names(&app), ["busy", "sleeper", "opener"]);
        app.on_event(key(KeyCode::Char('S')));
        assert_eq!(app.sort, SortBy::P99);
    }

    #[test]
    fn filter_by_name_or_pid() {
        let mut app = sample_app();
        for c in "/slee".chars() {
            app.on_event(key(KeyCode::Char(c)));
        }
        assert!(app.editing_filter);
        app.on_event(key(KeyCode::Enter));
        assert_eq!(app.process_rows().len(), 1);
        app.on_event(key(KeyCode::Esc)); // clears the filter
        assert_eq!(app.process_rows().len(), 3);
        app.filter = "300".into();
        assert_eq!(app.process_rows()[0].name, "opener");
    }

    #[test]
    fn enter_drills_in_and_escape_goes_back() {
        let mut app = sample_app();
        app.sort = SortBy::Pid;
        app.descending = false;
        app.on_event(key(KeyCode::Down));
        app.on_event(key(KeyCode::Down));
        app.on_event(key(KeyCode::Enter));
        assert_eq!(app.view, View::Syscalls { pid: 300 });
        let rows = app.syscall_rows(300);
        assert_eq!(rows[0].name, "openat");
        assert_eq!(rows[0].errnos, vec![("ENOENT".to_owned(), 100)]);
        app.on_event(key(KeyCode::Backspace));
        assert_eq!(app.view, View::Processes);
    }

    #[test]
    fn stuck_threads_are_those_past_the_threshold() {
        let mut app = sample_app();
        app.on_event(key(KeyCode::Char('k')));
        assert_eq!(app.view, View::Stuck);
        assert_eq!(app.stuck.len(), 2, "longest first, the short getppid left out");
        assert_eq!(app.stuck[0].syscall, "nanosleep");
        assert!(app.stuck[0].blocked && !app.stuck[0].before_start);
        assert_eq!(app.stuck[0].comm, "sleeper-worker", "the thread's own name");
        assert_eq!(app.stuck[1].comm, "opener", "else its process's");
        assert_eq!(app.stuck[1].syscall, "read");
        assert!(app.stuck[1].before_start);
    }

    #[test]
    fn pause_help_and_quit() {
        let mut app = sample_app();
        app.on_event(key(KeyCode::Char('p')));
        assert!(app.paused);
        let before = app.process_rows();
        app.update(&Update {
            totals: &BTreeMap::new(),
            comm: &|_| String::new(),
            interval_secs: 1.0,
            since_start_secs: 3.0,
            charges: Charges::default(),
            overhead_ns_per_call: 0.0,
            sample_every: 1,
            lost_events: 0,
            in_flight: Vec::new(),
            waits: BTreeMap::new(),
        });
        assert_eq!(app.process_rows(), before, "paused: the screen holds still");
        // Unpaused, the rates are over the last interval, not the pause.
        let mut app = sample_app();
        app.on_event(key(KeyCode::Char('p')));
        let comm = |_: u32| "busy".to_owned();
        let mut map = BTreeMap::new();
        for (step, calls) in [(3u64, 30_000_000u64), (4, 31_000_000)] {
            map.insert(
                StatsKey { tgid: 100, nr: 110 },
                SyscallTotals::of_calls(calls, 30 * calls, 0, 0, 30),
            );
            app.update(&Update {
                totals: &map,
                comm: &comm,
                interval_secs: 1.0,
                since_start_secs: step as f64,
                charges: Charges::default(),
                overhead_ns_per_call: 0.0,
                sample_every: 1,
                lost_events: 0,
                in_flight: Vec::new(),
                waits: BTreeMap::new(),
            });
            if step == 3 {
                app.on_event(key(KeyCode::Char('p')));
            }
        }
        let busy = app.process_rows().into_iter().find(|r| r.name == "busy").unwrap();
        assert_eq!(busy.calls, 1_000_000.0);
        app.on_event(key(KeyCode::Char('?')));
        assert!(app.show_help);
        app.on_event(key(KeyCode::Char('x')));
        assert!(!app.show_help && !app.quit);
        app.on_event(key(KeyCode::Char('q')));
        assert!(app.quit);
        let mut app = sample_app();
        app.on_event(Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(app.quit);
    }
}
