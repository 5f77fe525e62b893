//! What a run prints: operations by outcome, faults by kind with the
//! longest unavailability after each kind, and the anomalies (must be none).

use super::Plan;
use super::check::recovery_after;
use super::faults::{FaultKind, Outcome};
use super::history::{Event, EventType, F, Process};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultFigures {
    pub injected: u64,
    /// Of those, begun while another fault was active.
    pub overlapped: u64,
    /// Faults after which no acknowledged write came before the run ended.
    pub unrecovered: u64,
    /// Longest time from one of these faults to the next acknowledged write invoked after it.
    pub longest_unavailable: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Summary {
    pub seed: u64,
    pub duration: Duration,
    pub clients: u64,
    /// Per operation (read, write, cas, delete) and in all.
    pub ops: BTreeMap<F, Counts>,
    pub total: Counts,
    pub faults: BTreeMap<FaultKind, FaultFigures>,
    /// The most faults active at once.
    pub most_at_once: usize,
    /// What the nemesis observed or skipped (a full disk's effect).
    pub notes: Vec<String>,
    pub slots_compared: u64,
    pub anomalies: Vec<String>,
    pub history: PathBuf,
}

impl Summary {
    pub fn new(
        plan: &Plan,
        events: &[Event],
        outcome: &Outcome,
        slots_compared: u64,
        anomalies: Vec<String>,
        history: PathBuf,
    ) -> Summary {
        let mut ops: BTreeMap<F, Counts> = BTreeMap::new();
        let mut total = Counts::default();
        for e in events.iter().filter(|e| matches!(e.process, Process::Client(_))) {
            let counts = ops.entry(e.f).or_default();
            for c in [counts, &mut total] {
                match e.kind {
                    EventType::Ok => c.ok += 1,
                    EventType::Fail => c.fail += 1,
                    EventType::Info => c.info += 1,
                    EventType::Invoke => {}
                }
            }
        }
        let mut faults: BTreeMap<FaultKind, FaultFigures> =
            plan.faults.iter().map(|k| (*k, FaultFigures::default())).collect();
        for fault in &outcome.faults {
            let figures = faults.entry(fault.kind).or_default();
            figures.injected += 1;
            figures.overlapped += u64::from(fault.overlapped);
            match recovery_after(events, fault.time) {
                Some(ns) => {
                    let d = Duration::from_nanos(ns);
                    figures.longest_unavailable = figures.longest_unavailable.max(Some(d));
                }
                None => figures.unrecovered += 1,
            }
        }
        Summary {
            seed: plan.seed,
            duration: plan.duration,
            clients: plan.clients,
            ops,
            total,
            faults,
            most_at_once: outcome.most_at_once,
            notes: outcome.notes.clone(),
            slots_compared,
            anomalies,
            history,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.total;
        writeln!(f, "ops: {} (ok {}, fail {}, info {})", t.ok + t.fail + t.info, t.ok, t.fail, t.info)?;
        for (op, c) in &self.ops {
            writeln!(
                f,
                "  {:<7} ok {:>7}  fail {:>6}  info {:>6}",
                format!("{op:?}").to_lowercase(),
                c.ok,
                c.fail,
                c.info
            )?;
        }
        writeln!(
            f,
            "faults: {} (at most {} at once)",
            self.faults.values().map(|x| x.injected).sum::<u64>(),
            self.most_at_once
        )?;
        for (kind, x) in &self.faults {
            let longest = x.longest_unavailable.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
            writeln!(
                f,
                "  {:<9} injected {:>4}  overlapping {:>3}  longest unavailability {longest:>9}  without a later ok write {}",
                kind.to_string(),
                x.injected,
                x.overlapped,
                x.unrecovered
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        writeln!(f, "log slots compared across nodes: {}", self.slots_compared)?;
        writeln!(f, "anomalies: {}", self.anomalies.len())?;
        for a in &self.anomalies {
            let cut: String = a.chars().take(2000).collect();
            writeln!(f, "  {cut}")?;
        }
        Ok(())
    }
}
