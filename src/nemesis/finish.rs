//! The end of a run, with every node up again: a final linearizable read
//! of each key (recorded in the history, so the checker must explain it)
//! and each node's decided log, read in pages.

use super::cluster::Access;
use super::history::{EventType, F, History, Note, Process};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const PAGE: u64 = 10_000;
const ASK_TIMEOUT: Duration = Duration::from_secs(15);
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads every key (`{prefix}0` ..) once through the log's leader check
/// (`get` is linearizable). Process ids from `first_process` on, one per key.
/// Returns the keys that could not be read by `until`.
pub async fn final_reads(
    access: &Access,
    history: &History,
    prefix: &str,
    keys: u64,
    first_process: u64,
    until: Instant,
) -> Vec<String> {
    let nodes = access.node_ids();
    let mut unread = Vec::new();
    for k in 0..keys {
        let key = format!("{prefix}{k}");
        let process = Process::Client(first_process + k);
        let note = |kind, value: Value, node, error| Note {
            process: process.clone(),
            kind,
            f: F::Read,
            key: Some(key.clone()),
            value,
            result: None,
            node: Some(node),
            error,
        };
        let mut read = false;
        let mut attempt = 0;
        while !read && Instant::now() < until {
            let node = nodes[attempt % nodes.len()];
            attempt += 1;
            history.record(note(EventType::Invoke, Value::Null, node, None));
            let answer = access.run(node, &format!("get {key} --json"), ASK_TIMEOUT).await;
            let value = answer.as_ref().ok().and_then(|(code, out)| {
                let doc: Value = serde_json::from_str(out).ok()?;
                (*code == 0 && doc.get("index").is_some()).then(|| doc.get("value").cloned().unwrap_or(Value::Null))
            });
            match value {
                Some(value) => {
                    history.record(note(EventType::Ok, value, node, None));
                    read = true;
                }
                None => {
                    let why = match answer {
                        Ok((code, out)) => format!("exit {code}: {}", out.trim()),
                        Err(e) => e,
                    };
                    history.record(note(EventType::Fail, Value::Null, node, Some(why)));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if !read {
            unread.push(key);
        }
    }
    unread
}

/// Waits (bounded) until every node has applied the same commit index, so
/// their logs cover the same slots.
pub async fn wait_converged(access: &Access, until: Instant) -> bool {
    while Instant::now() < until {
        let statuses = access.statuses(&access.node_ids(), STATUS_TIMEOUT).await;
        let commits: Vec<Option<u64>> = statuses.iter().map(|(_, s)| s.as_ref().map(|s| s.applied_index)).collect();
        if commits.iter().all(|c| c.is_some() && *c == commits[0]) && !commits.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The first client process id after every one in `events`: the checker
/// indexes processes densely.
pub fn next_process(events: &[super::history::Event]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e.process {
            Process::Client(p) => Some(p + 1),
            Process::Nemesis(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// Node `id`'s decided log, slot -> entry, from slot `from` (or the first
/// slot it still holds, if later).
pub async fn read_log(access: &Access, id: u64, from: u64) -> Result<BTreeMap<u64, Value>, String> {
    let mut log = BTreeMap::new();
    let mut from = from;
    // Bounded: each page moves `from` forward, and a log has at most u64 slots.
    for _ in 0..100_000 {
        let (code, out) = access.run(id, &format!("log --from {from} --limit {PAGE} --json"), ASK_TIMEOUT).await?;
        let doc: Value = serde_json::from_str(&out).map_err(|e| format!("node {id}: log answer is not JSON ({e})"))?;
        if let Some(error) = doc.get("error") {
            match error.get("first_available").and_then(Value::as_u64) {
                Some(first) if error["kind"] == "compacted" && first > from => {
                    from = first;
                    continue;
                }
                _ => return Err(format!("node {id}: log --from {from}: exit {code}: {error}")),
            }
        }
        let entries = doc.get("entries").and_then(Value::as_array).ok_or_else(|| format!("node {id}: no entries"))?;
        if entries.is_empty() {
            return Ok(log);
        }
        for entry in entries {
            let mut entry = entry.clone();
            let slot = entry
                .as_object_mut()
                .and_then(|o| o.remove("slot"))
                .and_then(|s| s.as_u64())
                .ok_or_else(|| format!("node {id}: an entry without a slot"))?;
            log.insert(slot, entry);
        }
        from = doc
            .get("next")
            .and_then(Value::as_u64)
            .filter(|n| *n > from)
            .ok_or_else(|| format!("node {id}: log did not advance"))?;
    }
    Err(format!("node {id}: log longer than expected"))
}
