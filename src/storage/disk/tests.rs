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
        Record::Seen { node: 2, incarnation: 77, others: false },
        Record::Seen { node: 3, incarnation: 78, others: true },
        Record::Joined { how: JoinedHow::Rejoined { ballot: b(4, 1) } },
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
    assert_eq!(recovered, Recovered { snapshot: None, records: every_record_kind(), incarnation: 0 });
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

fn owner(node: u64) -> Owner {
    Owner { cluster: "lab".into(), node }
}

#[test]
fn a_new_directory_gets_an_identity_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (storage, opened) = DiskStorage::open_as(&data, &owner(1)).unwrap();
    assert_eq!(opened, Opened::Created);
    let incarnation = storage.incarnation();
    assert_ne!(incarnation, 0);
    drop(storage);
    let (mut storage, opened) = DiskStorage::open_as(&data, &owner(1)).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert_eq!(storage.recover().unwrap().incarnation, incarnation);
}

#[test]
fn an_emptied_directory_comes_back_as_another_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, _) = DiskStorage::open_as(&data, &owner(1)).unwrap();
    let before = first.incarnation();
    drop(first);
    std::fs::remove_dir_all(&data).unwrap();
    let (second, opened) = DiskStorage::open_as(&data, &owner(1)).unwrap();
    assert_eq!(opened, Opened::Created);
    assert_ne!(second.incarnation(), before);
}

#[test]
fn a_directory_copied_from_another_node_or_cluster_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(DiskStorage::open_as(&data, &owner(2)).unwrap());
    let identity_before = std::fs::read(data.join(identity::IDENTITY_FILE)).unwrap();
    let err = DiskStorage::open_as(&data, &owner(3)).unwrap_err().to_string();
    assert!(err.contains("belongs to node 2 of cluster \"lab\""), "{err}");
    let other = Owner { cluster: "prod".into(), node: 2 };
    let err = DiskStorage::open_as(&data, &other).unwrap_err().to_string();
    assert!(err.contains("not to node 2 of cluster \"prod\""), "{err}");
    assert_eq!(std::fs::read(data.join(identity::IDENTITY_FILE)).unwrap(), identity_before);
}

#[test]
fn a_directory_whose_log_was_deleted_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(DiskStorage::open_as(&data, &owner(1)).unwrap());
    std::fs::remove_file(data.join(WAL_FILE)).unwrap();
    let err = DiskStorage::open_as(&data, &owner(1)).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("promises and votes are lost"), "{err}");
    assert!(!data.join(WAL_FILE).exists(), "the refusal must not create a new log");
}

#[test]
fn a_directory_from_before_identities_is_adopted_with_its_votes() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_with(dir.path(), &every_record_kind()[..3]));
    let (mut storage, opened) = DiskStorage::open_as(dir.path(), &owner(1)).unwrap();
    assert_eq!(opened, Opened::Adopted);
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.records[..3], every_record_kind()[..3]);
    assert_eq!(recovered.records.last(), Some(&Record::Joined { how: JoinedHow::Adopted }));
    assert_eq!(recovered.incarnation, storage.incarnation());
}
