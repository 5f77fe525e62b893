//! How the monitor looks: the cells of each row as text, a plain-text frame
//! (`--once`), and the same frame as ratatui widgets for the live view.

use super::model::{ClockCell, Event, Monitor, Row};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, List, ListItem, Paragraph, Row as TableRow, Table};
use std::time::{SystemTime, UNIX_EPOCH};

/// The leader's mark in the first column.
pub const LEADER_MARK: &str = "*";

pub const HEADERS: [&str; 13] = [
    " ",
    "NODE",
    "ROLES",
    "UP",
    "ROLE",
    "BALLOT",
    "COMMIT",
    "APPLIED",
    "LAG",
    "HEARTBEAT",
    "CLOCK",
    "COMMITS/S",
    "FSYNC P99",
];

/// Columns whose figures are right-aligned in the plain text.
const NUMERIC: [bool; 13] = [false, false, false, false, false, true, true, true, true, true, true, true, true];

/// What the header line says about the cluster.
pub struct Context<'a> {
    pub cluster: &'a str,
    pub interval_ms: u64,
}

/// The text of each cell of a row, in `HEADERS` order.
pub fn cells(row: &Row) -> [String; 13] {
    let dash = || "-".to_string();
    [
        if row.is_leader { LEADER_MARK.into() } else { " ".into() },
        format!("{} {}", row.id, row.name),
        roles_text(&row.roles),
        match row.up {
            Some(true) => "up".into(),
            Some(false) => "down".into(),
            None => "?".into(),
        },
        row.role.clone().unwrap_or_else(dash),
        row.ballot.map_or_else(dash, |b| b.to_string()),
        row.commit_index.map_or_else(dash, |c| c.to_string()),
        row.applied_index.map_or_else(dash, |a| a.to_string()),
        row.lag.map_or_else(dash, |l| l.to_string()),
        row.heartbeat_age_ms.map_or_else(dash, millis_text),
        match row.clock {
            ClockCell::Reference => "ref".into(),
            ClockCell::OffsetMs(ms) => offset_text(ms),
            ClockCell::Unknown => dash(),
        },
        row.commits_per_sec.map_or_else(dash, rate_text),
        row.fsync_p99_seconds.map_or_else(dash, seconds_text),
    ]
}

/// "PAL" for proposer, acceptor, learner (the legend says so).
fn roles_text(roles: &[String]) -> String {
    let letters: String = ["proposer", "acceptor", "learner"]
        .iter()
        .filter(|r| roles.iter().any(|have| have == *r))
        .map(|r| r[..1].to_ascii_uppercase())
        .collect();
    if letters.is_empty() { "-".into() } else { letters }
}

fn millis_text(ms: u64) -> String {
    if ms < 10_000 { format!("{ms}ms") } else { crate::ops::render::duration_text(ms) }
}

/// A signed clock offset: "+0.04ms", "+4.2ms", "-120ms", "+2.50s"; one
/// that rounds to zero is "0.00ms", without a sign.
pub fn offset_text(ms: f64) -> String {
    let sign = if ms < 0.0 { '-' } else { '+' };
    let abs = ms.abs();
    if abs < 0.005 {
        "0.00ms".into()
    } else if abs < 1.0 {
        format!("{sign}{abs:.2}ms")
    } else if abs < 10.0 {
        format!("{sign}{abs:.1}ms")
    } else if abs < 1000.0 {
        format!("{sign}{abs:.0}ms")
    } else {
        format!("{sign}{:.2}s", abs / 1000.0)
    }
}

fn rate_text(per_sec: f64) -> String {
    if per_sec < 100.0 { format!("{per_sec:.1}") } else { format!("{per_sec:.0}") }
}

/// A latency: "0.42ms", "12.3ms", "1.20s".
pub fn seconds_text(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{seconds:.2}s")
    }
}

/// "HH:MM:SS.mmm" (UTC).
pub fn time_of_day(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", secs / 3600, (secs / 60) % 60, secs % 60, since.subsec_millis())
}

pub fn event_text(event: &Event) -> String {
    format!("{}  {}", time_of_day(event.wall), event.kind)
}

fn title(monitor: &Monitor, ctx: &Context) -> String {
    let leader = monitor.leader().map_or("none".to_string(), |id| format!("node {id}"));
    let at = monitor.last_refresh().map_or("connecting".to_string(), |t| format!("{} UTC", time_of_day(t)));
    format!(
        "paxos monitor  cluster {}  {}/{} up  leader {leader}  {at}  every {} ms",
        ctx.cluster,
        monitor.up_count(),
        monitor.node_count(),
        ctx.interval_ms
    )
}

const LEGEND: &str = "roles: P proposer, A acceptor, L learner; clock: offset from the leader's clock";

/// Each column as wide as its header or its widest cell.
fn column_widths(rows: &[[String; 13]]) -> [usize; 13] {
    let mut widths = HEADERS.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// Why each node that is down is down, one line each.
fn problems(monitor: &Monitor) -> Vec<String> {
    monitor
        .rows()
        .into_iter()
        .filter_map(|row| Some(format!("node {} ({}) down: {}", row.id, row.name, row.error?)))
        .collect()
}

/// One frame as plain text: title, table, legend, then every event (oldest first).
pub fn plain(monitor: &Monitor, ctx: &Context) -> String {
    let rows: Vec<[String; 13]> = monitor.rows().iter().map(cells).collect();
    let widths = column_widths(&rows);
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let w = widths[i];
            if NUMERIC[i] { text.push_str(&format!("{cell:>w$}")) } else { text.push_str(&format!("{cell:<w$}")) }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = title(monitor, ctx) + "\n\n";
    out.push_str(&line(&HEADERS.map(String::from)[..]));
    for row in &rows {
        out.push_str(&line(&row[..]));
    }
    for problem in problems(monitor) {
        out.push_str(&problem);
        out.push('\n');
    }
    out.push_str(&format!("\n{LEGEND}\n\nEVENTS\n"));
    for event in monitor.events() {
        out.push_str(&event_text(event));
        out.push('\n');
    }
    out
}

/// The live view: title, table, events (the newest at the bottom, as many
/// as fit), and a help line.
pub fn draw(frame: &mut Frame, monitor: &Monitor, ctx: &Context) {
    let rows = monitor.rows();
    let problems = problems(monitor);
    let table_height = rows.len() as u16 + 3; // borders and the header
    let [top, table_area, problems_area, events_area, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height),
        Constraint::Length(problems.len() as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title(monitor, ctx)).style(Style::new().add_modifier(Modifier::BOLD)), top);

    let widths = column_widths(&rows.iter().map(cells).collect::<Vec<_>>()).map(|w| Constraint::Length(w as u16));
    let table_rows = rows.iter().map(|row| {
        let style = match row.up {
            Some(false) => Style::new().fg(Color::Red),
            _ if row.is_leader => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            _ if row.lag.is_some_and(|lag| lag > 0) => Style::new().fg(Color::Yellow),
            _ => Style::new(),
        };
        let cells = cells(row).into_iter().zip(NUMERIC).map(|(text, numeric)| {
            let line = Line::from(text);
            Cell::from(if numeric { line.right_aligned() } else { line })
        });
        TableRow::new(cells).style(style)
    });
    let headers = HEADERS.into_iter().zip(NUMERIC).map(|(text, numeric)| {
        let line = Line::from(text);
        Cell::from(if numeric { line.right_aligned() } else { line })
    });
    let table = Table::new(table_rows, widths)
        .header(TableRow::new(headers).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)))
        .block(Block::new().borders(Borders::ALL).title(" nodes "))
        .column_spacing(1);
    frame.render_widget(table, table_area);
    let problems: Vec<Line> = problems.into_iter().map(Line::from).collect();
    frame.render_widget(Paragraph::new(problems).style(Style::new().fg(Color::Red)), problems_area);

    let visible = events_area.height.saturating_sub(2) as usize;
    let events = monitor.events();
    let items: Vec<ListItem> =
        events.iter().skip(events.len().saturating_sub(visible)).map(|e| ListItem::new(event_text(e))).collect();
    let list = List::new(items).block(Block::new().borders(Borders::ALL).title(" events "));
    frame.render_widget(list, events_area);

    frame.render_widget(Line::from(format!("q quit   {LEGEND}")).style(Style::new().fg(Color::DarkGray)), help);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::monitor::model::{MonitoredNode, NodeReport, Snapshot, StatusView};
    use crate::consensus::ballot::Ballot;
    use std::time::Duration;

    fn monitor() -> Monitor {
        let nodes = (1..=3).map(|id| MonitoredNode { id, name: format!("node{id}"), roles: vec![] }).collect();
        let mut m = Monitor::new(nodes, 100);
        let status = |id, role: &str| StatusView {
            id,
            roles: vec!["proposer".into(), "acceptor".into(), "learner".into()],
            role: role.into(),
            ballot: Ballot { round: 1, node: 2 },
            commit_index: 7,
            applied_index: 7,
            last_heartbeat_age_ms: Some(25),
            clock: vec![],
        };
        m.observe(Snapshot {
            at: Duration::ZERO,
            wall: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            nodes: vec![
                NodeReport { id: 1, status: Ok(status(1, "follower")), fsync: None },
                NodeReport { id: 2, status: Ok(status(2, "leader")), fsync: None },
                NodeReport { id: 3, status: Err("connection refused".into()), fsync: None },
            ],
        });
        m
    }

    #[test]
    fn the_plain_frame_has_one_row_per_node_and_one_leader_mark() {
        let text = plain(&monitor(), &Context { cluster: "lab", interval_ms: 1000 });
        assert!(!text.contains('\u{1b}'), "no escape codes:\n{text}");
        let rows: Vec<&str> = text.lines().filter(|l| (1..=3).any(|id| l.contains(&format!(" node{id} ")))).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert_eq!(rows.iter().filter(|r| r.starts_with(LEADER_MARK)).count(), 1, "{text}");
        assert!(rows[1].starts_with("*  2 node2  PAL    up    leader"), "{text}");
        assert!(rows[2].contains("down"), "{text}");
        assert!(text.contains("22:13:20.250  node 3 down: connection refused"), "{text}");
        assert!(text.contains("\nnode 3 (node3) down: connection refused\n"), "{text}");
        assert!(text.contains("22:13:20.250  node 2 leads (ballot 1.2)"), "{text}");
        assert!(text.lines().next().unwrap().contains("2/3 up  leader node 2"), "{text}");
    }

    #[test]
    fn the_live_frame_draws_at_any_size() {
        let m = monitor();
        for (w, h) in [(120, 40), (60, 12), (20, 5), (1, 1)] {
            let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| draw(f, &m, &Context { cluster: "lab", interval_ms: 1000 })).unwrap();
        }
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 20)).unwrap();
        terminal.draw(|f| draw(f, &m, &Context { cluster: "lab", interval_ms: 1000 })).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .chunks(120)
            .map(|line| line.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        assert!(screen.contains("node 3 down: connection refused"), "{screen}");
        assert!(screen.contains("2 node2"), "{screen}");
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(offset_text(0.42), "+0.42ms");
        assert_eq!(offset_text(-0.004), "0.00ms");
        assert_eq!(offset_text(-0.03), "-0.03ms");
        assert_eq!(offset_text(4.24), "+4.2ms");
        assert_eq!(offset_text(-120.4), "-120ms");
        assert_eq!(offset_text(2500.0), "+2.50s");
        assert_eq!(seconds_text(0.00042), "0.42ms");
        assert_eq!(seconds_text(0.0123), "12.3ms");
        assert_eq!(seconds_text(1.2), "1.20s");
        assert_eq!(roles_text(&["learner".into(), "acceptor".into()]), "AL");
    }
}
