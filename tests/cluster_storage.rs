//! The write-ahead log through the daemon: damage before the tail stops a
//! node at startup with the file and byte offset; a torn tail is cut off
//! with a warning and the node catches up from its peers.

mod support_cluster;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use support_cluster::*;

/// (offset, payload length) of every frame: `[u32 LE len][u32 LE crc][payload]`.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        frames.push((at, len));
        at += 8 + len;
    }
    assert_eq!(at, bytes.len(), "the log does not end on a frame boundary");
    frames
}

/// A cluster with some writes, and one follower stopped cleanly; returns it,
/// that follower, its log file and the last slot written.
fn cluster_with_a_stopped_follower() -> (Cluster, u64, PathBuf, u64) {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let mut last = 0;
    for n in 0..8 {
        last = cluster.put(&format!("key{n}"), &format!("value{n}"));
    }
    let victim = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, last + 1);
    cluster.stop(victim);
    let wal = cluster.node(victim).data_dir.join("wal.log");
    (cluster, victim, wal, last)
}

#[test]
fn a_wal_damaged_before_its_tail_stops_the_node_naming_file_and_offset() {
    let (mut cluster, victim, wal, _) = cluster_with_a_stopped_follower();
    let original = fs::read(&wal).unwrap();
    let frames = frames(&original);
    assert!(frames.len() >= 5, "only {} records in {}", frames.len(), wal.display());
    let (offset, len) = frames[frames.len() / 2];
    let mut damaged = original.clone();
    damaged[offset + 8 + len / 2] ^= 0x01;
    fs::write(&wal, &damaged).unwrap();

    let mut serve = Command::new(PAXOS);
    serve.arg("serve").arg("--config").arg(&cluster.node(victim).config);
    let out = run(serve);
    assert_eq!(out.code, Some(1), "{}", out.show());
    let expected = format!("{}: corrupt data at byte offset {offset}: checksum mismatch", wal.display());
    assert!(out.stderr.contains(&expected), "expected {expected:?} in\n{}", out.show());
    assert!(out.stderr.contains("refusing to start"), "{}", out.show());
    assert!(!out.stderr.contains("node serving"), "{}", out.show());
    assert_eq!(fs::read(&wal).unwrap(), damaged, "the refused log was modified");

    // The other two carry on.
    cluster.put("while-refused", "still committing");
    assert_eq!(cluster.get("key0").as_deref(), Some("value0"));

    // Repaired, the node starts and catches up.
    fs::write(&wal, &original).unwrap();
    cluster.restart(victim);
    let slot = cluster.put("repaired", "yes");
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, slot + 1);
    assert_eq!(cluster.get_stale_on(victim, "while-refused").as_deref(), Some("still committing"));
}

#[test]
fn a_torn_wal_tail_is_cut_off_with_a_warning_and_the_node_catches_up() {
    let (mut cluster, victim, wal, _) = cluster_with_a_stopped_follower();
    let original = fs::read(&wal).unwrap();
    let &(last_frame, _) = frames(&original).last().expect("records");
    let torn = original.len() - 3;
    fs::write(&wal, &original[..torn]).unwrap();

    // Written while the node is down.
    let mut last = 0;
    for n in 0..5 {
        last = cluster.put(&format!("missed{n}"), &format!("m{n}"));
    }

    cluster.restart(victim);
    let log = cluster.log(victim);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("torn write"))
        .unwrap_or_else(|| panic!("no torn-tail warning\n{}", cluster.logs()));
    assert!(warning.contains(&format!("file={}", wal.display())), "{warning}");
    assert!(warning.contains(&format!("offset={last_frame}")), "{warning}");
    assert!(warning.contains(&format!("dropped_bytes={}", torn - last_frame)), "{warning}");

    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, last + 1);
    for n in 0..5 {
        assert_eq!(cluster.get_stale_on(victim, &format!("missed{n}")), Some(format!("m{n}")), "missed{n}");
    }
    for n in 0..8 {
        assert_eq!(cluster.get_stale_on(victim, &format!("key{n}")), Some(format!("value{n}")), "key{n}");
    }
}
