//! The audit log: one JSON line per mutating command (propose, put, delete,
//! cas, step-down), refused ones included, naming the key that asked.
//! Lines are flushed, not fsynced: the log's own durability is the WAL's job.

use super::Role;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// SHA-256 fingerprint of the caller's public key.
    pub fingerprint: String,
    pub role: Role,
    /// The command line as received, normalized to single spaces.
    pub command: String,
    /// "ok slot=12 ...", "denied" or "failed: <message>".
    pub outcome: String,
}

pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    /// Append to the file at `path` (created 0600 with its directory if missing).
    pub fn open(path: impl AsRef<Path>) -> io::Result<AuditLog> {
        let path = path.as_ref();
        let context = |e: io::Error| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(context)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(context)?;
        Ok(AuditLog::to_writer(Box::new(file)))
    }

    /// Audit into any writer (stderr, or a buffer in tests).
    pub fn to_writer(out: Box<dyn Write + Send>) -> AuditLog {
        AuditLog { out: Mutex::new(out) }
    }

    pub fn record(&self, record: &AuditRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        // A poisoned lock only means another writer panicked mid-line; keep auditing.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&line)?;
        out.flush()
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. "2026-03-01T12:34:56.789Z".
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |secs: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn an_audit_file_gets_one_json_line_per_record_and_is_private() {
        let path = std::env::temp_dir().join(format!("paxos-audit-test-{}/audit.log", std::process::id()));
        let log = AuditLog::open(&path).unwrap();
        let record = |outcome: &str| AuditRecord {
            time: rfc3339(SystemTime::now()),
            fingerprint: "SHA256:abc".into(),
            role: Role::Operator,
            command: "put k v".into(),
            outcome: outcome.into(),
        };
        log.record(&record("ok slot=1")).unwrap();
        drop(log);
        AuditLog::open(&path).unwrap().record(&record("ok slot=2")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "appends, never truncates");
        assert_eq!(lines[1]["outcome"], "ok slot=2");
        assert_eq!(lines[0]["role"], "operator");
        #[cfg(unix)]
        assert_eq!(mode & 0o777, 0o600);
    }
}
