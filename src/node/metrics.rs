//! Prometheus metrics of one node, exposed by the `metrics` operator command
//! and, when the node config sets `metrics_listen`, over HTTP (`GET /metrics`).
//!
//! Names follow etcd's where one exists (`etcd_server_has_leader` becomes
//! `paxos_has_leader`, `etcd_disk_wal_fsync_duration_seconds` becomes
//! `paxos_wal_fsync_duration_seconds`, and so on), so that an operator's
//! alerts and dashboards carry over.

use crate::consensus::Status;
use crate::consensus::ballot::NodeId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// What one peer link reports, read when the metrics are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerSample {
    pub connected: bool,
    /// Messages this node dropped for the peer (full queue, too large), since start.
    pub dropped: u64,
    /// The peer's clock minus this node's, in seconds; `None` while unknown.
    pub clock_offset: Option<f64>,
}

/// Latency buckets from 0.1 ms doubling to about 3.3 s: the first bucket
/// resolves a fast disk's fsync, the last a stalled one.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_1, 2.0, 16)
}

pub struct Metrics {
    registry: Registry,
    has_leader: Gauge,
    is_leader: Gauge,
    leader_changes: Counter,
    /// The last leader seen, 0 for none yet (node ids start at 1).
    last_leader: AtomicU64,
    proposals_committed: Counter,
    proposals_failed: Counter,
    proposals_pending: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    promised_round: Gauge,
    elections: Counter,
    snapshot_index: Gauge,
    log_start_index: Gauge,
    applied_slots: Counter,
    messages_sent: Family<KindLabel, Counter>,
    peer_connected: Family<PeerLabel, Gauge>,
    peer_dropped: Family<PeerLabel, Counter>,
    peer_round_trip: Family<PeerLabel, Histogram, fn() -> Histogram>,
    clock_offset: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    fsync_seconds: Histogram,
    commit_seconds: Histogram,
    records_per_fsync: Histogram,
    inputs_per_batch: Histogram,
    build_info: Family<VersionLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("paxos");
        let m = Metrics {
            registry: Registry::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
            last_leader: AtomicU64::new(0),
            proposals_committed: Counter::default(),
            proposals_failed: Counter::default(),
            proposals_pending: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            promised_round: Gauge::default(),
            elections: Counter::default(),
            snapshot_index: Gauge::default(),
            log_start_index: Gauge::default(),
            applied_slots: Counter::default(),
            messages_sent: Family::default(),
            peer_connected: Family::default(),
            peer_dropped: Family::default(),
            peer_round_trip: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            clock_offset: Family::default(),
            fsync_seconds: Histogram::new(latency_buckets()),
            commit_seconds: Histogram::new(latency_buckets()),
            records_per_fsync: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            inputs_per_batch: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            build_info: Family::default(),
        };
        m.build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "1, labelled with the version of this build", m.build_info.clone());
        r.register("has_leader", "1 while this node knows a leader", m.has_leader.clone());
        r.register("is_leader", "1 while this node leads", m.is_leader.clone());
        r.register("leader_changes_seen", "Times this node saw a different leader", m.leader_changes.clone());
        r.register("proposals_committed", "Writes submitted here that were applied", m.proposals_committed.clone());
        r.register("proposals_failed", "Writes submitted here that failed or timed out", m.proposals_failed.clone());
        r.register("proposals_pending", "Client commands waiting here for a decision", m.proposals_pending.clone());
        r.register("commit_index", "Every slot below is chosen", m.commit_index.clone());
        r.register("applied_index", "Every slot below is applied", m.applied_index.clone());
        r.register("promised_round", "Round of the ballot this acceptor promised", m.promised_round.clone());
        r.register("elections_started", "Campaigns this node started", m.elections.clone());
        r.register(
            "snapshot_index",
            "Slots below are covered by this node's latest snapshot",
            m.snapshot_index.clone(),
        );
        r.register("log_start_index", "First slot still in this node's log", m.log_start_index.clone());
        r.register("applied_slots", "Slots applied to the state machine", m.applied_slots.clone());
        r.register("messages_sent", "Protocol messages sent, by type", m.messages_sent.clone());
        r.register("peer_connected", "1 while the link to the peer is up", m.peer_connected.clone());
        r.register(
            "peer_messages_dropped",
            "Messages for the peer dropped: pushed out of a full queue, or too large to frame",
            m.peer_dropped.clone(),
        );
        r.register(
            "peer_round_trip_seconds",
            "Round trips of clock probes to the peer, less the peer's turnaround",
            m.peer_round_trip.clone(),
        );
        r.register(
            "clock_offset_seconds",
            "The peer's clock minus this node's, estimated from probe round trips (NTP's clock filter)",
            m.clock_offset.clone(),
        );
        r.register("wal_fsync_duration_seconds", "Time to append and fdatasync one batch", m.fsync_seconds.clone());
        r.register(
            "commit_duration_seconds",
            "Time from submitting a write here to its outcome being applied",
            m.commit_seconds.clone(),
        );
        r.register("wal_records_per_fsync", "Records made durable by one fsync", m.records_per_fsync.clone());
        r.register("inputs_per_batch", "Inputs stepped per I/O batch", m.inputs_per_batch.clone());
        Metrics { registry: r, ..m }
    }

    pub fn observe(&self, s: &Status, inputs: usize) {
        self.commit_index.set(s.commit_index as i64);
        self.applied_index.set(s.applied_index as i64);
        self.has_leader.set(i64::from(s.leader.is_some()));
        self.is_leader.set(i64::from(s.role == "leader"));
        if let Some(leader) = s.leader
            && self.last_leader.swap(leader, Ordering::Relaxed) != leader
        {
            self.leader_changes.inc();
        }
        self.promised_round.set(s.promised.round as i64);
        // The core counts campaigns since start; the counter follows it.
        let seen = self.elections.get();
        if s.elections_started > seen {
            self.elections.inc_by(s.elections_started - seen);
        }
        self.snapshot_index.set(s.snapshot_through as i64);
        self.log_start_index.set(s.log_start as i64);
        self.proposals_pending.set(s.pending_requests as i64);
        self.inputs_per_batch.observe(inputs as f64);
    }

    pub fn fsync(&self, took: Duration, records: usize) {
        self.fsync_seconds.observe(took.as_secs_f64());
        self.records_per_fsync.observe(records as f64);
    }

    pub fn applied(&self, slots: usize) {
        self.applied_slots.inc_by(slots as u64);
    }

    pub fn sent(&self, kind: &'static str) {
        self.messages_sent.get_or_create(&KindLabel { kind }).inc();
    }

    /// A write submitted here was applied, `took` after it was submitted.
    pub fn proposal_committed(&self, took: Duration) {
        self.proposals_committed.inc();
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// A write submitted here failed: refused, not applied, or outcome unknown.
    pub fn proposal_failed(&self) {
        self.proposals_failed.inc();
    }

    /// Record what the peer links report now. A peer whose clock offset
    /// is unknown (no recent probe) has no offset sample.
    pub fn peers(&self, peers: impl IntoIterator<Item = (NodeId, PeerSample)>) {
        for (id, sample) in peers {
            let label = PeerLabel { peer: id.to_string() };
            self.peer_connected.get_or_create(&label).set(i64::from(sample.connected));
            // The link counts drops itself; the counter never moves back.
            self.peer_dropped.get_or_create(&label).inner().fetch_max(sample.dropped, Ordering::Relaxed);
            match sample.clock_offset {
                Some(offset) => {
                    self.clock_offset.get_or_create(&label).set(offset);
                }
                None => {
                    self.clock_offset.remove(&label);
                }
            }
        }
    }

    /// One clock probe's round trip to `peer`.
    pub fn round_trip(&self, peer: NodeId, took: Duration) {
        self.peer_round_trip.get_or_create(&PeerLabel { peer: peer.to_string() }).observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition format (which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The Content-Type of `Metrics::render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests;
