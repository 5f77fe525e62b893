//! `Storage` in memory, for tests and the deterministic simulation. It keeps
//! the disk's durability rules, so a simulated crash (`crash`) loses exactly
//! what a real one could: every record appended since the last `sync`.

use super::compaction::compact;
use super::{Storage, StorageError};
use crate::consensus::records::{Record, Recovered, Snapshot};
use std::sync::Arc;

/// An in-memory log. Clones are independent values; they share the durable
/// part until one of them changes it, so cloning is cheap.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    snapshot: Option<Arc<Snapshot>>,
    durable: Arc<Vec<Record>>,
    unsynced: Vec<Record>,
    incarnation: u64,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose directory has this incarnation (see
    /// `storage::identity`); `new` has incarnation 0.
    pub fn with_incarnation(incarnation: u64) -> Self {
        MemStorage { incarnation, ..Self::default() }
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Forget every record appended since the last `sync`, as a power cut
    /// would. The snapshot and synced records stay.
    pub fn crash(&mut self) {
        self.unsynced.clear();
    }

    /// Records that would survive a crash, after the snapshot.
    pub fn durable_records(&self) -> &[Record] {
        &self.durable
    }

    /// Records appended but not yet synced.
    pub fn unsynced_records(&self) -> &[Record] {
        &self.unsynced
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }
}

impl Storage for MemStorage {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.unsynced.extend_from_slice(records);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if !self.unsynced.is_empty() {
            Arc::make_mut(&mut self.durable).append(&mut self.unsynced);
        }
        Ok(())
    }

    /// As on disk: an older snapshot than the one held is ignored, the
    /// durable records are compacted, and unsynced records stay unsynced.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.snapshot.as_ref().is_some_and(|current| snapshot.through < current.through) {
            return Ok(());
        }
        self.durable = Arc::new(compact(&self.durable, snapshot.through));
        self.snapshot = Some(Arc::new(snapshot.clone()));
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        Ok(Recovered {
            snapshot: self.snapshot.as_deref().cloned(),
            records: self.durable.to_vec(),
            incarnation: self.incarnation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ballot::Ballot;
    use crate::state_machine::{Entry, KvStore};
    use crate::storage::compaction::tests::{history, put};

    fn accepted(slot: u64) -> Record {
        Record::Accepted { slot, ballot: Ballot::new(1, 1), entry: put(slot) }
    }

    #[test]
    fn a_crash_loses_exactly_the_unsynced_records() {
        let mut storage = MemStorage::new();
        storage.append(&[accepted(0), accepted(1)]).unwrap();
        storage.sync().unwrap();
        storage.append(&[accepted(2)]).unwrap();
        storage.append(&[Record::Committed { through: 2 }]).unwrap();
        assert_eq!(storage.unsynced_records().len(), 2);
        storage.crash();
        assert_eq!(
            storage.recover().unwrap(),
            Recovered { snapshot: None, records: vec![accepted(0), accepted(1)], incarnation: 0 }
        );
        storage.append(&[accepted(3)]).unwrap();
        storage.sync().unwrap();
        assert_eq!(storage.recover().unwrap().records, vec![accepted(0), accepted(1), accepted(3)]);
    }

    #[test]
    fn recover_returns_durable_records_only() {
        let mut storage = MemStorage::new();
        storage.append(&[accepted(0)]).unwrap();
        assert_eq!(storage.recover().unwrap(), Recovered::default());
    }

    #[test]
    fn a_snapshot_compacts_like_the_disk_and_keeps_unsynced_records_unsynced() {
        let mut storage = MemStorage::new();
        storage.append(&history()).unwrap();
        storage.sync().unwrap();
        storage.append(&[accepted(9)]).unwrap();
        let snapshot = Snapshot { through: 3, state: KvStore::new(4) };
        storage.save_snapshot(&snapshot).unwrap();
        assert_eq!(storage.durable_records(), compact(&history(), 3));
        assert_eq!(storage.unsynced_records(), [accepted(9)]);
        storage.crash();
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot));
        assert_eq!(recovered.records, compact(&history(), 3));
    }

    #[test]
    fn an_older_snapshot_does_not_replace_a_newer_one() {
        let mut storage = MemStorage::new();
        storage.save_snapshot(&Snapshot { through: 5, state: KvStore::new(4) }).unwrap();
        storage.save_snapshot(&Snapshot { through: 2, state: KvStore::new(4) }).unwrap();
        assert_eq!(storage.snapshot().map(|s| s.through), Some(5));
    }

    #[test]
    fn clones_are_independent_values() {
        let mut a = MemStorage::new();
        a.append(&[accepted(0)]).unwrap();
        a.sync().unwrap();
        let mut b = a.clone();
        b.append(&[Record::Decided { slot: 1, entry: Entry::Noop }]).unwrap();
        b.sync().unwrap();
        assert_eq!(a.durable_records(), [accepted(0)]);
        assert_eq!(b.durable_records().len(), 2);
    }
}
