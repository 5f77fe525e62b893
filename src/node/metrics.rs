//! Prometheus metrics of one node, exposed by the `metrics` operator command.

use crate::consensus::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    commit_index: Gauge,
    applied_index: Gauge,
    is_leader: Gauge,
    promised_round: Gauge,
    elections: Gauge,
    pending: Gauge,
    applied_slots: Counter,
    messages_sent: Family<KindLabel, Counter>,
    fsync_seconds: Histogram,
    records_per_fsync: Histogram,
    inputs_per_batch: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paxos");
        let m = Metrics {
            registry: Registry::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            is_leader: Gauge::default(),
            promised_round: Gauge::default(),
            elections: Gauge::default(),
            pending: Gauge::default(),
            applied_slots: Counter::default(),
            messages_sent: Family::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            records_per_fsync: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            inputs_per_batch: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
        };
        registry.register("commit_index", "Every slot below is chosen", m.commit_index.clone());
        registry.register("applied_index", "Every slot below is applied", m.applied_index.clone());
        registry.register("is_leader", "1 while this node leads", m.is_leader.clone());
        registry.register("promised_round", "Round of the ballot this acceptor promised", m.promised_round.clone());
        registry.register("elections_started", "Campaigns this node started", m.elections.clone());
        registry.register("pending_requests", "Client commands waiting here", m.pending.clone());
        registry.register("applied_slots", "Slots applied to the state machine", m.applied_slots.clone());
        registry.register("messages_sent", "Protocol messages sent, by type", m.messages_sent.clone());
        registry.register("wal_fsync_seconds", "Time to append and fdatasync one batch", m.fsync_seconds.clone());
        registry.register("wal_records_per_fsync", "Records made durable by one fsync", m.records_per_fsync.clone());
        registry.register("inputs_per_batch", "Inputs stepped per I/O batch", m.inputs_per_batch.clone());
        Metrics { registry, ..m }
    }

    pub fn observe(&self, s: &Status, inputs: usize) {
        self.commit_index.set(s.commit_index as i64);
        self.applied_index.set(s.applied_index as i64);
        self.is_leader.set(i64::from(s.role == "leader"));
        self.promised_round.set(s.promised.round as i64);
        self.elections.set(s.elections_started as i64);
        self.pending.set(s.pending_requests as i64);
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

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::new();
        m.sent("accept");
        m.sent("accept");
        m.fsync(Duration::from_micros(300), 5);
        let text = m.render();
        assert!(text.contains("paxos_messages_sent_total{kind=\"accept\"} 2"), "{text}");
        assert!(text.contains("paxos_wal_fsync_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
