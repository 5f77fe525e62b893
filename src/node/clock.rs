//! Every peer's clock as this node estimates it (`ssh::clock`'s filter fed
//! by `ssh::clock_probe`), for `status`, `members` and the metrics, and a
//! warning each time a peer's offset crosses `clock_skew_warn_ms`.
//!
//! Offsets are information for operators only: the consensus core counts
//! ticks and never sees them.

use super::metrics::Metrics;
use crate::consensus::ballot::NodeId;
use crate::ssh::clock::{ClockFilter, Estimate, Sample};
use crate::ssh::clock_probe::ClockSink;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// An estimate with no sample for this long is not shown: the peer is
/// gone, or its link to this node is down.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

struct PeerState {
    filter: ClockFilter,
    updated: Instant,
    /// Whether the offset is past the threshold (warned once per crossing).
    over: bool,
}

pub struct PeerClocks {
    me: NodeId,
    warn_over_us: i64,
    metrics: Arc<Metrics>,
    peers: Mutex<BTreeMap<NodeId, PeerState>>,
}

impl PeerClocks {
    pub fn new(me: NodeId, warn_over_ms: u64, metrics: Arc<Metrics>) -> PeerClocks {
        let warn_over_us = i64::try_from(warn_over_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        PeerClocks { me, warn_over_us, metrics, peers: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, PeerState>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer`'s estimate, unless it is stale or there is none.
    pub fn estimate(&self, peer: NodeId) -> Option<Estimate> {
        let now = Instant::now();
        self.lock().get(&peer).filter(|p| now.duration_since(p.updated) < STALE_AFTER)?.filter.estimate()
    }

    /// Every peer with a current estimate, by id.
    pub fn estimates(&self) -> Vec<(NodeId, Estimate)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, p)| now.duration_since(p.updated) < STALE_AFTER)
            .filter_map(|(id, p)| Some((*id, p.filter.estimate()?)))
            .collect()
    }

    /// Logs when `estimate` takes `peer` past the threshold, and when it
    /// comes back under 90% of it (so an offset hovering at the threshold
    /// does not log every second).
    fn check_threshold(&self, peer: NodeId, state: &mut PeerState, estimate: &Estimate) {
        let skew = estimate.offset_us.saturating_abs();
        let side = if estimate.offset_us > 0 { "ahead of" } else { "behind" };
        let threshold_ms = self.warn_over_us / 1000;
        if !state.over && skew > self.warn_over_us {
            state.over = true;
            warn!(
                node = self.me,
                peer,
                offset_ms = estimate.offset_ms(),
                error_ms = estimate.error_ms(),
                "the clock of node {peer} is {:.1} ms {side} this node's (±{:.1} ms), past clock_skew_warn_ms \
                 ({threshold_ms} ms); consensus does not depend on clocks, but timestamps in logs and data \
                 from the two machines disagree: check NTP on both",
                skew as f64 / 1000.0,
                estimate.error_ms(),
            );
        } else if state.over && skew.saturating_mul(10) <= self.warn_over_us.saturating_mul(9) {
            state.over = false;
            info!(
                node = self.me,
                peer,
                offset_ms = estimate.offset_ms(),
                "the clock of node {peer} is back within clock_skew_warn_ms ({threshold_ms} ms): {:.1} ms {side} this node's",
                skew as f64 / 1000.0,
            );
        }
    }
}

impl ClockSink for PeerClocks {
    fn restart(&self, peer: u64) {
        if let Some(state) = self.lock().get_mut(&peer) {
            state.filter.clear();
        }
    }

    fn sample(&self, peer: u64, sample: Sample) {
        self.metrics.round_trip(peer, Duration::from_micros(sample.delay_us.max(0) as u64));
        let mut peers = self.lock();
        let state = peers.entry(peer).or_insert_with(|| PeerState {
            filter: ClockFilter::default(),
            updated: Instant::now(),
            over: false,
        });
        state.filter.add(sample);
        state.updated = Instant::now();
        if let Some(estimate) = state.filter.estimate() {
            self.check_threshold(peer, state, &estimate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::clock::Timestamps;

    const T: i64 = 1_796_083_200_000_000;

    fn sample(skew_us: i64) -> Sample {
        Timestamps { sent: T, peer_received: T + 100 + skew_us, peer_sent: T + 110 + skew_us, received: T + 210 }
            .sample()
            .unwrap()
    }

    #[test]
    fn estimates_per_peer_and_the_threshold_crossings() {
        let clocks = PeerClocks::new(1, 500, Arc::new(Metrics::new()));
        assert!(clocks.estimates().is_empty() && clocks.estimate(2).is_none());
        clocks.sample(2, sample(750_000));
        clocks.sample(3, sample(-20_000));
        let all = clocks.estimates();
        assert_eq!(all.iter().map(|(id, e)| (*id, e.offset_us)).collect::<Vec<_>>(), [(2, 750_000), (3, -20_000)]);
        assert_eq!(clocks.estimate(2).unwrap().delay_us, 200);
        assert!(clocks.lock()[&2].over && !clocks.lock()[&3].over);
        // Under the threshold but not under 90% of it: still over.
        clocks.restart(2);
        clocks.sample(2, sample(460_000));
        assert!(clocks.lock()[&2].over);
        clocks.restart(2);
        clocks.sample(2, sample(440_000));
        assert!(!clocks.lock()[&2].over);
        // A restart forgets the samples; the next one stands alone.
        clocks.restart(2);
        assert!(clocks.estimate(2).is_none());
        clocks.sample(2, sample(-600_000));
        assert!(clocks.lock()[&2].over);
        assert_eq!(clocks.estimate(2).unwrap().offset_us, -600_000);
    }
}
