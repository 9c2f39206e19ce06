//! Rendering of `syscall-top`: a pure function of the [`App`]'s state onto a ratatui frame.
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Table, TableState, Wrap},
    Frame,
};

use super::app::{App, Mode, Row, SortBy, View};
use crate::model::{
    histogram::Latency,
    split::{split_cells, Split},
    wait::Waits,
};

/// Colours of entry, handler, blocked, runqueue.
pub const PART_COLORS: [Color; 4] = [Color::Yellow, Color::Green, Color::Blue, Color::Magenta];
const PART_NAMES: [&str; 4] = ["entry", "handler", "blocked", "runqueue"];

/// `1.2M`, `34k`, `512`, `0.5` (rates can be fractional).
pub fn compact(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.1}G", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `12ns`, `3.4µs`, `56ms`, `1.2s`.
pub fn duration(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.1}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.0}ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1}µs", ns / 1e3)
    } else {
        format!("{ns:.0}ns")
    }
}

fn split_spans(split: &Split, width: usize) -> Line<'static> {
    let cells = split_cells(split, width);
    Line::from(
        cells
            .iter()
            .zip(PART_COLORS)
            .filter(|(n, _)| **n > 0)
            .map(|(n, color)| Span::styled("█".repeat(*n), Style::default().fg(color)))
            .collect::<Vec<_>>(),
    )
}

fn sort_title(app: &App, column: SortBy, title: &str) -> String {
    if app.sort == column {
        format!("{title}{}", if app.descending { "▼" } else { "▲" })
    } else {
        title.to_owned()
    }
}

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let [header, legend, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, app, header);
    render_legend(frame, app, legend);
    match app.view {
        View::Processes => render_table(frame, app, body, &app.process_rows(), true),
        View::Syscalls { pid } => {
            let rows = app.syscall_rows(pid);
            let [table, detail] = Layout::vertical([Constraint::Percentage(55), Constraint::Min(4)]).areas(body);
            render_table(frame, app, table, &rows, false);
            render_detail(frame, app, detail, rows.get(app.selected), pid);
        }
        View::Stuck => render_stuck(frame, app, body),
    }
    let keys = match app.view {
        View::Processes => "q quit  ? help  / filter  s/S sort  r reverse  t totals  Enter syscalls  k stuck  p pause",
        View::Syscalls { .. } => "Esc back  ↑↓ select  s/S sort  r reverse  t totals  p pause  q quit",
        View::Stuck => "k/Esc back  p pause  q quit",
    };
    frame.render_widget(
        Paragraph::new(keys).style(Style::default().add_modifier(Modifier::DIM)),
        footer,
    );
    if app.show_help {
        render_help(frame, area);
    }
}

fn render_header(frame: &mut Frame, app: &App, area: Rect) {
    let h = &app.header;
    let mut spans = vec![Span::styled(
        "syscall-top ",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    // Most important first: a narrow terminal cuts the end of the line.
    if app.paused {
        spans.push(Span::styled(
            "PAUSED ",
            Style::default().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    spans.extend([Span::raw(format!(
        " {} syscalls/s  boundary {:.0} ns/call  profiler ~{:.1}% CPU",
        compact(h.calls_per_sec),
        h.boundary_ns_per_call,
        h.overhead_percent
    ))]);
    if h.lost_events > 0 {
        spans.push(Span::styled(
            format!("  LOST {} calls", h.lost_events),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::raw(match app.mode {
        Mode::Rates => format!("  [per s over {:.1}s]", h.interval_secs),
        Mode::Totals => "  [totals since start]".to_owned(),
    }));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_legend(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![Span::raw("split: ")];
    for (name, color) in PART_NAMES.iter().zip(PART_COLORS) {
        spans.push(Span::styled("█", Style::default().fg(color)));
        spans.push(Span::raw(format!("{name} ")));
    }
    if app.header.sample_every > 1 {
        spans.push(Span::styled(
            format!(" timing 1/{}", app.header.sample_every),
            Style::default().add_modifier(Modifier::DIM),
        ));
    }
    if app.editing_filter || !app.filter.is_empty() {
        spans.push(Span::styled(
            format!(" filter: {}{}", app.filter, if app.editing_filter { "_" } else { "" }),
            Style::default().fg(Color::Cyan),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_table(frame: &mut Frame, app: &App, area: Rect, rows: &[Row], processes: bool) {
    let per = if app.mode == Mode::Rates { "/s" } else { "" };
    let headers = [
        sort_title(app, SortBy::Pid, "PID"),
        sort_title(app, SortBy::Name, if processes { "COMM" } else { "SYSCALL" }),
        sort_title(app, SortBy::Calls, &format!("CALLS{per}")),
        sort_title(app, SortBy::Errors, &format!("ERR{per}")),
        sort_title(app, SortBy::Time, &format!("TIME{per}")),
        "SPLIT".to_owned(),
        sort_title(app, SortBy::P99, "P99"),
        if processes { "TOP".to_owned() } else { "ABI".to_owned() },
        "CLASS".to_owned(),
    ];
    let widths = [
        Constraint::Length(7),
        Constraint::Fill(2),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Fill(1),
        Constraint::Length(7),
        Constraint::Fill(2),
        Constraint::Length(14),
    ];
    // The split bar's width: what the layout gives that column (at least 6).
    let split_width = Layout::horizontal(widths).spacing(1).split(area)[5].width.max(6) as usize;
    let body: Vec<TableRow> = rows
        .iter()
        .map(|row| {
            TableRow::new(vec![
                Cell::from(row.pid.to_string()),
                Cell::from(row.name.clone()),
                Cell::from(compact(row.calls)),
                Cell::from(compact(row.errors)).style(if row.errors > 0.0 {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                }),
                Cell::from(duration(row.time_ns)),
                Cell::from(split_spans(&row.split, split_width)),
                Cell::from(duration(row.p99_ns as f64)),
                Cell::from(row.detail.clone()),
                Cell::from(row.class.as_str()),
            ])
        })
        .collect();
    let title = match app.view {
        View::Syscalls { pid } => {
            let comm = app
                .process_rows()
                .into_iter()
                .find(|r| r.pid == pid)
                .map(|r| r.name)
                .unwrap_or_default();
            format!(" syscalls of {pid} {comm} ")
        }
        _ if !app.ready => " waiting for the first refresh... ".to_owned(),
        _ => format!(" {} processes ", rows.len()),
    };
    let table = Table::new(body, widths)
        .header(TableRow::new(headers).style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)))
        .column_spacing(1)
        .block(Block::default().borders(Borders::TOP).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(if rows.is_empty() { None } else { Some(app.selected) });
    frame.render_stateful_widget(table, area, &mut state);
}

/// Latency histogram (one line per power of two that has calls) and errors of a syscall.
fn render_detail(frame: &mut Frame, app: &App, area: Rect, row: Option<&Row>, pid: u32) {
    let Some(row) = row else {
        let text = if app.ready {
            format!("no syscalls from {pid} in this interval")
        } else {
            String::new()
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    };
    let wait_lines = row
        .key
        .and_then(|key| app.waits.get(&key))
        .map(wait_lines)
        .unwrap_or_default();
    let [area, waits] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(if wait_lines.is_empty() {
            0
        } else {
            wait_lines.len() as u16 + 1
        }),
    ])
    .areas(area);
    if !wait_lines.is_empty() {
        frame.render_widget(
            Paragraph::new(wait_lines).block(
                Block::default()
                    .borders(Borders::TOP)
                    .title(" where its blocked calls waited, since this view opened "),
            ),
            waits,
        );
    }
    let [histogram, errors] = Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(area);
    let lines = histogram_lines(
        &row.latency,
        row.latency_offset_ns,
        histogram.width.saturating_sub(22) as usize,
    );
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::TOP)
                .title(format!(" {} latency, entry included ", row.name)),
        ),
        histogram,
    );
    let mut error_lines: Vec<Line> = row
        .errnos
        .iter()
        .map(|(name, count)| Line::from(format!("{name:<12} {}", compact(*count as f64))))
        .collect();
    if error_lines.is_empty() {
        error_lines.push(Line::from("none"));
    }
    frame.render_widget(
        Paragraph::new(error_lines).block(Block::default().borders(Borders::TOP).title(" errors ")),
        errors,
    );
}

/// Wait sites and files a syscall's detail shows at most.
const WAITS_SHOWN: usize = 3;

/// The wait sites of a syscall's blocked calls (with their first waker) and the files they
/// waited on, a line each.
fn wait_lines(waits: &Waits) -> Vec<Line<'static>> {
    let sites = waits.sites.iter().take(WAITS_SHOWN).map(|site| {
        let woken_by = match site.wakers.first() {
            Some(waker) if waker.pid != 0 => format!("; woken by {} {}", waker.pid, waker.name),
            Some(waker) => format!("; woken by {}", waker.name),
            None => String::new(),
        };
        let io = if site.io_wait { ", I/O" } else { "" };
        Line::from(format!(
            "{}  {} calls, {} asleep{io}{woken_by}",
            site.site,
            compact(site.calls as f64),
            duration(site.blocked_ns as f64)
        ))
    });
    let files = waits.files.iter().take(WAITS_SHOWN).map(|file| {
        Line::from(format!(
            "on fd {} {}  {} calls, {} asleep",
            file.fd,
            file.target,
            compact(file.calls as f64),
            duration(file.blocked_ns as f64)
        ))
    });
    sites.chain(files).collect()
}

/// One line per power of two between the smallest and largest non-empty bucket, its bounds
/// shifted by `offset_ns` (see [`Row::latency_offset_ns`]): the latency the caller sees, as
/// the p99 column shows it.
pub fn histogram_lines(latency: &Latency, offset_ns: i64, bar_width: usize) -> Vec<Line<'static>> {
    let groups = latency.by_power_of_two(offset_ns);
    if groups.is_empty() {
        return vec![Line::from("no calls")];
    }
    let most = groups.iter().map(|g| g[2]).max().unwrap_or(1).max(1);
    groups
        .iter()
        .map(|&[low, high, count]| {
            let bar = ((count as f64 / most as f64) * bar_width as f64).ceil() as usize;
            Line::from(vec![
                Span::raw(format!("{:>7}-{:<7} ", duration(low as f64), duration(high as f64))),
                Span::styled("▇".repeat(bar.min(bar_width)), Style::default().fg(Color::Cyan)),
                Span::raw(format!(" {}", compact(count as f64))),
            ])
        })
        .collect()
}

fn render_stuck(frame: &mut Frame, app: &App, area: Rect) {
    let rows: Vec<TableRow> =
        app.stuck
            .iter()
            .map(|t| {
                TableRow::new(vec![
                    Cell::from(t.tid.to_string()),
                    Cell::from(t.pid.to_string()),
                    Cell::from(t.comm.clone()),
                    Cell::from(t.syscall.clone()),
                    // Already inside when profiling started: at least this long.
                    Cell::from(format!(
                        "{}{}",
                        if t.before_start { "≥" } else { "" },
                        duration(t.elapsed_ns as f64)
                    )),
                    Cell::from(if t.blocked { "blocked" } else { "runnable" })
                        .style(Style::default().fg(if t.blocked { Color::Blue } else { Color::Magenta })),
                    Cell::from(t.wait_site.clone()),
                ])
            })
            .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Fill(2),
    ];
    let title = format!(
        " {} threads inside a syscall for over {} ",
        app.stuck.len(),
        duration(app.stuck_threshold_ns as f64)
    );
    let table = Table::new(rows, widths)
        .header(
            TableRow::new(["TID", "PID", "COMM", "SYSCALL", "FOR", "STATE", "WAITING IN"])
                .style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        )
        .block(Block::default().borders(Borders::TOP).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(if app.stuck.is_empty() { None } else { Some(app.selected) });
    frame.render_stateful_widget(table, area, &mut state);
}

const HELP: &str = "\
syscall-top: where time at the kernel boundary goes, live.

Each syscall's time is split into entry (crossing the boundary),
handler (on-CPU in the kernel), blocked (asleep) and runqueue
(woken, waiting for a CPU).

  q, Ctrl-C   quit               ?         this help
  s / S       next/prev sort     r         reverse the sort
  t           rates <-> totals   p, space  pause
  /           filter (name/pid)  Esc       clear filter / back
  Enter       syscalls of the selected process
  k           stuck: threads inside a syscall for too long
  ↑ ↓ PgUp PgDn Home End         select

press any key";

fn render_help(frame: &mut Frame, area: Rect) {
    let width = area.width.min(68);
    let height = area.height.min(18);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(HELP)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" keys ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::{
        backend::TestBackend,
        crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
        Terminal,
    };

    use super::*;
    use crate::top::app::{tests::sample_app, Event};

    fn draw(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| render(frame, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn key(app: &mut App, code: KeyCode) {
        app.on_event(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    #[test]
    fn process_table_fits_80x24() {
        let app = sample_app();
        let screen = draw(&app, 80, 24);
        assert!(screen.contains("syscall-top"), "{screen}");
        assert!(screen.contains("syscalls/s"), "{screen}");
        assert!(screen.contains("boundary 50 ns/call"), "{screen}");
        assert!(screen.contains("timing 1/16"), "{screen}");
        for needle in [
            "PID",
            "COMM",
            "CALLS/s",
            "TIME/s▼",
            "busy",
            "getppid",
            "sleeper",
            "nanosleep",
            "tiny-frequent",
            "blocked",
        ] {
            assert!(screen.contains(needle), "{needle} in\n{screen}");
        }
        assert!(screen.contains("█entry"), "legend\n{screen}");
        assert!(screen.contains("q quit"), "{screen}");
    }

    #[test]
    fn resizes_from_tiny_to_wide() {
        let app = sample_app();
        for (w, h) in [(40, 10), (80, 24), (200, 60), (20, 5)] {
            let screen = draw(&app, w, h);
            assert_eq!(screen.lines().count(), h as usize);
        }
    }

    #[test]
    fn drill_in_shows_histogram_and_errors() {
        let mut app = sample_app();
        app.filter = "opener".into();
        key(&mut app, KeyCode::Enter);
        let screen = draw(&app, 80, 24);
        assert!(screen.contains("syscalls of 300 opener"), "{screen}");
        assert!(screen.contains("openat"), "{screen}");
        assert!(screen.contains("openat latency"), "{screen}");
        assert!(screen.contains("ENOENT"), "{screen}");
        assert!(screen.contains("▇"), "{screen}");
        assert!(screen.contains("where its blocked calls waited"), "{screen}");
        assert!(
            screen.contains("wait_for_partner <- fifo_open  3 calls, 1.5s asleep; woken by 400 writer"),
            "{screen}"
        );
    }

    #[test]
    fn stuck_view_help_and_pause_are_drawn() {
        let mut app = sample_app();
        key(&mut app, KeyCode::Char('k'));
        let screen = draw(&app, 80, 24);
        assert!(screen.contains("2 threads inside a syscall for over 1.0s"), "{screen}");
        assert!(screen.contains("≥2.0s"), "{screen}");
        assert!(screen.contains("nanosleep") && screen.contains("blocked"), "{screen}");
        let wide = draw(&app, 140, 24);
        assert!(
            wide.contains("WAITING IN") && wide.contains("anon_pipe_read <- vfs_read"),
            "{wide}"
        );
        key(&mut app, KeyCode::Char('p'));
        key(&mut app, KeyCode::Char('?'));
        let screen = draw(&app, 80, 24);
        assert!(screen.contains("PAUSED"), "{screen}");
        assert!(screen.contains("rates <-> totals"), "{screen}");
    }

    #[test]
    fn number_formats() {
        assert_eq!(compact(1_234_567.0), "1.2M");
        assert_eq!(compact(34_000.0), "34k");
        assert_eq!(compact(1_500.0), "1.5k");
        assert_eq!(compact(512.0), "512");
        assert_eq!(compact(0.5), "0.5");
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(4.0), "4");
        assert_eq!(duration(12.0), "12ns");
        assert_eq!(duration(3_400.0), "3.4µs");
        assert_eq!(duration(56_000_000.0), "56ms");
        assert_eq!(duration(1_200_000_000.0), "1.2s");
    }

    #[test]
    fn histogram_spans_the_occupied_powers_of_two() {
        let app = sample_app();
        let rows = app.syscall_rows(300);
        let lines = histogram_lines(&rows[0].latency, rows[0].latency_offset_ns, 20);
        assert_eq!(lines.len(), 1, "all openat calls took ~2 µs");
        assert!(lines[0].to_string().contains("100"));
        // The p99 column and the histogram agree: both include the entry charged per call.
        let p99 = rows[0].p99_ns as f64;
        let text = lines[0].to_string();
        let bounds: Vec<f64> = text
            .split_whitespace()
            .next()
            .unwrap()
            .split('-')
            .map(|bound| bound.trim_end_matches("µs").parse::<f64>().unwrap() * 1e3)
            .collect();
        assert!(bounds[0] <= p99 && p99 <= bounds[1], "p99 {p99} outside {text}");
        let unshifted = histogram_lines(&rows[0].latency, 0, 20)[0].to_string();
        assert_ne!(unshifted, text, "the offset moves the bounds");
    }
}
