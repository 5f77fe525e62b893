//! The wall clock that clock probes read, with an optional skew: a test and
//! drill hook that makes one daemon's clock read ahead or behind by a fixed
//! amount, set at startup with `PAXOS_CLOCK_SKEW_MS` (like `PAXOS_FAULT_FILE`
//! in `faults`; unset in production). Only the probe timestamps see the
//! skew; nothing else in the node reads this clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that skews a daemon's probe clock, in
/// milliseconds (negative: behind).
pub const CLOCK_SKEW_ENV: &str = "PAXOS_CLOCK_SKEW_MS";
/// The largest skew accepted, either way: one day.
pub const MAX_SKEW_MS: i64 = 86_400_000;

/// Microseconds since the Unix epoch, plus a fixed skew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    skew_us: i64,
}

impl WallClock {
    /// The system clock as it is.
    pub fn system() -> WallClock {
        WallClock::default()
    }

    /// The system clock shifted by `skew_ms` (at most `MAX_SKEW_MS` either way).
    pub fn skewed(skew_ms: i64) -> Result<WallClock, String> {
        if !(-MAX_SKEW_MS..=MAX_SKEW_MS).contains(&skew_ms) {
            return Err(format!("a clock skew of {skew_ms} ms is beyond the limit of ±{MAX_SKEW_MS} ms"));
        }
        Ok(WallClock { skew_us: skew_ms * 1000 })
    }

    /// The clock `PAXOS_CLOCK_SKEW_MS` asks for, the system clock without it.
    pub fn from_env() -> Result<WallClock, String> {
        match std::env::var(CLOCK_SKEW_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(WallClock::system()),
            Err(std::env::VarError::NotUnicode(raw)) => Err(format!("{CLOCK_SKEW_ENV}={raw:?} is not text")),
            Ok(text) => WallClock::parse(&text),
        }
    }

    /// Parses a skew in whole milliseconds, e.g. "2000" or "-750".
    pub fn parse(text: &str) -> Result<WallClock, String> {
        let ms: i64 = text.trim().parse().map_err(|_| {
            format!("{CLOCK_SKEW_ENV}={text:?} is not a whole number of milliseconds (e.g. 2000 or -750)")
        })?;
        WallClock::skewed(ms).map_err(|e| format!("{CLOCK_SKEW_ENV}={text:?}: {e}"))
    }

    pub fn skew_ms(&self) -> i64 {
        self.skew_us / 1000
    }

    /// Now, in microseconds since the Unix epoch (0 for a clock set before it).
    pub fn now_us(&self) -> i64 {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        i64::try_from(since).unwrap_or(i64::MAX).saturating_add(self.skew_us).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skews_parse_within_bounds_and_shift_the_clock() {
        assert_eq!(WallClock::parse("2000").unwrap().skew_ms(), 2000);
        assert_eq!(WallClock::parse(" -750 ").unwrap().skew_ms(), -750);
        for bad in ["", "1.5", "2s", "99999999999999999999", "86400001"] {
            let err = WallClock::parse(bad).unwrap_err();
            assert!(err.contains(CLOCK_SKEW_ENV), "{bad}: {err}");
        }
        let plain = WallClock::system().now_us();
        let ahead = WallClock::skewed(2000).unwrap().now_us();
        // Read after the plain one, the skewed clock is at least 2 s ahead.
        assert!(ahead - plain >= 2_000_000, "{plain} {ahead}");
        assert!(WallClock::skewed(-MAX_SKEW_MS).unwrap().now_us() > 0);
    }
}
