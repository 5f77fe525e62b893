//! A peer's clock offset and the round trip to it, estimated the way NTP
//! does from the four wall-clock timestamps of one probe: `t1` this node
//! sent it, `t2` the peer received it, `t3` the peer answered, `t4` the
//! answer arrived (microseconds since the Unix epoch, `t2` and `t3` on the
//! peer's clock).
//!
//! - offset = ((t2 - t1) + (t3 - t4)) / 2, the peer's clock minus ours;
//! - delay = (t4 - t1) - (t3 - t2), the network round trip without the
//!   peer's turnaround;
//! - error bound = delay / 2: whatever the split of the delay between the
//!   two directions, the true offset lies within it.
//!
//! Smoothing is NTP's clock filter (RFC 5905, section 10): keep the last
//! `FILTER_SAMPLES` samples and trust the one with the smallest delay, as
//! the one least disturbed by queueing. An EWMA would average a queued,
//! lopsided sample into the result; the filter ignores it and so keeps the
//! error bound honest. The chosen sample's bound grows with its age at NTP's
//! frequency tolerance (`DRIFT_PPM`), as the clocks may have drifted since.
//!
//! Peers' timestamps are untrusted: a sample that cannot be a real exchange
//! is rejected with the reason, never panicked on. Pure: no I/O, no clock.

use std::collections::VecDeque;

/// Samples the filter keeps (NTP's clock filter keeps 8).
pub const FILTER_SAMPLES: usize = 8;
/// Latest plausible wall-clock time, 3000-01-01 in microseconds. Keeping
/// timestamps in (0, this] also keeps every sum and difference of them far
/// from overflowing.
pub const MAX_TIMESTAMP_US: i64 = 32_503_680_000_000_000;
/// A round trip or a turnaround longer than this tells nothing useful.
pub const MAX_DELAY_US: i64 = 10_000_000;
/// How fast an old sample's error bound grows: 15 ppm, NTP's tolerance.
pub const DRIFT_PPM: i64 = 15;

/// The four timestamps of one probe, in microseconds of wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamps {
    /// t1: this node sent the probe (this node's clock).
    pub sent: i64,
    /// t2: the peer received it (the peer's clock).
    pub peer_received: i64,
    /// t3: the peer sent its answer (the peer's clock).
    pub peer_sent: i64,
    /// t4: the answer arrived (this node's clock).
    pub received: i64,
}

/// One exchange's measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The peer's clock minus this node's.
    pub offset_us: i64,
    /// Round trip without the peer's turnaround; never negative.
    pub delay_us: i64,
    /// t4, which dates the sample on this node's clock.
    pub received_us: i64,
}

/// Why an exchange gives no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("timestamp {0} µs is not a plausible wall-clock time")]
    Implausible(i64),
    #[error("the peer's answer left {0} µs before its probe arrived")]
    NegativeTurnaround(i64),
    #[error("the round trip comes out negative ({0} µs)")]
    NegativeDelay(i64),
    #[error("the round trip or turnaround took {0} µs, too long to tell an offset")]
    TooSlow(i64),
}

impl Timestamps {
    /// The offset and delay of this exchange, or why it cannot be one.
    pub fn sample(&self) -> Result<Sample, Rejected> {
        let Timestamps { sent: t1, peer_received: t2, peer_sent: t3, received: t4 } = *self;
        for t in [t1, t2, t3, t4] {
            if t <= 0 || t > MAX_TIMESTAMP_US {
                return Err(Rejected::Implausible(t));
            }
        }
        // In range, so no difference or sum below can overflow; saturating
        // arithmetic all the same.
        let turnaround = t3.saturating_sub(t2);
        if turnaround < 0 {
            return Err(Rejected::NegativeTurnaround(turnaround));
        }
        let elapsed = t4.saturating_sub(t1);
        let delay = elapsed.saturating_sub(turnaround);
        if delay < 0 {
            return Err(Rejected::NegativeDelay(delay));
        }
        if delay > MAX_DELAY_US || turnaround > MAX_DELAY_US {
            return Err(Rejected::TooSlow(delay.max(turnaround)));
        }
        let offset = t2.saturating_sub(t1).saturating_add(t3.saturating_sub(t4)) / 2;
        Ok(Sample { offset_us: offset, delay_us: delay, received_us: t4 })
    }
}

/// What the filter currently believes about a peer's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The peer's clock minus this node's.
    pub offset_us: i64,
    /// The true offset lies within `offset_us ± error_us`.
    pub error_us: i64,
    /// The round trip of the sample the estimate rests on.
    pub delay_us: i64,
    /// Samples in the filter.
    pub samples: usize,
}

impl Estimate {
    pub fn offset_ms(&self) -> f64 {
        self.offset_us as f64 / 1000.0
    }
    pub fn error_ms(&self) -> f64 {
        self.error_us as f64 / 1000.0
    }
    pub fn round_trip_ms(&self) -> f64 {
        self.delay_us as f64 / 1000.0
    }
}

/// NTP's clock filter: the last `FILTER_SAMPLES` samples, newest last.
#[derive(Clone, Debug, Default)]
pub struct ClockFilter {
    samples: VecDeque<Sample>,
}

impl ClockFilter {
    pub fn add(&mut self, sample: Sample) {
        if self.samples.len() >= FILTER_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Forgets every sample (the peer restarted: its clock may be another).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The sample with the smallest delay (the newest of equals), its error
    /// bound grown by its age; `None` before the first sample.
    pub fn estimate(&self) -> Option<Estimate> {
        let newest = self.samples.back()?;
        let best = self.samples.iter().rev().min_by_key(|s| s.delay_us)?;
        let age = newest.received_us.saturating_sub(best.received_us).max(0);
        let drift = age.saturating_mul(DRIFT_PPM) / 1_000_000;
        // Half the delay, rounded up: the bound must not be too tight.
        let half = best.delay_us / 2 + best.delay_us % 2;
        Some(Estimate {
            offset_us: best.offset_us,
            error_us: half.saturating_add(drift),
            delay_us: best.delay_us,
            samples: self.samples.len(),
        })
    }
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;
