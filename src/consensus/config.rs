//! Replica configuration: membership with roles, quorums, timing in ticks,
//! batching and pipelining. Validated once, at start.

use super::ballot::NodeId;
use super::configuration::{DEFAULT_ALPHA, MAX_ALPHA};
use super::quorum::{QuorumError, Quorums};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// What a node does in the protocol (Paxos Made Simple, §1: proposers,
/// acceptors, learners). Every node learns: it must apply the log to serve
/// reads, so `learner` only matters for nodes that do nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    pub proposer: bool,
    pub acceptor: bool,
    pub learner: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles { proposer: true, acceptor: true, learner: true }
    }
}

impl Roles {
    pub const LEARNER: Roles = Roles { proposer: false, acceptor: false, learner: true };

    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.proposer {
            names.push("proposer");
        }
        if self.acceptor {
            names.push("acceptor");
        }
        if self.learner {
            names.push("learner");
        }
        names
    }

    /// Parse role names as written in an inventory ("proposer", "acceptor", "learner").
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Roles, String> {
        let mut roles = Roles { proposer: false, acceptor: false, learner: true };
        for name in names {
            match name.as_ref() {
                "proposer" => roles.proposer = true,
                "acceptor" => roles.acceptor = true,
                "learner" => roles.learner = true,
                other => return Err(format!("unknown role {other:?} (expected proposer, acceptor or learner)")),
            }
        }
        Ok(roles)
    }
}

/// Timing, in ticks of the runtime's clock (10 ms each by default in
/// `paxos serve`). Defaults follow etcd's advice: the heartbeat is about the
/// round trip time rounded up generously, and the election timeout is ten
/// heartbeats so a few lost heartbeats do not trigger an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timing {
    /// Leader heartbeat interval (default 10 ticks = 100 ms).
    pub heartbeat: u64,
    /// Election timeout, drawn uniformly from [min, max] each time the timer
    /// is reset (default 100..200 ticks = 1-2 s). The spread is what keeps two
    /// followers from campaigning at the same tick.
    pub election_min: u64,
    pub election_max: u64,
    /// Backoff after a failed or preempted campaign: base × 2^attempts,
    /// capped, plus jitter of up to the same amount (default 20, cap 400 ticks).
    pub backoff_base: u64,
    pub backoff_cap: u64,
    /// Resend an Accept or a campaign message not answered within this (default 50 ticks).
    pub retransmit: u64,
    /// A node re-forwards a client command not yet applied after this (default 100 ticks).
    pub client_retry: u64,
    /// When the leader's connection closes, a follower campaigns after a
    /// delay drawn from [min, max] (default 3..15 ticks), not a whole
    /// election timeout. The spread keeps the followers from colliding.
    pub link_lost_min: u64,
    pub link_lost_max: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: 10,
            election_min: 100,
            election_max: 200,
            backoff_base: 20,
            backoff_cap: 400,
            retransmit: 50,
            client_retry: 100,
            link_lost_min: 3,
            link_lost_max: 15,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tuning {
    /// Most commands one slot carries (default 256).
    pub max_batch: usize,
    /// Most slots the leader has in flight, proposed but not chosen (default 64).
    pub pipeline_depth: usize,
    /// Take a snapshot every this many applied slots (default 10,000).
    pub snapshot_interval: u64,
    /// Take one sooner, once the commands applied since the last one hold
    /// this many bytes (default 8 MiB): under load a slot carries many
    /// commands, and the log kept in memory between snapshots (and the
    /// write-ahead log a snapshot compacts) grows with the bytes, not the
    /// slots. Member i of n waits (n + i) / n times this, so members do not
    /// all snapshot at once.
    pub snapshot_bytes: usize,
    /// Decided entries kept in memory behind a snapshot, so a peer that fell
    /// only a little behind catches up by entries (default 1,000).
    pub log_retain: u64,
    /// Most entries in one catch-up message (default 256).
    pub catch_up_batch: usize,
    /// Client sessions remembered for exactly-once answers (default 100,000).
    pub max_sessions: usize,
    /// Largest command accepted, as encoded on the wire (default 1 MiB,
    /// etcd's 1.5 MiB request limit in spirit). Larger ones are refused
    /// when submitted, before anything is queued.
    pub max_command_bytes: usize,
    /// Most encoded command bytes in one slot (default 2 MiB); one slot
    /// always takes at least one command.
    pub max_batch_bytes: usize,
    /// Most encoded command bytes the leader has in flight across the
    /// pipeline (default 8 MiB); this also bounds the votes a promise carries.
    pub max_in_flight_bytes: usize,
    /// Most encoded command bytes in one catch-up message (default 4 MiB).
    pub catch_up_bytes: usize,
    /// Bytes of snapshot image per InstallSnapshot chunk (default 1 MiB);
    /// JSON may escape each one into two, so at most a quarter frame.
    pub snapshot_chunk_bytes: usize,
}

/// Timing settings above this many ticks are refused.
pub const MAX_TIMING_TICKS: u64 = 360_000;
/// Count settings above this are refused (they would only exhaust memory).
pub const MAX_TUNING_COUNT: u64 = 1 << 32;

/// The largest peer message the budgets above allow, with their defaults,
/// stays well under this; `crate::ssh::frame` uses it as the frame limit.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_batch: 256,
            pipeline_depth: 64,
            snapshot_interval: 10_000,
            snapshot_bytes: 8 * 1024 * 1024,
            log_retain: 1_000,
            catch_up_batch: 256,
            max_sessions: crate::state_machine::DEFAULT_MAX_SESSIONS,
            max_command_bytes: 1024 * 1024,
            max_batch_bytes: 2 * 1024 * 1024,
            max_in_flight_bytes: 8 * 1024 * 1024,
            catch_up_bytes: 4 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub id: NodeId,
    pub members: BTreeMap<NodeId, Roles>,
    /// Phase-1 and phase-2 quorum sizes; `None` means a majority of acceptors.
    #[serde(default)]
    pub phase1_quorum: Option<usize>,
    #[serde(default)]
    pub phase2_quorum: Option<usize>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub tuning: Tuning,
    /// This node is not among `members` (the cluster's seed configuration):
    /// it waits to be added by a membership change, learning meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joining: bool,
    /// α (`configuration`): a membership change decided in slot `s`
    /// governs slots from `s + alpha`. The same on every node, like the
    /// quorum sizes; the membership carries it once a change is decided.
    #[serde(default = "default_alpha")]
    pub alpha: u64,
}

fn default_alpha() -> u64 {
    DEFAULT_ALPHA
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("node id {0} is not a member of the cluster")]
    NotAMember(NodeId),
    #[error("node id 0 is reserved; number nodes from 1")]
    ZeroId,
    #[error("the cluster has no proposer; at least one node must have the proposer role")]
    NoProposers,
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("timing: {0}")]
    Timing(String),
    #[error("tuning: {0}")]
    Tuning(String),
}

impl Config {
    pub fn new(id: NodeId, members: BTreeMap<NodeId, Roles>) -> Self {
        Config {
            id,
            members,
            phase1_quorum: None,
            phase2_quorum: None,
            timing: Timing::default(),
            tuning: Tuning::default(),
            joining: false,
            alpha: DEFAULT_ALPHA,
        }
    }

    pub fn acceptors(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|(_, r)| r.acceptor).map(|(id, _)| *id)
    }

    pub fn proposers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|(_, r)| r.proposer).map(|(id, _)| *id)
    }

    pub fn roles(&self) -> Roles {
        self.members.get(&self.id).copied().unwrap_or(Roles::LEARNER)
    }

    /// Check everything a replica relies on; the error says what to change.
    pub fn validate(&self) -> Result<Quorums, ConfigError> {
        if self.members.contains_key(&0) || self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if !self.members.contains_key(&self.id) && !self.joining {
            return Err(ConfigError::NotAMember(self.id));
        }
        if self.proposers().next().is_none() {
            return Err(ConfigError::NoProposers);
        }
        let quorums = Quorums::resolve(self.acceptors().count(), self.phase1_quorum, self.phase2_quorum)?;
        let t = &self.timing;
        // Ticks are added to the clock everywhere; absurd values would overflow.
        let timings = [
            ("heartbeat", t.heartbeat),
            ("election_min", t.election_min),
            ("election_max", t.election_max),
            ("backoff_base", t.backoff_base),
            ("backoff_cap", t.backoff_cap),
            ("retransmit", t.retransmit),
            ("client_retry", t.client_retry),
            ("link_lost_min", t.link_lost_min),
            ("link_lost_max", t.link_lost_max),
        ];
        if let Some((name, value)) = timings.iter().find(|(_, v)| *v == 0 || *v > MAX_TIMING_TICKS) {
            return Err(ConfigError::Timing(format!(
                "{name} is {value} ticks; it must be between 1 and {MAX_TIMING_TICKS} (an hour of 10 ms ticks)"
            )));
        }
        if t.election_min <= 2 * t.heartbeat {
            return Err(ConfigError::Timing(format!(
                "election_min ({}) must exceed two heartbeats ({}), or one lost heartbeat starts an election",
                t.election_min,
                2 * t.heartbeat
            )));
        }
        if t.election_max <= t.election_min {
            return Err(ConfigError::Timing(format!(
                "election_max ({}) must be above election_min ({}): the spread is what prevents split votes",
                t.election_max, t.election_min
            )));
        }
        if t.link_lost_max < t.link_lost_min || t.link_lost_max > t.election_min {
            return Err(ConfigError::Timing(format!(
                "link_lost_min..link_lost_max ({}..{}) must be a range below election_min ({})",
                t.link_lost_min, t.link_lost_max, t.election_min
            )));
        }
        if t.backoff_cap < t.backoff_base {
            return Err(ConfigError::Timing("backoff_cap must be at least backoff_base".into()));
        }
        let u = &self.tuning;
        let counts = [
            ("max_batch", u.max_batch as u64),
            ("pipeline_depth", u.pipeline_depth as u64),
            ("catch_up_batch", u.catch_up_batch as u64),
            ("max_sessions", u.max_sessions as u64),
            ("snapshot_interval", u.snapshot_interval),
            ("log_retain", u.log_retain),
        ];
        if let Some((name, value)) = counts.iter().find(|(_, v)| *v > MAX_TUNING_COUNT) {
            return Err(ConfigError::Tuning(format!("{name} is {value}; it must be at most {MAX_TUNING_COUNT}")));
        }
        if self.alpha == 0 || self.alpha > MAX_ALPHA {
            return Err(ConfigError::Tuning(format!("alpha is {}; it must be between 1 and {MAX_ALPHA}", self.alpha)));
        }
        if u.pipeline_depth as u64 > self.alpha {
            return Err(ConfigError::Tuning(format!(
                "pipeline_depth ({}) must be at most alpha ({}): a leader keeps no more slots in flight \
                 than a membership change takes to come into force",
                u.pipeline_depth, self.alpha
            )));
        }
        if u.max_batch == 0 || u.pipeline_depth == 0 || u.catch_up_batch == 0 || u.snapshot_interval == 0 {
            return Err(ConfigError::Tuning(
                "max_batch, pipeline_depth, catch_up_batch and snapshot_interval must be at least 1".into(),
            ));
        }
        let budget = |name: &str, bytes: usize| {
            if bytes < u.max_command_bytes || bytes > MAX_MESSAGE_BYTES / 2 {
                return Err(ConfigError::Tuning(format!(
                    "{name} ({bytes}) must be between max_command_bytes ({}) and half the peer frame limit ({})",
                    u.max_command_bytes,
                    MAX_MESSAGE_BYTES / 2
                )));
            }
            Ok(())
        };
        if u.max_command_bytes < 64 {
            return Err(ConfigError::Tuning("max_command_bytes must be at least 64".into()));
        }
        budget("max_batch_bytes", u.max_batch_bytes)?;
        budget("max_in_flight_bytes", u.max_in_flight_bytes)?;
        budget("catch_up_bytes", u.catch_up_bytes)?;
        if u.snapshot_bytes < u.max_batch_bytes || u.snapshot_bytes as u64 > MAX_TUNING_COUNT {
            return Err(ConfigError::Tuning(format!(
                "snapshot_bytes ({}) must be between max_batch_bytes ({}) and {MAX_TUNING_COUNT}",
                u.snapshot_bytes, u.max_batch_bytes
            )));
        }
        if u.snapshot_chunk_bytes < 16 || u.snapshot_chunk_bytes > MAX_MESSAGE_BYTES / 4 {
            return Err(ConfigError::Tuning(format!(
                "snapshot_chunk_bytes must be between 16 and a quarter of the peer frame limit ({})",
                MAX_MESSAGE_BYTES / 4
            )));
        }
        if u.max_in_flight_bytes < u.max_batch_bytes {
            return Err(ConfigError::Tuning("max_in_flight_bytes must be at least max_batch_bytes".into()));
        }
        Ok(quorums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> BTreeMap<NodeId, Roles> {
        (1..=3).map(|id| (id, Roles::default())).collect()
    }

    #[test]
    fn the_default_three_node_config_is_valid_with_majorities() {
        let q = Config::new(1, three()).validate().unwrap();
        assert_eq!((q.phase1, q.phase2), (2, 2));
    }

    #[test]
    fn broken_configs_are_refused_with_a_reason() {
        let mut c = Config::new(4, three());
        assert_eq!(c.validate(), Err(ConfigError::NotAMember(4)));
        c.id = 1;
        c.phase1_quorum = Some(1);
        assert!(matches!(c.validate(), Err(ConfigError::Quorum(QuorumError::NoIntersection { .. }))));
        c.phase1_quorum = None;
        c.timing.election_max = c.timing.election_min;
        assert!(c.validate().unwrap_err().to_string().contains("split votes"));
        let learners: BTreeMap<_, _> = (1..=3).map(|id| (id, Roles::LEARNER)).collect();
        assert_eq!(Config::new(1, learners).validate(), Err(ConfigError::NoProposers));
    }

    #[test]
    fn absurd_timings_and_counts_are_refused_not_overflowed() {
        let mut c = Config::new(1, three());
        c.timing.heartbeat = 1 << 63;
        assert!(c.validate().unwrap_err().to_string().contains("heartbeat is 9223372036854775808 ticks"));
        c.timing = Timing { retransmit: 0, ..Timing::default() };
        assert!(c.validate().unwrap_err().to_string().contains("retransmit is 0 ticks"));
        c.timing = Timing { link_lost_min: 20, link_lost_max: 10, ..Timing::default() };
        assert!(c.validate().unwrap_err().to_string().contains("link_lost_min..link_lost_max (20..10)"));
        c.timing = Timing { heartbeat: 2, election_min: 12, election_max: 24, ..Timing::default() };
        assert!(c.validate().unwrap_err().to_string().contains("below election_min (12)"));
        c.timing = Timing::default();
        c.tuning.snapshot_interval = u64::MAX;
        assert!(c.validate().unwrap_err().to_string().contains("snapshot_interval"));
    }

    #[test]
    fn byte_budgets_must_fit_a_frame_and_hold_one_command() {
        let mut c = Config::new(1, three());
        c.tuning.max_batch_bytes = c.tuning.max_command_bytes - 1;
        assert!(c.validate().unwrap_err().to_string().contains("max_batch_bytes"));
        c.tuning = Tuning { catch_up_bytes: MAX_MESSAGE_BYTES, ..Tuning::default() };
        assert!(c.validate().unwrap_err().to_string().contains("half the peer frame limit"));
        c.tuning = Tuning { max_in_flight_bytes: 1024 * 1024, ..Tuning::default() };
        assert!(c.validate().unwrap_err().to_string().contains("at least max_batch_bytes"));
        c.tuning = Tuning { snapshot_bytes: 1024 * 1024, ..Tuning::default() };
        let refused = c.validate().unwrap_err().to_string();
        assert!(refused.contains("snapshot_bytes (1048576) must be between max_batch_bytes (2097152)"), "{refused}");
        c.tuning = Tuning { snapshot_bytes: usize::MAX, ..Tuning::default() };
        assert!(c.validate().unwrap_err().to_string().contains("snapshot_bytes"));
        c.tuning = Tuning::default();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn roles_parse_from_inventory_names() {
        assert_eq!(Roles::from_names(&["acceptor"]).unwrap(), Roles { proposer: false, acceptor: true, learner: true });
        assert!(Roles::from_names(&["leader"]).unwrap_err().contains("unknown role"));
    }
}
