//! The data directory on real files with real fsync.

use super::*;
use crate::consensus::ballot::Ballot;
use crate::state_machine::{Command, Entry, KvStore, Op};
use crate::storage::compaction::meaning::replay;
use crate::storage::compaction::tests::{history, put};
use crate::storage::snapshot::{SNAPSHOT_TMP_FILE, path_in};

fn every_record_kind() -> Vec<Record> {
    let b = Ballot::new;
    vec![
        Record::Promised { ballot: b(2, 1) },
        Record::Campaigned { ballot: b(3, 1) },
        Record::Accepted { slot: 0, ballot: b(2, 1), entry: put(0) },
        Record::Accepted { slot: 1, ballot: b(2, 1), entry: Entry::Noop },
        Record::Accepted {
            slot: 2,
            ballot: b(3, 1),
            entry: Entry::Batch {
                commands: vec![
                    Command { client: 9, seq: 1, op: Op::Delete { key: "gone".into() } },
                    Command {
                        client: 9,
                        seq: 2,
                        op: Op::Cas { key: "k".into(), expected: None, new: "new \"quoted\" ✓".into() },
                    },
                    Command { client: 9, seq: 3, op: Op::Propose { value: "agree on this".into() } },
                ],
            },
        },
        Record::Decided { slot: 1, entry: Entry::Noop },
        Record::Committed { through: 2 },
    ]
}

fn state_through(through: u64) -> KvStore {
    let mut state = KvStore::new(16);
    for slot in 0..through {
        state
            .apply(slot, &Command { client: 1, seq: slot, op: Op::Put { key: format!("k{slot}"), value: "v".into() } });
    }
    state
}

fn open_with(dir: &Path, records: &[Record]) -> DiskStorage {
    let mut storage = DiskStorage::open(dir).unwrap();
    storage.append(records).unwrap();
    storage.sync().unwrap();
    storage
}

#[test]
fn every_record_kind_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_with(dir.path(), &every_record_kind()));
    let recovered = DiskStorage::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered, Recovered { snapshot: None, records: every_record_kind() });
}

#[test]
fn a_missing_data_dir_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a").join("b");
    drop(open_with(&data, &every_record_kind()));
    assert!(data.join(WAL_FILE).exists());
    assert_eq!(DiskStorage::open(&data).unwrap().recover().unwrap().records, every_record_kind());
}

#[test]
fn a_group_commit_of_many_appends_recovers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = DiskStorage::open(dir.path()).unwrap();
    let records: Vec<Record> =
        (0..500).map(|slot| Record::Accepted { slot, ballot: Ballot::new(1, 1), entry: put(slot) }).collect();
    for record in &records {
        storage.append(std::slice::from_ref(record)).unwrap();
    }
    storage.sync().unwrap();
    storage.append(&[Record::Committed { through: 500 }]).unwrap();
    drop(storage); // never synced: the commit marker is lost, as in a crash
    assert_eq!(DiskStorage::open(dir.path()).unwrap().recover().unwrap().records, records);
}

#[test]
fn snapshot_and_compaction_keep_the_promise_votes_and_decisions_above_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_with(dir.path(), &history());
    let log_before = storage.wal().durable_len();
    let snapshot = Snapshot { through: 3, state: state_through(3) };
    storage.save_snapshot(&snapshot).unwrap();
    assert!(storage.wal().durable_len() < log_before, "the log shrank");

    for recovered in [storage.recover().unwrap(), {
        drop(storage);
        DiskStorage::open(dir.path()).unwrap().recover().unwrap()
    }] {
        assert_eq!(recovered.snapshot.as_ref(), Some(&snapshot));
        assert_eq!(recovered.records, compact(&history(), 3));
        assert_eq!(replay(3, &recovered.records), replay(3, &history()));
    }
}

#[test]
fn a_crash_between_snapshot_and_compaction_recovers_the_same_meaning() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_with(dir.path(), &history()));
    // The snapshot reached the disk, the log rewrite never started.
    let snapshot = Snapshot { through: 3, state: state_through(3) };
    snapshot::save(dir.path(), &snapshot).unwrap();
    let recovered = DiskStorage::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.snapshot, Some(snapshot));
    assert!(recovered.records.iter().all(|r| !is_covered(r, 3)), "{:?}", recovered.records);
    assert_eq!(replay(3, &recovered.records), replay(3, &history()));
}

#[test]
fn records_appended_before_a_snapshot_but_not_synced_stay_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_with(dir.path(), &history());
    let late = Record::Accepted { slot: 7, ballot: Ballot::new(3, 2), entry: put(7) };
    storage.append(std::slice::from_ref(&late)).unwrap();
    storage.save_snapshot(&Snapshot { through: 3, state: state_through(3) }).unwrap();
    assert_eq!(storage.recover().unwrap().records, compact(&history(), 3), "not durable yet");
    storage.sync().unwrap();
    drop(storage);
    let recovered = DiskStorage::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.records, [compact(&history(), 3), vec![late]].concat());
}

#[test]
fn an_older_snapshot_does_not_replace_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_with(dir.path(), &history());
    storage.save_snapshot(&Snapshot { through: 5, state: state_through(5) }).unwrap();
    storage.save_snapshot(&Snapshot { through: 2, state: state_through(2) }).unwrap();
    drop(storage);
    let recovered = DiskStorage::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.snapshot.map(|s| s.through), Some(5));
    assert_eq!(recovered.records, compact(&history(), 5));
}

#[test]
fn a_damaged_snapshot_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_with(dir.path(), &history());
    storage.save_snapshot(&Snapshot { through: 3, state: state_through(3) }).unwrap();
    drop(storage);
    let path = path_in(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    fs::write(&path, bytes).unwrap();

    let err = DiskStorage::open(dir.path()).unwrap_err();
    assert!(matches!(&err, StorageError::Corrupt { path: p, .. } if *p == path), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn a_leftover_snapshot_tmp_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_with(dir.path(), &history());
    storage.save_snapshot(&Snapshot { through: 2, state: state_through(2) }).unwrap();
    drop(storage);
    let tmp = dir.path().join(SNAPSHOT_TMP_FILE);
    fs::write(&tmp, b"PAXSNAP1 and then the crash").unwrap();

    let recovered = DiskStorage::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.snapshot.map(|s| s.through), Some(2));
    assert!(!tmp.exists());
}

#[test]
fn a_second_opener_of_the_data_dir_is_refused_naming_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let first = DiskStorage::open(dir.path()).unwrap();
    let err = DiskStorage::open(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("data directory {} is locked", dir.path().display())), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    drop(first);
    DiskStorage::open(dir.path()).expect("the lock goes with its holder");
}
