//! Fault injection in the peer transport, for testing only: rules that
//! drop the frames a node sends to a peer (`drop to N`) or receives from
//! one (`drop from N`), consulted by the outgoing links and by the peer
//! channel reader. The rules are per local node id, so several nodes in one
//! process each have their own. With no rules anywhere a check is one
//! relaxed atomic load.
//!
//! A daemon started with `PAXOS_FAULT_FILE=/path` polls that file (see
//! [`watch`]) and replaces its rules with the file's whenever its content
//! changes: one rule a line, `drop to N`, `drop from N` or `drop both N`;
//! `#` starts a comment; an empty or missing file clears them. A malformed
//! line is logged and ignored. Without the variable nothing is polled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The environment variable naming the fault file of `paxos serve`.
pub const FAULT_FILE_ENV: &str = "PAXOS_FAULT_FILE";
/// How often the fault file is read.
pub const POLL: Duration = Duration::from_millis(25);
/// What the daemon logs each time it applies a fault file's rules.
pub const APPLIED: &str = "peer faults now:";
/// A fault file larger than this is refused (it is a handful of lines).
const MAX_FILE: u64 = 64 * 1024;

/// Which peers a node drops frames to and from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub drop_to: BTreeSet<u64>,
    pub drop_from: BTreeSet<u64>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.drop_to.is_empty() && self.drop_from.is_empty()
    }

    /// Parses a fault file: the rules of its well-formed lines, and one
    /// message per malformed line (1-based line numbers).
    pub fn parse(text: &str) -> (Rules, Vec<String>) {
        let mut rules = Rules::default();
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let peer = words.get(2).and_then(|w| w.parse::<u64>().ok());
            match (words.as_slice(), peer) {
                (["drop", "to", _], Some(p)) => {
                    rules.drop_to.insert(p);
                }
                (["drop", "from", _], Some(p)) => {
                    rules.drop_from.insert(p);
                }
                (["drop", "both", _], Some(p)) => {
                    rules.drop_to.insert(p);
                    rules.drop_from.insert(p);
                }
                _ => errors.push(format!(
                    "line {}: {raw:?} is not a rule (expected `drop to N`, `drop from N` or `drop both N`)",
                    n + 1
                )),
            }
        }
        (rules, errors)
    }
}

impl std::fmt::Display for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        write!(f, "drop to {:?}, drop from {:?}", self.drop_to, self.drop_from)
    }
}

/// The rules that cut a node off from `peers`: both ways, or its outgoing traffic only.
pub fn isolation_rules(peers: impl IntoIterator<Item = u64>, both: bool) -> String {
    let verb = if both { "both" } else { "to" };
    peers.into_iter().map(|p| format!("drop {verb} {p}\n")).collect()
}

/// Replaces a fault file with `rules` (empty clears them): written to a
/// temp file beside it and renamed, so the daemon never reads half a file.
pub fn write_rules(path: &std::path::Path, rules: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, rules)?;
    std::fs::rename(&tmp, path)
}

static ANY: AtomicBool = AtomicBool::new(false);
static RULES: RwLock<BTreeMap<u64, Rules>> = RwLock::new(BTreeMap::new());

fn read() -> RwLockReadGuard<'static, BTreeMap<u64, Rules>> {
    RULES.read().unwrap_or_else(|e| e.into_inner())
}

fn write() -> RwLockWriteGuard<'static, BTreeMap<u64, Rules>> {
    RULES.write().unwrap_or_else(|e| e.into_inner())
}

/// Replaces node `local`'s rules (empty rules clear them).
pub fn set(local: u64, rules: Rules) {
    let mut all = write();
    if rules.is_empty() {
        all.remove(&local);
    } else {
        all.insert(local, rules);
    }
    ANY.store(!all.is_empty(), Ordering::Release);
}

/// Node `local`'s current rules.
pub fn get(local: u64) -> Rules {
    if !ANY.load(Ordering::Acquire) {
        return Rules::default();
    }
    read().get(&local).cloned().unwrap_or_default()
}

/// Whether node `local` drops what it sends to `peer`.
#[inline]
pub fn drops_to(local: u64, peer: u64) -> bool {
    ANY.load(Ordering::Relaxed) && read().get(&local).is_some_and(|r| r.drop_to.contains(&peer))
}

/// Whether node `local` drops what it receives from `peer`.
#[inline]
pub fn drops_from(local: u64, peer: u64) -> bool {
    ANY.load(Ordering::Relaxed) && read().get(&local).is_some_and(|r| r.drop_from.contains(&peer))
}

/// Reads the fault file once: its text, `""` when it is missing.
fn load(path: &std::path::Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e.to_string()),
        Ok(m) if m.len() > MAX_FILE => return Err(format!("larger than {MAX_FILE} bytes")),
        Ok(_) => {}
    }
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.map_err(|e| e.to_string()),
    }
}

/// Applies `text` as node `local`'s rules, logging each malformed line;
/// returns the rules applied.
pub fn apply(local: u64, text: &str, source: &str) -> Rules {
    let (rules, errors) = Rules::parse(text);
    for e in &errors {
        warn!(node = local, "fault file {source}: ignored {e}");
    }
    info!(node = local, "fault file {source}: {APPLIED} {rules}");
    set(local, rules.clone());
    rules
}

/// Polls `path` every [`POLL`] until `shutdown`, applying its rules to
/// node `local` whenever its content changes. Unreadable files are logged
/// (once per distinct error) and leave the rules as they were.
pub fn watch(local: u64, path: PathBuf, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    info!(node = local, "testing facility: peer faults from {}", path.display());
    let source = path.display().to_string();
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        let mut last_error: Option<String> = None;
        loop {
            match load(&path) {
                Ok(text) => {
                    last_error = None;
                    if last.as_deref() != Some(text.as_str()) {
                        apply(local, &text, &source);
                        last = Some(text);
                    }
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        warn!(node = local, "fault file {source}: cannot read it: {e}");
                        last_error = Some(e);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        set(local, Rules::default());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_malformed_lines_are_reported_and_ignored() {
        let text = "drop to 2\n# a comment\n\ndrop from 3   # trailing\ndrop both 4\ndrop sideways 5\ndrop to x\nkeep to 2\ndrop to 2 3\n";
        let (rules, errors) = Rules::parse(text);
        assert_eq!(rules.drop_to, BTreeSet::from([2, 4]));
        assert_eq!(rules.drop_from, BTreeSet::from([3, 4]));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 6:") && errors[0].contains("drop sideways 5"), "{errors:?}");
        assert!(errors[1].starts_with("line 7:"), "{errors:?}");
        assert!(errors[3].starts_with("line 9:") && errors[3].contains("expected `drop to N`"), "{errors:?}");
        assert_eq!(Rules::parse(""), (Rules::default(), vec![]));
    }

    #[test]
    fn rules_apply_per_node_and_clear() {
        // Node ids far from any other test's, as the table is process-wide.
        let (a, b) = (1_000_001, 1_000_002);
        assert!(!drops_to(a, 7) && !drops_from(a, 7));
        apply(a, "drop to 7\nnonsense\n", "test");
        apply(b, "drop from 7\n", "test");
        assert!(drops_to(a, 7) && !drops_from(a, 7) && !drops_to(a, 8));
        assert!(!drops_to(b, 7) && drops_from(b, 7));
        assert_eq!(get(a).drop_to, BTreeSet::from([7]));
        apply(a, "", "test");
        assert!(!drops_to(a, 7));
        assert!(drops_from(b, 7), "clearing one node leaves the other's rules");
        set(b, Rules::default());
        assert!(!drops_from(b, 7));
    }

    #[tokio::test]
    async fn the_watcher_follows_the_file_and_clears_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults");
        let node = 1_000_010;
        let stop = CancellationToken::new();
        let task = watch(node, path.clone(), stop.clone());
        let until = |want: bool| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while drops_to(node, 2) != want && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drops_to(node, 2) == want
        };
        std::fs::write(&path, "drop to 2\nbogus line\n").unwrap();
        assert!(until(true).await, "the rule was applied");
        std::fs::write(&path, "").unwrap();
        assert!(until(false).await, "an empty file clears");
        std::fs::write(&path, "drop to 2\n").unwrap();
        assert!(until(true).await);
        std::fs::remove_file(&path).unwrap();
        assert!(until(false).await, "a missing file clears");
        std::fs::write(&path, "drop to 2\n").unwrap();
        assert!(until(true).await);
        stop.cancel();
        task.await.unwrap();
        assert!(!drops_to(node, 2), "the rules go when the node stops");
    }
}
