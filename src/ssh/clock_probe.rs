//! Clock probes on `paxos-peer` channels. The node that accepted a channel
//! writes a `clock_probe` frame on it about once a second; the dialling
//! node's link answers on the same channel with a `clock_echo` carrying
//! its receive and send times; the four timestamps make one sample for
//! `clock`'s filter, handed to the node's `ClockSink`.
//!
//! Why the accepting side probes: a link from an older version reads and
//! ignores whatever the server writes, so it never sees a probe it could
//! choke on, and an older server never probes, so a newer link never sends
//! an echo an older node would refuse. Mixed versions keep their channels
//! during a rolling upgrade, without a protocol version bump; they only go
//! without offsets until both ends are upgraded.
//!
//! Each node accepts a channel from every peer that dials it, so each node
//! estimates every peer whose link to it is up.

use super::clock::{Rejected, Sample, Timestamps};
use super::frame::FrameError;
use super::wall_clock::WallClock;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The `type` of the probe the accepting node writes.
pub const PROBE_TYPE: &str = "clock_probe";
/// The `type` of the dialling node's answer.
pub const ECHO_TYPE: &str = "clock_echo";
/// Bound on a clock frame: the accepting node writes nothing else, so a
/// link reads its channel with this limit.
pub const CLOCK_FRAME_MAX: usize = 1024;
/// How often a probe goes out on each channel.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Probes awaiting an echo, per channel; an echo to an older one is ignored.
const OUTSTANDING: usize = 4;

/// The frames of the exchange, tagged like the consensus messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClockFrame {
    /// t1, on the prober's clock.
    ClockProbe { origin: i64 },
    /// t1 echoed, with t2 and t3 on the answering node's clock.
    ClockEcho { origin: i64, received: i64, sent: i64 },
}

impl ClockFrame {
    pub fn encode(&self) -> Bytes {
        // Three integers and a tag always serialize.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(frame: &[u8]) -> Result<ClockFrame, FrameError> {
        serde_json::from_slice(frame).map_err(|e| FrameError::Malformed(format!("clock frame: {e}")))
    }
}

/// The dialling side: the origin (t1) of a probe frame, for `echo_frame`
/// to answer; anything but a probe is an error.
pub fn read_probe(frame: &[u8]) -> Result<i64, FrameError> {
    match ClockFrame::decode(frame)? {
        ClockFrame::ClockProbe { origin } => Ok(origin),
        ClockFrame::ClockEcho { .. } => Err(FrameError::UnknownType {
            kind: ECHO_TYPE.into(),
            detail: "only the dialling node sends clock echoes".into(),
        }),
    }
}

/// The answer to the probe `origin` that arrived at `received`, sent now.
pub fn echo_frame(origin: i64, received: i64, clock: &WallClock) -> Bytes {
    ClockFrame::ClockEcho { origin, received, sent: clock.now_us() }.encode()
}

/// Where a node's samples go.
pub trait ClockSink: Send + Sync + 'static {
    /// `peer` opened a new channel: it may be another process with another
    /// clock, so what was measured before no longer counts.
    fn restart(&self, peer: u64);
    /// One accepted sample.
    fn sample(&self, peer: u64, sample: Sample);
}

/// What a server needs to probe its peer channels.
#[derive(Clone)]
pub struct ClockExchange {
    pub clock: WallClock,
    pub sink: Arc<dyn ClockSink>,
    pub interval: Duration,
}

/// The probing side of one channel: the probes still awaiting an echo.
#[derive(Debug, Default)]
pub struct Prober {
    outstanding: VecDeque<i64>,
}

/// What became of an echo.
#[derive(Debug, PartialEq, Eq)]
pub enum Echoed {
    Sample(Sample),
    /// It answers no probe in flight (late, repeated, or made up).
    Unmatched,
    Rejected(Rejected),
}

impl Prober {
    /// A probe sent at `now`, as a frame body.
    pub fn probe(&mut self, now: i64) -> Bytes {
        if self.outstanding.len() >= OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(now);
        ClockFrame::ClockProbe { origin: now }.encode()
    }

    /// An echo frame's fields, arrived at `now`.
    pub fn echo(&mut self, origin: i64, received: i64, sent: i64, now: i64) -> Echoed {
        let Some(at) = self.outstanding.iter().position(|t| *t == origin) else {
            return Echoed::Unmatched;
        };
        // Older probes will not be answered in order any more; drop them too.
        self.outstanding.drain(..=at);
        let t = Timestamps { sent: origin, peer_received: received, peer_sent: sent, received: now };
        match t.sample() {
            Ok(sample) => Echoed::Sample(sample),
            Err(reason) => Echoed::Rejected(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_083_200_000_000;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let probe = ClockFrame::ClockProbe { origin: T };
        assert_eq!(probe.encode(), Bytes::from(format!(r#"{{"type":"clock_probe","origin":{T}}}"#)));
        assert_eq!(read_probe(&probe.encode()).unwrap(), T);
        let echo = echo_frame(T, T + 5, &WallClock::system());
        match ClockFrame::decode(&echo).unwrap() {
            ClockFrame::ClockEcho { origin, received, sent } => {
                assert_eq!((origin, received), (T, T + 5));
                assert!(sent > 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_probe(&echo), Err(FrameError::UnknownType { .. })));
        for bad in [
            &br#"{"type":"clock_probe"}"#[..],
            br#"{"type":"clock_probe","origin":1.5}"#,
            br#"{"type":"clock_probe","origin":99999999999999999999}"#,
            br#"{"type":"clock_probe","origin":"now"}"#,
            br#"{"type":"prepare","origin":1}"#,
            b"\xff\xfe",
            b"",
        ] {
            assert!(matches!(read_probe(bad), Err(FrameError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        // Unknown fields are ignored, so a later version may add some.
        assert_eq!(read_probe(br#"{"type":"clock_probe","origin":7,"nonce":1}"#).unwrap(), 7);
    }

    #[test]
    fn echoes_must_answer_a_probe_in_flight() {
        let mut prober = Prober::default();
        prober.probe(T);
        prober.probe(T + 1_000_000);
        // Not a probe this channel sent.
        assert_eq!(prober.echo(T + 7, T + 100, T + 110, T + 300), Echoed::Unmatched);
        // The newer probe's echo: the older probe is given up.
        let Echoed::Sample(s) = prober.echo(T + 1_000_000, T + 1_000_100, T + 1_000_110, T + 1_000_200) else {
            panic!("no sample");
        };
        assert_eq!((s.offset_us, s.delay_us), (5, 190));
        assert_eq!(prober.echo(T, T + 100, T + 110, T + 1_000_300), Echoed::Unmatched);
        // A repeated echo is unmatched too.
        assert_eq!(prober.echo(T + 1_000_000, T + 1_000_100, T + 1_000_110, T + 1_000_200), Echoed::Unmatched);
        // A matched echo with impossible times is rejected, not trusted.
        prober.probe(T + 2_000_000);
        assert!(matches!(prober.echo(T + 2_000_000, -1, 5, T + 2_000_100), Echoed::Rejected(_)));
        // Only the last few probes are remembered.
        for i in 0..10 {
            prober.probe(T + i);
        }
        assert_eq!(prober.outstanding.len(), OUTSTANDING);
    }
}
