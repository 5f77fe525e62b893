//! What the monitor shows, from successive observations of the nodes: one
//! row per node and the events seen between observations (leader changes,
//! elections, step-downs, nodes lost and back, nodes falling behind). Pure:
//! the collector passes the time of each observation in.

use super::histogram::{Histogram, fsync_p99};
use crate::consensus::ballot::{Ballot, NodeId};
use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Events kept for the list under the table.
pub const MAX_EVENTS: usize = 500;

/// A node's `status --json`, read tolerantly: fields a newer node adds are
/// ignored and fields an older one lacks take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StatusView {
    pub id: NodeId,
    #[serde(default)]
    pub roles: Vec<String>,
    /// "leader", "follower" or "candidate".
    pub role: String,
    #[serde(default)]
    pub ballot: Ballot,
    pub commit_index: u64,
    #[serde(default)]
    pub applied_index: u64,
    #[serde(default)]
    pub last_heartbeat_age_ms: Option<u64>,
    /// This node's estimate of each peer's clock (absent on older nodes).
    #[serde(default)]
    pub clock: Vec<PeerClockView>,
}

/// One peer's clock as a node measures it: the peer's clock minus its own
/// (the error bound and round trip are not shown).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PeerClockView {
    pub peer: NodeId,
    /// `None` (or absent) before the first estimate.
    #[serde(default)]
    pub offset_ms: Option<f64>,
}

/// What one node answered in one refresh.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub id: NodeId,
    /// Its status, or why there is none (unreachable, no answer in time...).
    pub status: Result<StatusView, String>,
    /// Its fsync latency histogram, when its metrics could be read.
    pub fsync: Option<Histogram>,
}

/// Every node's report from one refresh.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Since the monitor started (for rates).
    pub at: Duration,
    /// When it was taken (for the events' timestamps).
    pub wall: SystemTime,
    pub nodes: Vec<NodeReport>,
}

/// A node of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitoredNode {
    pub id: NodeId,
    pub name: String,
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The first observation: who leads.
    LeaderIs {
        node: NodeId,
        ballot: Ballot,
    },
    /// Leadership moved from one node to another.
    LeaderChanged {
        from: NodeId,
        to: NodeId,
        ballot: Ballot,
    },
    /// A leader appeared where there was none.
    LeaderElected {
        node: NodeId,
        ballot: Ballot,
    },
    /// No node that answers leads.
    NoLeader {
        previous: Option<NodeId>,
    },
    /// The highest ballot in use went up: an election was won.
    Election {
        from: Ballot,
        to: Ballot,
    },
    /// A node that led is up and leads no more.
    SteppedDown {
        node: NodeId,
        now: String,
    },
    /// A node that answered does not any more.
    Lost {
        node: NodeId,
        reason: String,
    },
    /// A node down at the first observation.
    Down {
        node: NodeId,
        reason: String,
    },
    /// A node that was lost answers again.
    Back {
        node: NodeId,
    },
    /// A node's commit index fell more than the limit behind the leader's.
    FellBehind {
        node: NodeId,
        lag: u64,
    },
    CaughtUp {
        node: NodeId,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::LeaderIs { node, ballot } => write!(f, "node {node} leads (ballot {ballot})"),
            EventKind::LeaderChanged { from, to, ballot } => {
                write!(f, "leader changed: node {from} -> node {to} (ballot {ballot})")
            }
            EventKind::LeaderElected { node, ballot } => write!(f, "node {node} elected leader (ballot {ballot})"),
            EventKind::NoLeader { previous: Some(node) } => write!(f, "no leader (node {node} led)"),
            EventKind::NoLeader { previous: None } => write!(f, "no leader"),
            EventKind::Election { from, to } => write!(f, "election: ballot {from} -> {to}"),
            EventKind::SteppedDown { node, now } => write!(f, "node {node} stepped down (now {now})"),
            EventKind::Lost { node, reason } => write!(f, "node {node} lost: {reason}"),
            EventKind::Down { node, reason } => write!(f, "node {node} down: {reason}"),
            EventKind::Back { node } => write!(f, "node {node} back"),
            EventKind::FellBehind { node, lag } => {
                write!(f, "node {node} falling behind: {lag} slots behind the leader")
            }
            EventKind::CaughtUp { node } => write!(f, "node {node} caught up"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub wall: SystemTime,
    pub kind: EventKind,
}

/// A node's clock as the leader measures it.
#[derive(Clone, Debug, PartialEq)]
pub enum ClockCell {
    /// This node leads: the others are measured against it.
    Reference,
    OffsetMs(f64),
    Unknown,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: NodeId,
    pub name: String,
    pub roles: Vec<String>,
    /// `None` before the first observation.
    pub up: Option<bool>,
    pub is_leader: bool,
    /// The node's own view: "leader", "follower" or "candidate".
    pub role: Option<String>,
    pub ballot: Option<Ballot>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Slots behind the leader (or the highest commit index seen, with no leader).
    pub lag: Option<u64>,
    pub heartbeat_age_ms: Option<u64>,
    pub clock: ClockCell,
    pub commits_per_sec: Option<f64>,
    pub fsync_p99_seconds: Option<f64>,
    /// Why the node is down.
    pub error: Option<String>,
}

/// What is known of one node across observations.
#[derive(Clone, Debug)]
struct Track {
    node: MonitoredNode,
    up: Option<bool>,
    status: Option<StatusView>,
    error: Option<String>,
    /// The commit index and when it was read, for the rate.
    commit_sample: Option<(Duration, u64)>,
    commits_per_sec: Option<f64>,
    fsync: Option<Histogram>,
    fsync_p99: Option<f64>,
    behind: bool,
}

/// The monitor's state: fed snapshots, it answers rows and events.
#[derive(Clone, Debug)]
pub struct Monitor {
    tracks: Vec<Track>,
    /// The highest commit lag that is not "falling behind".
    max_lag: u64,
    leader: Option<NodeId>,
    highest_ballot: Option<Ballot>,
    observations: u64,
    events: VecDeque<Event>,
    last_wall: Option<SystemTime>,
}

impl Monitor {
    pub fn new(nodes: Vec<MonitoredNode>, max_lag: u64) -> Monitor {
        let tracks = nodes
            .into_iter()
            .map(|node| Track {
                node,
                up: None,
                status: None,
                error: None,
                commit_sample: None,
                commits_per_sec: None,
                fsync: None,
                fsync_p99: None,
                behind: false,
            })
            .collect();
        Monitor {
            tracks,
            max_lag,
            leader: None,
            highest_ballot: None,
            observations: 0,
            events: VecDeque::new(),
            last_wall: None,
        }
    }

    pub fn observe(&mut self, snapshot: Snapshot) {
        let first = self.observations == 0;
        self.observations += 1;
        self.last_wall = Some(snapshot.wall);
        let mut events = Vec::new();
        for track in &mut self.tracks {
            let report = snapshot.nodes.iter().find(|r| r.id == track.node.id);
            let (status, fsync) = match report {
                Some(r) => (r.status.clone(), r.fsync.clone()),
                None => (Err("not asked".to_string()), None),
            };
            let id = track.node.id;
            match status {
                Ok(status) => {
                    if track.up == Some(false) {
                        events.push(EventKind::Back { node: id });
                    }
                    if let Some(before) = &track.status
                        && before.role == "leader"
                        && status.role != "leader"
                    {
                        events.push(EventKind::SteppedDown { node: id, now: status.role.clone() });
                    }
                    track.commits_per_sec = track.commit_sample.and_then(|(then, commit)| {
                        let seconds = snapshot.at.checked_sub(then)?.as_secs_f64();
                        (seconds > 0.0).then(|| status.commit_index.saturating_sub(commit) as f64 / seconds)
                    });
                    track.commit_sample = Some((snapshot.at, status.commit_index));
                    track.fsync_p99 = fsync.as_ref().and_then(|h| fsync_p99(h, track.fsync.as_ref()));
                    track.fsync = fsync;
                    track.up = Some(true);
                    track.status = Some(status);
                    track.error = None;
                }
                Err(reason) => {
                    match track.up {
                        Some(true) => events.push(EventKind::Lost { node: id, reason: reason.clone() }),
                        None => events.push(EventKind::Down { node: id, reason: reason.clone() }),
                        Some(false) => {}
                    }
                    track.up = Some(false);
                    track.status = None;
                    track.error = Some(reason);
                    track.commit_sample = None;
                    track.commits_per_sec = None;
                    track.fsync = None;
                    track.fsync_p99 = None;
                    track.behind = false;
                }
            }
        }

        let leader = self.current_leader();
        let highest = self.tracks.iter().filter_map(|t| t.status.as_ref().map(|s| s.ballot)).max();
        if let (Some(before), Some(now)) = (self.highest_ballot, highest)
            && now > before
        {
            events.push(EventKind::Election { from: before, to: now });
        }
        if highest > self.highest_ballot {
            self.highest_ballot = highest;
        }
        let ballot_of = |id: NodeId| self.status_of(id).map(|s| s.ballot).unwrap_or_default();
        match (first, self.leader, leader) {
            (true, _, Some(node)) => events.push(EventKind::LeaderIs { node, ballot: ballot_of(node) }),
            (true, _, None) => events.push(EventKind::NoLeader { previous: None }),
            (false, Some(from), Some(to)) if from != to => {
                events.push(EventKind::LeaderChanged { from, to, ballot: ballot_of(to) })
            }
            (false, None, Some(node)) => events.push(EventKind::LeaderElected { node, ballot: ballot_of(node) }),
            (false, Some(previous), None) => events.push(EventKind::NoLeader { previous: Some(previous) }),
            _ => {}
        }
        self.leader = leader;

        let reference = self.reference_commit();
        for track in &mut self.tracks {
            let Some(status) = &track.status else { continue };
            let lag = reference.saturating_sub(status.commit_index);
            let behind = lag > self.max_lag;
            match (track.behind, behind) {
                (false, true) => events.push(EventKind::FellBehind { node: track.node.id, lag }),
                (true, false) => events.push(EventKind::CaughtUp { node: track.node.id }),
                _ => {}
            }
            track.behind = behind;
        }

        for kind in events {
            self.events.push_back(Event { wall: snapshot.wall, kind });
        }
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The leader: of the nodes that answer and say they lead, the one
    /// with the highest ballot (an old leader cut off may still think it leads).
    fn current_leader(&self) -> Option<NodeId> {
        self.tracks
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.ballot)
            .map(|s| s.id)
    }

    fn status_of(&self, id: NodeId) -> Option<&StatusView> {
        self.tracks.iter().find(|t| t.node.id == id).and_then(|t| t.status.as_ref())
    }

    /// What lag is measured from: the leader's commit index, or the highest
    /// one that answered when there is no leader.
    fn reference_commit(&self) -> u64 {
        match self.leader.and_then(|id| self.status_of(id)) {
            Some(leader) => leader.commit_index,
            None => self.tracks.iter().filter_map(|t| t.status.as_ref().map(|s| s.commit_index)).max().unwrap_or(0),
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Whether every node answered the last refresh.
    pub fn all_up(&self) -> bool {
        self.tracks.iter().all(|t| t.up == Some(true))
    }

    pub fn up_count(&self) -> usize {
        self.tracks.iter().filter(|t| t.up == Some(true)).count()
    }

    pub fn node_count(&self) -> usize {
        self.tracks.len()
    }

    /// When the last snapshot was taken.
    pub fn last_refresh(&self) -> Option<SystemTime> {
        self.last_wall
    }

    pub fn events(&self) -> &VecDeque<Event> {
        &self.events
    }

    pub fn rows(&self) -> Vec<Row> {
        let reference = self.reference_commit();
        let leader_status = self.leader.and_then(|id| self.status_of(id));
        self.tracks
            .iter()
            .map(|t| {
                let s = t.status.as_ref();
                let is_leader = self.leader == Some(t.node.id);
                let clock = match (is_leader, leader_status) {
                    (true, _) => ClockCell::Reference,
                    (false, Some(leader)) => leader
                        .clock
                        .iter()
                        .find(|c| c.peer == t.node.id)
                        .and_then(|c| c.offset_ms)
                        .map_or(ClockCell::Unknown, ClockCell::OffsetMs),
                    (false, None) => ClockCell::Unknown,
                };
                Row {
                    id: t.node.id,
                    name: t.node.name.clone(),
                    roles: s.filter(|s| !s.roles.is_empty()).map_or_else(|| t.node.roles.clone(), |s| s.roles.clone()),
                    up: t.up,
                    is_leader,
                    role: s.map(|s| s.role.clone()),
                    ballot: s.map(|s| s.ballot),
                    commit_index: s.map(|s| s.commit_index),
                    applied_index: s.map(|s| s.applied_index),
                    lag: s.map(|s| reference.saturating_sub(s.commit_index)),
                    heartbeat_age_ms: s.and_then(|s| s.last_heartbeat_age_ms),
                    clock: if s.is_some() { clock } else { ClockCell::Unknown },
                    commits_per_sec: t.commits_per_sec,
                    fsync_p99_seconds: t.fsync_p99,
                    error: t.error.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
