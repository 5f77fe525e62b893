//! The figures of a drill, from the clients' history and the leadership
//! samples: when the first node noticed (detect), when a new leader had an
//! acknowledged write (elect), the longest stretch without one, the leaders
//! over time; the checks and their verdict; min/median/max over repeats.

use super::Kind;
use super::observe::Sample;
use crate::nemesis::history::{Event, EventType, Process};
use crate::ops::api::ReplicaRole;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which node led from `from` to `to` (ns since the drill began); `None`: no node did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub from: u64,
    pub to: u64,
    pub leader: Option<u64>,
}

/// The leader over time: of the nodes that say they lead, the one with
/// the highest ballot (a node cut off may still believe it leads); a node
/// that does not answer claims nothing.
pub fn leader_spans(samples: &[Sample], end: u64) -> Vec<Span> {
    let mut claims = BTreeMap::new();
    let mut spans: Vec<Span> = Vec::new();
    for s in samples {
        claims.insert(s.node, s.seen.filter(|seen| seen.role == ReplicaRole::Leader).map(|seen| seen.ballot));
        let leader = claims.iter().filter_map(|(node, ballot)| ballot.map(|b| (b, *node))).max().map(|(_, n)| n);
        match spans.last_mut() {
            Some(last) if last.leader == leader => {}
            Some(last) => {
                last.to = s.time;
                spans.push(Span { from: s.time, to: end, leader });
            }
            None => spans.push(Span { from: s.time, to: end, leader }),
        }
    }
    if let Some(last) = spans.last_mut() {
        last.to = end.max(last.from);
    }
    spans
}

/// Changes from one leader to another (a stretch without one in between does not count).
pub fn leader_changes(spans: &[Span]) -> u32 {
    let leaders: Vec<u64> = spans.iter().filter_map(|s| s.leader).collect();
    leaders.windows(2).filter(|w| w[0] != w[1]).count() as u32
}

/// The first node to answer, after `fault`, with a leader other than `old`
/// (none, or another): when (ns) and which node.
pub fn detected(samples: &[Sample], fault: u64, old: u64) -> Option<(u64, u64)> {
    samples
        .iter()
        .filter(|s| s.time >= fault)
        .find(|s| s.seen.is_some_and(|seen| seen.leader != Some(old)))
        .map(|s| (s.time, s.node))
}

fn is_client(e: &Event) -> bool {
    matches!(e.process, Process::Client(_))
}

/// Completion times of acknowledged writes (put, cas, delete), in order.
pub fn acknowledged_writes(events: &[Event]) -> Vec<u64> {
    events.iter().filter(|e| is_client(e) && e.kind == EventType::Ok && e.f.is_mutation()).map(|e| e.time).collect()
}

/// Times of operations that failed or whose outcome is unknown.
pub fn errors(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| is_client(e) && matches!(e.kind, EventType::Fail | EventType::Info))
        .map(|e| e.time)
        .collect()
}

/// A new leader (not `old`) first seen leading after `fault`, and the first
/// write acknowledged from then on: (leader, seen at, write at).
pub fn elected(samples: &[Sample], writes: &[u64], fault: u64, old: u64) -> Option<(u64, u64, u64)> {
    let (leader, seen) = samples
        .iter()
        .filter(|s| s.time >= fault && s.node != old)
        .find(|s| s.seen.is_some_and(|seen| seen.role == ReplicaRole::Leader))
        .map(|s| (s.node, s.time))?;
    let write = writes.iter().copied().find(|t| *t >= seen)?;
    Some((leader, seen, write))
}

/// The longest stretch without an acknowledged write between the first one
/// and `end`: (length, start), ns.
pub fn longest_gap(writes: &[u64], end: u64) -> (u64, u64) {
    let Some(first) = writes.first() else { return (0, 0) };
    let mut best = (0, *first);
    let mut last = *first;
    for t in writes.iter().copied().chain(std::iter::once(end.max(last))) {
        if t.saturating_sub(last) > best.0 {
            best = (t - last, last);
        }
        last = last.max(t);
    }
    best
}

pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e5).round() / 10.0
}

/// What the SVG draws.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub end: u64,
    pub writes: Vec<u64>,
    pub errors: Vec<u64>,
    pub spans: Vec<Span>,
    pub fault: u64,
    pub restored: Option<u64>,
    pub detected: Option<u64>,
    pub elected: Option<u64>,
    pub gap: (u64, u64),
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub writes_unknown: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
}

pub fn counts(events: &[Event]) -> Counts {
    let mut c = Counts::default();
    for e in events.iter().filter(|e| is_client(e)) {
        match (e.f.is_mutation(), e.kind) {
            (true, EventType::Ok) => c.writes_ok += 1,
            (true, EventType::Fail) => c.writes_failed += 1,
            (true, EventType::Info) => c.writes_unknown += 1,
            (false, EventType::Ok) => c.reads_ok += 1,
            (false, EventType::Fail | EventType::Info) => c.reads_failed += 1,
            (_, EventType::Invoke) => {}
        }
    }
    c
}

/// One drill's record.
#[derive(Clone, Debug, Serialize)]
pub struct Drill {
    pub number: u32,
    pub kind: Kind,
    /// How the fault was applied (step-down, local process PID, command).
    pub method: String,
    pub old_leader: u64,
    pub new_leader: Option<u64>,
    pub leader_changes: u32,
    /// From the fault until a node first answered with another leader or none.
    pub detect_ms: Option<f64>,
    pub detected_by: Option<u64>,
    /// From the fault until a write was acknowledged under a new leader.
    pub elect_ms: Option<f64>,
    pub longest_write_gap_ms: f64,
    pub fault_at_ms: f64,
    pub restored_at_ms: Option<f64>,
    /// The pid of the node restarted after a kill on this machine.
    pub restarted_pid: Option<u32>,
    pub fault_error: Option<String>,
    pub restore_error: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Every node's decided log agrees on every slot two of them hold (from the drill's first slot on).
    pub logs_agree: bool,
    pub slots_compared: u64,
    pub log_problems: Vec<String>,
    /// Every key read back after the drill and the history linearizable.
    pub writes_survived: bool,
    pub keys_read_back: u64,
    pub lost_writes: Vec<String>,
    pub duration_ms: f64,
    pub problems: Vec<String>,
    pub passed: bool,
    /// Where its SVG timeline was written.
    pub svg: Option<String>,
    #[serde(skip)]
    pub timeline: Timeline,
}

impl Drill {
    /// The checks: each failed one as a line.
    pub fn verdict(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(e) = &self.fault_error {
            problems.push(format!("the fault could not be applied: {e}"));
        }
        if let Some(e) = &self.restore_error {
            problems.push(format!("the fault could not be undone: {e}"));
        }
        match self.new_leader {
            None => problems.push(format!("no node other than node {} was seen leading", self.old_leader)),
            Some(n) if n == self.old_leader => problems.push(format!("node {n} still leads")),
            Some(_) => {}
        }
        if self.elect_ms.is_none() {
            problems.push("no write was acknowledged under a new leader".into());
        }
        if !self.logs_agree {
            problems.push("the nodes' logs do not agree on the committed prefix".into());
            problems.extend(self.log_problems.iter().cloned());
        }
        if !self.writes_survived {
            problems.push("an acknowledged write did not survive the drill".into());
            problems.extend(self.lost_writes.iter().cloned());
        }
        problems
    }

    pub fn settle(&mut self) {
        self.problems = self.verdict();
        self.passed = self.problems.is_empty();
    }

    pub fn text(&self, of: u32) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
        let node = |v: Option<u64>| v.map_or("-".to_owned(), |n| format!("node{n}"));
        let yes = |b: bool| if b { "yes" } else { "NO" };
        let c = &self.counts;
        let mut t = String::new();
        let _ = writeln!(t, "drill {}/{of}: {} of node{} ({})", self.number, self.kind, self.old_leader, self.method);
        let _ = writeln!(t, "  old leader        node{}", self.old_leader);
        let _ = writeln!(t, "  new leader        {}", node(self.new_leader));
        let _ = writeln!(t, "  leader changes    {}", self.leader_changes);
        let by = self.detected_by.map_or(String::new(), |n| format!(" (first: node{n})"));
        let _ = writeln!(t, "  time to detect    {}{by}", opt(self.detect_ms));
        let _ = writeln!(t, "  time to elect     {} (a write acknowledged under the new leader)", opt(self.elect_ms));
        let _ = writeln!(t, "  longest no-write  {:.1} ms", self.longest_write_gap_ms);
        let restored = match (self.restored_at_ms, self.restarted_pid) {
            (Some(at), Some(pid)) => format!(", restored at {at:.1} ms (restarted as pid {pid})"),
            (Some(at), None) => format!(", restored at {at:.1} ms"),
            _ => String::new(),
        };
        let _ = writeln!(t, "  fault             at {:.1} ms{restored}", self.fault_at_ms);
        let _ = writeln!(
            t,
            "  operations        writes {} acknowledged, {} failed, {} unknown; reads {} ok, {} failed",
            c.writes_ok, c.writes_failed, c.writes_unknown, c.reads_ok, c.reads_failed
        );
        let _ = writeln!(t, "  logs agree        {} ({} slots compared)", yes(self.logs_agree), self.slots_compared);
        let _ = writeln!(
            t,
            "  writes survived   {} ({} keys read back, history linearizable)",
            yes(self.writes_survived),
            self.keys_read_back
        );
        if self.passed {
            let _ = writeln!(t, "  verdict           pass ({:.1} s)", self.duration_ms / 1000.0);
        } else {
            let _ = writeln!(t, "  verdict           FAIL");
            for p in &self.problems {
                let _ = writeln!(t, "    {p}");
            }
        }
        t
    }
}

/// Min, median and max of one figure over the drills that have it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Drills that had the figure.
    pub count: usize,
}

pub fn stat(values: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Stat { min: v[0], median, max: v[n - 1], count: n })
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub drills: usize,
    pub passed: usize,
    pub detect_ms: Option<Stat>,
    pub elect_ms: Option<Stat>,
    pub longest_write_gap_ms: Option<Stat>,
    pub leader_changes: Option<Stat>,
}

pub fn summary(drills: &[Drill]) -> Summary {
    let of = |f: &dyn Fn(&Drill) -> Option<f64>| stat(&drills.iter().filter_map(f).collect::<Vec<_>>());
    Summary {
        drills: drills.len(),
        passed: drills.iter().filter(|d| d.passed).count(),
        detect_ms: of(&|d| d.detect_ms),
        elect_ms: of(&|d| d.elect_ms),
        longest_write_gap_ms: of(&|d| Some(d.longest_write_gap_ms)),
        leader_changes: of(&|d| Some(f64::from(d.leader_changes))),
    }
}

impl Summary {
    pub fn text(&self) -> String {
        let mut t = format!("{} drills, {} passed\n", self.drills, self.passed);
        let _ = writeln!(t, "  {:<20} {:>10} {:>10} {:>10}", "figure", "min", "median", "max");
        let rows = [
            ("time to detect ms", self.detect_ms),
            ("time to elect ms", self.elect_ms),
            ("longest no-write ms", self.longest_write_gap_ms),
            ("leader changes", self.leader_changes),
        ];
        for (name, s) in rows {
            match s {
                Some(s) => {
                    let _ = writeln!(t, "  {name:<20} {:>10.1} {:>10.1} {:>10.1}", s.min, s.median, s.max);
                }
                None => {
                    let _ = writeln!(t, "  {name:<20} {:>10} {:>10} {:>10}", "-", "-", "-");
                }
            }
        }
        t
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::observe::Seen;
    use super::*;
    use crate::consensus::ballot::Ballot;

    fn leader(time: u64, node: u64, round: u64) -> Sample {
        Sample {
            time,
            node,
            seen: Some(Seen { role: ReplicaRole::Leader, leader: Some(node), ballot: Ballot::new(round, node) }),
        }
    }
    fn follower(time: u64, node: u64, of: Option<u64>) -> Sample {
        Sample { time, node, seen: Some(Seen { role: ReplicaRole::Follower, leader: of, ballot: Ballot::new(1, 1) }) }
    }
    fn silent(time: u64, node: u64) -> Sample {
        Sample { time, node, seen: None }
    }

    #[test]
    fn the_leader_over_time_follows_the_highest_ballot_claim() {
        let samples = [
            leader(10, 1, 1),
            follower(10, 2, Some(1)),
            follower(100, 2, None), // node 2 notices first
            leader(150, 1, 1),      // node 1 cut off, still claims
            leader(200, 3, 2),      // node 3 wins with a higher ballot
            silent(250, 1),
            leader(300, 3, 2),
        ];
        let spans = leader_spans(&samples, 400);
        assert_eq!(
            spans,
            vec![Span { from: 10, to: 200, leader: Some(1) }, Span { from: 200, to: 400, leader: Some(3) }]
        );
        assert_eq!(leader_changes(&spans), 1);
        assert_eq!(detected(&samples, 50, 1), Some((100, 2)));
        assert_eq!(elected(&samples, &[20, 120, 210, 260], 50, 1), Some((3, 200, 210)));
        assert_eq!(elected(&samples, &[20, 120], 50, 1), None, "no write after the new leader");
        // A stretch without a leader between the same one does not count as a change.
        let back =
            [leader(0, 1, 1), silent(10, 1), leader(20, 1, 1), leader(30, 2, 3), silent(35, 2), leader(40, 1, 4)];
        let spans = leader_spans(&back, 50);
        assert_eq!(spans.len(), 5, "{spans:?}");
        assert_eq!(leader_changes(&spans), 2);
    }

    #[test]
    fn longest_gap_and_statistics() {
        assert_eq!(longest_gap(&[], 100), (0, 0));
        assert_eq!(longest_gap(&[10, 20, 70, 80], 100), (50, 20));
        assert_eq!(longest_gap(&[10, 20], 100), (80, 20), "until the end of the load");
        let s = stat(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.count), (1.0, 3.0, 5.0, 3));
        assert_eq!(stat(&[4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
        assert_eq!(stat(&[]), None);
        assert_eq!(stat(&[f64::NAN, 2.0]).unwrap().count, 1);
        assert_eq!(ms(1_234_567), 1.2);
    }

    pub fn passing() -> Drill {
        Drill {
            number: 1,
            kind: Kind::Transfer,
            method: "step-down".into(),
            old_leader: 1,
            new_leader: Some(2),
            leader_changes: 1,
            detect_ms: Some(12.0),
            detected_by: Some(1),
            elect_ms: Some(40.0),
            longest_write_gap_ms: 35.0,
            fault_at_ms: 2000.0,
            restored_at_ms: None,
            restarted_pid: None,
            fault_error: None,
            restore_error: None,
            counts: Counts::default(),
            logs_agree: true,
            slots_compared: 10,
            log_problems: vec![],
            writes_survived: true,
            keys_read_back: 4,
            lost_writes: vec![],
            duration_ms: 5000.0,
            problems: vec![],
            passed: false,
            svg: None,
            timeline: Timeline::default(),
        }
    }

    #[test]
    fn the_verdict_fails_on_each_broken_check() {
        let mut d = passing();
        d.settle();
        assert!(d.passed, "{:?}", d.problems);
        assert!(d.text(1).contains("verdict           pass"));
        type Breaks = fn(&mut Drill);
        let broken: [(&str, Breaks); 5] = [
            ("logs do not agree", |d| {
                d.logs_agree = false;
                d.log_problems = vec!["slot 3: node 1 has a, node 2 has b".into()];
            }),
            ("did not survive", |d| d.writes_survived = false),
            ("was seen leading", |d| d.new_leader = None),
            ("no write was acknowledged", |d| d.elect_ms = None),
            ("could not be applied", |d| d.fault_error = Some("step-down refused".into())),
        ];
        for (wanted, breaks) in broken {
            let mut d = passing();
            breaks(&mut d);
            d.settle();
            assert!(!d.passed && d.problems.iter().any(|p| p.contains(wanted)), "{wanted}: {:?}", d.problems);
            assert!(d.text(1).contains("FAIL"));
            assert_eq!(super::super::exit_code(&[passing_settled(), d]), crate::ops::health::EXIT_UNHEALTHY as u8);
        }
        assert_eq!(super::super::exit_code(&[passing_settled()]), 0);
    }

    fn passing_settled() -> Drill {
        let mut d = passing();
        d.settle();
        d
    }

    #[test]
    fn the_summary_gives_min_median_max_of_each_figure() {
        let mut drills: Vec<Drill> = (1..=3).map(|_| passing_settled()).collect();
        drills[1].detect_ms = Some(30.0);
        drills[2].detect_ms = None;
        let s = summary(&drills);
        assert_eq!(s.detect_ms.unwrap(), Stat { min: 12.0, median: 21.0, max: 30.0, count: 2 });
        assert_eq!(s.passed, 3);
        let text = s.text();
        let row = text.lines().find(|l| l.contains("time to detect")).unwrap();
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["time", "to", "detect", "ms", "12.0", "21.0", "30.0"]);
        // Every row of the table lines up with its header.
        let widths: Vec<usize> = text.lines().skip(1).map(str::len).collect();
        assert!(widths.len() == 5 && widths.iter().all(|w| *w == widths[0]), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["elect_ms"]["median"], 40.0);
    }
}
