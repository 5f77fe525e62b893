//! `paxos_wal_fsync_duration_seconds` from a node's Prometheus text, and
//! its 99th percentile between two refreshes.

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{HistogramValue, OpenMetricsValue, PrometheusValue};

/// The fsync latency histogram the nodes export.
pub const FSYNC_FAMILY: &str = "paxos_wal_fsync_duration_seconds";

/// A cumulative histogram: (upper bound in seconds, observations at or
/// below it), bounds ascending, the last one `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The family `name` (unlabelled) from an exposition in OpenMetrics
    /// text (what the nodes write) or, failing that, the Prometheus text
    /// format. `Ok(None)` when the exposition has no such histogram.
    pub fn from_exposition(text: &str, name: &str) -> Result<Option<Histogram>, String> {
        let value = match parse_openmetrics(text) {
            Ok(exposition) => exposition.families.get(name).and_then(|family| {
                family.iter_samples().find_map(|sample| match &sample.value {
                    OpenMetricsValue::Histogram(h) => Some(h.clone()),
                    _ => None,
                })
            }),
            Err(openmetrics) => {
                let exposition = parse_prometheus(text)
                    .map_err(|e| format!("unreadable metrics (OpenMetrics: {openmetrics:?}; Prometheus: {e:?})"))?;
                exposition.families.get(name).and_then(|family| {
                    family.iter_samples().find_map(|sample| match &sample.value {
                        PrometheusValue::Histogram(h) => Some(h.clone()),
                        _ => None,
                    })
                })
            }
        };
        value.map(Histogram::from_value).transpose()
    }

    fn from_value(value: HistogramValue) -> Result<Histogram, String> {
        let mut buckets: Vec<(f64, f64)> = value.buckets.iter().map(|b| (b.upper_bound, b.count.as_f64())).collect();
        if buckets.iter().any(|(bound, count)| bound.is_nan() || !count.is_finite() || *count < 0.0) {
            return Err("a histogram bucket is not a number".into());
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err("histogram buckets are not cumulative".into());
        }
        if buckets.last().is_none_or(|(bound, _)| *bound != f64::INFINITY) {
            let total = value.count.map(|c| c as f64).or_else(|| buckets.last().map(|b| b.1)).unwrap_or(0.0);
            buckets.push((f64::INFINITY, total));
        }
        Ok(Histogram { buckets })
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The observations made since `earlier` (the same buckets, counters
    /// that did not go back); `None` when the node restarted or changed its
    /// buckets in between.
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if self.buckets.len() != earlier.buckets.len() {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (now, then) in self.buckets.iter().zip(&earlier.buckets) {
            if now.0 != then.0 || now.1 < then.1 {
                return None;
            }
            buckets.push((now.0, now.1 - then.1));
        }
        Some(Histogram { buckets })
    }

    /// The `q` quantile (0 < q < 1) in seconds, interpolated linearly
    /// inside its bucket as Prometheus' `histogram_quantile` does; the
    /// highest finite bound when it falls in the `+Inf` bucket. `None`
    /// with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound == f64::INFINITY {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let share = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
                return Some(lower.0 + (bound - lower.0) * share);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }
}

/// The fsync p99 in seconds over the last refresh, or over the node's whole
/// life when nothing was synced in between (or there is no earlier sample).
pub fn fsync_p99(now: &Histogram, earlier: Option<&Histogram>) -> Option<f64> {
    match earlier.and_then(|e| now.since(e)) {
        Some(delta) if delta.count() > 0.0 => delta.quantile(0.99),
        _ => now.quantile(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(buckets: &[(&str, u64)], count: u64) -> String {
        let mut text = String::from(
            "# HELP paxos_wal_fsync_duration_seconds Time to append and fdatasync one batch.\n\
             # TYPE paxos_wal_fsync_duration_seconds histogram\n",
        );
        text.push_str(&format!("paxos_wal_fsync_duration_seconds_sum {}\n", count as f64 * 0.001));
        text.push_str(&format!("paxos_wal_fsync_duration_seconds_count {count}\n"));
        for (le, n) in buckets {
            text.push_str(&format!("paxos_wal_fsync_duration_seconds_bucket{{le=\"{le}\"}} {n}\n"));
        }
        text.push_str(
            "# HELP paxos_commit_index Every slot below is chosen.\n# TYPE paxos_commit_index gauge\n\
             paxos_commit_index 42\n# EOF\n",
        );
        text
    }

    #[test]
    fn reads_the_histogram_from_openmetrics_text() {
        let text = exposition(&[("0.0001", 0), ("0.001", 90), ("0.01", 100), ("+Inf", 100)], 100);
        let h = Histogram::from_exposition(&text, FSYNC_FAMILY).unwrap().unwrap();
        assert_eq!(h.buckets, vec![(0.0001, 0.0), (0.001, 90.0), (0.01, 100.0), (f64::INFINITY, 100.0)]);
        assert_eq!(Histogram::from_exposition(&text, "paxos_nothing").unwrap(), None);
    }

    #[test]
    fn reads_the_prometheus_text_format_too() {
        let text = exposition(&[("0.001", 3), ("+Inf", 4)], 4).replace("# EOF\n", "");
        let h = Histogram::from_exposition(&text, FSYNC_FAMILY).unwrap().unwrap();
        assert_eq!(h.count(), 4.0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Histogram::from_exposition("paxos_wal{{{ 1 2 3\n", FSYNC_FAMILY).is_err());
    }

    #[test]
    fn p99_interpolates_inside_its_bucket() {
        // 100 observations: 90 at or below 1 ms, 10 between 1 and 10 ms.
        // Rank 99 is the 9th of the 10 in (1 ms, 10 ms]: 1 + 9 * 0.9 = 9.1 ms.
        let h = Histogram { buckets: vec![(0.001, 90.0), (0.01, 100.0), (f64::INFINITY, 100.0)] };
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 0.0091).abs() < 1e-9, "{p99}");
        // In the first bucket it interpolates from zero.
        let h = Histogram { buckets: vec![(0.002, 100.0), (f64::INFINITY, 100.0)] };
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn p99_in_the_overflow_bucket_is_the_highest_bound() {
        let h = Histogram { buckets: vec![(0.001, 50.0), (0.01, 90.0), (f64::INFINITY, 100.0)] };
        assert_eq!(h.quantile(0.99), Some(0.01));
    }

    #[test]
    fn no_observations_no_p99() {
        let h = Histogram { buckets: vec![(0.001, 0.0), (f64::INFINITY, 0.0)] };
        assert_eq!(h.quantile(0.99), None);
        assert_eq!(fsync_p99(&h, None), None);
    }

    #[test]
    fn p99_comes_from_the_delta_between_refreshes() {
        // Slow fsyncs long ago, fast ones since the last refresh.
        let before = Histogram { buckets: vec![(0.001, 0.0), (0.1, 100.0), (f64::INFINITY, 100.0)] };
        let after = Histogram { buckets: vec![(0.001, 100.0), (0.1, 200.0), (f64::INFINITY, 200.0)] };
        let p99 = fsync_p99(&after, Some(&before)).unwrap();
        assert!((p99 - 0.00099).abs() < 1e-9, "{p99}");
        // The cumulative figure would be dominated by the old, slow ones.
        assert!(after.quantile(0.99).unwrap() > 0.09);
    }

    #[test]
    fn p99_is_cumulative_without_new_observations_or_after_a_restart() {
        let h = Histogram { buckets: vec![(0.001, 0.0), (0.1, 100.0), (f64::INFINITY, 100.0)] };
        assert_eq!(fsync_p99(&h, Some(&h)), h.quantile(0.99));
        // Counters that went back: the node restarted; no delta.
        let restarted = Histogram { buckets: vec![(0.001, 5.0), (0.1, 5.0), (f64::INFINITY, 5.0)] };
        assert_eq!(restarted.since(&h), None);
        assert_eq!(fsync_p99(&restarted, Some(&h)), restarted.quantile(0.99));
    }
}
