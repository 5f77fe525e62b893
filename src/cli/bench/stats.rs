//! Latency samples, their percentiles, the tally of failed commands, and
//! the per-command record of `--ack-log`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latencies of one kind of command, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        self.micros.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Percentiles over everything recorded; `None` without samples.
    pub fn summary(mut self) -> Option<Latency> {
        self.micros.sort_unstable();
        let sorted = &self.micros;
        let total: u128 = sorted.iter().map(|&us| u128::from(us)).sum();
        Some(Latency {
            min_us: *sorted.first()?,
            mean_us: u64::try_from(total / sorted.len() as u128).unwrap_or(u64::MAX),
            p50_us: percentile(sorted, 500)?,
            p90_us: percentile(sorted, 900)?,
            p99_us: percentile(sorted, 990)?,
            max_us: *sorted.last()?,
        })
    }
}

/// Nearest-rank percentile of ascending `sorted` values, `per_mille`
/// thousandths (990 is p99): the smallest sample with at least that share
/// of all samples at or below it. Integer arithmetic, so p99 of 100 samples
/// is exactly the 99th.
pub fn percentile(sorted: &[u64], per_mille: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (per_mille.min(1000) as usize * sorted.len()).div_ceil(1000);
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency percentiles of one kind of command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub min_us: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Commands that did not get the answer they should have.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    pub count: u64,
    /// By the node's error kind ("timeout", "not_leader", ...), or what
    /// the benchmark saw ("unexpected", "no_answer", ...).
    pub by_kind: BTreeMap<String, u64>,
    /// The text of the first one, to start looking from.
    pub first: Option<String>,
}

impl Errors {
    pub fn add(&mut self, kind: &str, text: impl Into<String>) {
        self.count += 1;
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(text.into());
        }
    }

    /// Adds `other`; the first error of `self` stays first.
    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// One answered command as `--ack-log` records it: when it was sent and
/// when its answer came, on the wall clock (CLOCK_REALTIME, which other
/// processes of the machine read too), and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub sent_us: u64,
    pub answered_us: u64,
    pub write: bool,
    /// `None` for a success, else the error's kind as in `errors.by_kind`.
    pub failure: Option<String>,
}

/// Microseconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Writes `acks` in the order of their answers, one line each:
/// `SENT_US ANSWERED_US put|get ok|KIND`.
pub fn write_acks(out: &mut impl Write, acks: &mut [Ack]) -> io::Result<()> {
    acks.sort_by_key(|a| (a.answered_us, a.sent_us));
    for a in acks.iter() {
        let op = if a.write { "put" } else { "get" };
        // One word, so that the line splits into exactly four fields.
        let outcome = a.failure.as_deref().map_or_else(
            || "ok".to_owned(),
            |k| if k.is_empty() { "error".to_owned() } else { k.replace(char::is_whitespace, "_") },
        );
        writeln!(out, "{} {} {op} {outcome}", a.sent_us, a.answered_us)?;
    }
    out.flush()
}

/// Operations per second over `elapsed`; zero for an empty interval.
pub fn per_second(ops: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { ops as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 500), Some(50));
        assert_eq!(percentile(&hundred, 900), Some(90));
        assert_eq!(percentile(&hundred, 990), Some(99));
        assert_eq!(percentile(&hundred, 1000), Some(100));
        assert_eq!(percentile(&hundred, 0), Some(1));

        let ten: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(percentile(&ten, 500), Some(50));
        // 99% of 10 samples is 9.9: the 10th is the first with 99% at or below it.
        assert_eq!(percentile(&ten, 990), Some(100));
        assert_eq!(percentile(&ten, 900), Some(90));
        assert_eq!(percentile(&ten, 910), Some(100));

        assert_eq!(percentile(&[7], 500), Some(7));
        assert_eq!(percentile(&[7], 990), Some(7));
        assert_eq!(percentile(&[], 500), None);
    }

    #[test]
    fn a_summary_sorts_its_samples_first() {
        let mut samples = Samples::default();
        for ms in [9, 1, 5, 3, 7, 2, 8, 4, 10, 6] {
            samples.record(Duration::from_millis(ms));
        }
        let l = samples.summary().unwrap();
        assert_eq!(
            l,
            Latency { min_us: 1000, mean_us: 5500, p50_us: 5000, p90_us: 9000, p99_us: 10_000, max_us: 10_000 }
        );
        assert_eq!(Samples::default().summary(), None);
    }

    #[test]
    fn one_slow_command_in_a_hundred_shows_at_p99_but_not_p90() {
        let mut samples = Samples::default();
        for _ in 0..99 {
            samples.record(Duration::from_micros(200));
        }
        samples.record(Duration::from_millis(50));
        let l = samples.summary().unwrap();
        assert_eq!((l.p50_us, l.p90_us, l.p99_us, l.max_us), (200, 200, 200, 50_000));
        let mut samples = Samples::default();
        for i in 0..100 {
            samples.record(Duration::from_micros(if i < 98 { 200 } else { 50_000 }));
        }
        assert_eq!(samples.summary().unwrap().p99_us, 50_000);
    }

    #[test]
    fn errors_keep_the_first_text_and_count_by_kind() {
        let mut a = Errors::default();
        a.add("timeout", "first");
        a.add("timeout", "second");
        let mut b = Errors::default();
        b.add("not_leader", "third");
        a.merge(b);
        assert_eq!(a.count, 3);
        assert_eq!(a.first.as_deref(), Some("first"));
        assert_eq!(a.by_kind.get("timeout"), Some(&2));
        assert_eq!(a.by_kind.get("not_leader"), Some(&1));

        let mut empty = Errors::default();
        let mut c = Errors::default();
        c.add("unexpected", "later");
        empty.merge(c);
        assert_eq!(empty.first.as_deref(), Some("later"));
    }

    #[test]
    fn the_ack_log_is_ordered_by_answer_with_one_word_outcomes() {
        let ack = |sent_us, answered_us, write, failure: Option<&str>| Ack {
            sent_us,
            answered_us,
            write,
            failure: failure.map(str::to_owned),
        };
        let mut acks = vec![
            ack(30, 40, true, None),
            ack(10, 1_500_000, true, Some("timeout")),
            ack(5, 20, false, Some("two words")),
            ack(1, 20, true, Some("")),
        ];
        let mut out = Vec::new();
        write_acks(&mut out, &mut acks).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1 20 put error\n5 20 get two_words\n30 40 put ok\n10 1500000 put timeout\n"
        );
        assert_eq!(unix_micros(UNIX_EPOCH + Duration::from_micros(1_234_567)), 1_234_567);
        assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn throughput_of_an_empty_interval_is_zero() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
    }
}
