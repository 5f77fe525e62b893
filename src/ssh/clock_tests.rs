use super::*;

/// 2026-12-01 00:00:00 UTC in microseconds: a plausible wall-clock time.
const NOW: i64 = 1_796_083_200_000_000;

/// A deterministic xorshift, so every run sees the same jitter.
struct Jitter(u64);

impl Jitter {
    /// Uniform in [0, bound).
    fn below(&mut self, bound: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as i64
    }
}

/// One probe to a peer whose clock reads `skew` µs ahead of ours, taking
/// `out` µs there, `turnaround` µs at the peer and `back` µs home.
fn exchange(t1: i64, skew: i64, out: i64, turnaround: i64, back: i64) -> Timestamps {
    let t2 = t1 + out + skew;
    let t3 = t2 + turnaround;
    Timestamps { sent: t1, peer_received: t2, peer_sent: t3, received: t1 + out + turnaround + back }
}

#[test]
fn one_exchange_gives_offset_delay_and_the_true_offset_within_half_the_delay() {
    // Symmetric paths: the offset is exact.
    let s = exchange(NOW, 750_000, 400, 50, 400).sample().unwrap();
    assert_eq!(s, Sample { offset_us: 750_000, delay_us: 800, received_us: NOW + 850 });
    // Asymmetric paths (5 ms out, 1 ms back): off by half the difference,
    // inside the error bound of half the delay.
    for skew in [750_000, -750_000, 0] {
        let s = exchange(NOW, skew, 5_000, 100, 1_000).sample().unwrap();
        assert_eq!(s.delay_us, 6_000);
        assert_eq!(s.offset_us, skew + 2_000, "skew {skew}");
        assert!((s.offset_us - skew).abs() <= s.delay_us / 2);
    }
}

#[test]
fn the_filter_tracks_a_skewed_peer_through_jitter_and_asymmetry() {
    for skew in [750_000, -750_000] {
        let mut jitter = Jitter(0x9e37_79b9_7f4a_7c15);
        let mut filter = ClockFilter::default();
        let mut t1 = NOW;
        for round in 0..200 {
            // A base of 200 µs each way, up to 20 ms of queueing on either
            // side, and now and then a very lopsided sample.
            let mut out = 200 + jitter.below(20_000);
            let back = 200 + jitter.below(3_000);
            if round % 17 == 0 {
                out += 400_000;
            }
            let turnaround = jitter.below(2_000);
            filter.add(exchange(t1, skew, out, turnaround, back).sample().unwrap());
            let e = filter.estimate().unwrap();
            assert!(
                (e.offset_us - skew).abs() <= e.error_us,
                "round {round}, skew {skew}: estimate {e:?} misses the true offset"
            );
            assert!(e.samples <= FILTER_SAMPLES);
            t1 += 1_000_000;
        }
        // The filter keeps the error small although single samples are bad.
        let e = filter.estimate().unwrap();
        assert!(e.error_us < 20_000, "{e:?}");
        assert_eq!(e.samples, FILTER_SAMPLES);
    }
}

#[test]
fn the_filter_prefers_the_smallest_delay_and_forgets_after_eight_samples() {
    let mut filter = ClockFilter::default();
    assert_eq!(filter.estimate(), None);
    let fast = exchange(NOW, 750_000, 100, 10, 100).sample().unwrap();
    filter.add(fast);
    // A slow, lopsided sample does not move the estimate.
    filter.add(exchange(NOW + 1_000_000, 750_000, 90_000, 10, 100).sample().unwrap());
    let e = filter.estimate().unwrap();
    assert_eq!((e.offset_us, e.delay_us, e.samples), (750_000, 200, 2));
    // The fast sample is 1.09 s older than the newest: 16 µs of drift.
    assert_eq!(e.error_us, 100 + 16);
    for i in 2..=FILTER_SAMPLES as i64 {
        filter.add(exchange(NOW + i * 1_000_000, 750_000, 5_000, 10, 5_000).sample().unwrap());
    }
    // The fast sample has left the window of eight.
    let e = filter.estimate().unwrap();
    assert_eq!((e.offset_us, e.delay_us, e.samples), (750_000, 10_000, FILTER_SAMPLES));
    filter.clear();
    assert!(filter.is_empty() && filter.estimate().is_none());
}

#[test]
fn a_peer_stepping_its_clock_is_followed_within_the_window() {
    let mut filter = ClockFilter::default();
    for i in 0..4 {
        filter.add(exchange(NOW + i * 1_000_000, 0, 300, 10, 300).sample().unwrap());
    }
    for i in 4..4 + FILTER_SAMPLES as i64 {
        filter.add(exchange(NOW + i * 1_000_000, -750_000, 400, 10, 400).sample().unwrap());
    }
    assert_eq!(filter.estimate().unwrap().offset_us, -750_000);
}

#[test]
fn nonsense_is_rejected_with_the_reason() {
    let good = exchange(NOW, 0, 100, 10, 100);
    let cases = [
        (Timestamps { sent: 0, ..good }, Rejected::Implausible(0)),
        (Timestamps { peer_received: -5, ..good }, Rejected::Implausible(-5)),
        (Timestamps { peer_sent: i64::MAX, ..good }, Rejected::Implausible(i64::MAX)),
        (Timestamps { received: i64::MIN, ..good }, Rejected::Implausible(i64::MIN)),
        (Timestamps { peer_sent: good.peer_received - 1, ..good }, Rejected::NegativeTurnaround(-1)),
        (Timestamps { received: good.sent - 1, ..good }, Rejected::NegativeDelay(-11)),
        // The peer claims a turnaround longer than the whole round trip.
        (Timestamps { peer_sent: good.peer_received + 500, ..good }, Rejected::NegativeDelay(-290)),
        (Timestamps { received: good.sent + MAX_DELAY_US + 11, ..good }, Rejected::TooSlow(MAX_DELAY_US + 1)),
    ];
    for (timestamps, reason) in cases {
        assert_eq!(timestamps.sample(), Err(reason), "{timestamps:?}");
        assert!(!reason.to_string().is_empty());
    }
}

#[test]
fn arbitrary_timestamps_never_panic_and_accepted_ones_are_sane() {
    let mut jitter = Jitter(12345);
    let extremes = [i64::MIN, -1, 0, 1, MAX_TIMESTAMP_US, MAX_TIMESTAMP_US + 1, i64::MAX];
    let pick = |j: &mut Jitter| -> i64 {
        match j.below(3) {
            0 => extremes[j.below(extremes.len() as i64) as usize],
            1 => NOW + j.below(2_000_000) - 1_000_000,
            _ => (j.0 as i64).wrapping_mul(0x5851_f42d),
        }
    };
    let mut filter = ClockFilter::default();
    for _ in 0..20_000 {
        let t = Timestamps {
            sent: pick(&mut jitter),
            peer_received: pick(&mut jitter),
            peer_sent: pick(&mut jitter),
            received: pick(&mut jitter),
        };
        if let Ok(s) = t.sample() {
            assert!((0..=MAX_DELAY_US).contains(&s.delay_us), "{t:?} -> {s:?}");
            assert!(s.offset_us.abs() <= MAX_TIMESTAMP_US, "{t:?} -> {s:?}");
            filter.add(s);
            let e = filter.estimate().unwrap();
            assert!(e.error_us >= 0);
        }
    }
}
