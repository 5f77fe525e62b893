//! A data directory whose `wal.log` holds arbitrary bytes, recovered the way
//! `paxos serve` recovers: `DiskStorage::open`, `recover`, `Replica::new`.
//! Input: one flag byte (see the crate docs: bit 0 fixes the frames' CRCs),
//! then the file.
//!
//! Properties: no panic and no allocation beyond the bounds run.sh sets; a
//! refusal is `StorageError::Corrupt` and leaves the file as it was; a
//! success keeps a prefix of the file (only a torn tail is cut), reads the
//! same records when opened again, and can append after them: a record
//! written and synced after recovery is recovered after the old ones.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::consensus::ballot::Ballot;
use paxos::consensus::records::{Record, Recovered};
use paxos::storage::disk::WAL_FILE;
use paxos::storage::{DiskStorage, Storage, StorageError};
use paxos_fuzz::{fix_wal_checksums, fresh_data_dir, read_back, restart_replica, storage_image};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(image) = storage_image(data, fix_wal_checksums) else { return };
    let dir = fresh_data_dir();
    let wal = dir.join(WAL_FILE);
    std::fs::write(&wal, &image).expect("cannot write the scratch WAL");

    let recovered = match open_and_recover(&dir) {
        Ok(recovered) => recovered,
        Err(StorageError::Corrupt { .. }) => {
            assert!(read_back(&wal) == image, "a refused WAL was modified");
            return;
        }
        Err(e) => panic!("recovery failed with an I/O error on a healthy directory: {e}"),
    };
    let kept = read_back(&wal);
    assert!(image.starts_with(&kept), "recovery kept {} bytes that are not a prefix of the file", kept.len());
    assert!(recovered.snapshot.is_none(), "a snapshot appeared from nowhere");

    let again = open_and_recover(&dir).unwrap_or_else(|e| panic!("a WAL that recovered once is refused: {e}"));
    assert_eq!(again, recovered, "two recoveries of the same file differ");
    assert!(read_back(&wal) == kept, "the second recovery changed the file");

    let marker = Record::Promised { ballot: Ballot::new(7, 3) };
    {
        let mut storage = DiskStorage::open(&dir).unwrap_or_else(|e| panic!("reopening for append: {e}"));
        storage.append(std::slice::from_ref(&marker)).unwrap_or_else(|e| panic!("append after recovery: {e}"));
        storage.sync().unwrap_or_else(|e| panic!("sync after recovery: {e}"));
    }
    let after = open_and_recover(&dir).unwrap_or_else(|e| panic!("the WAL is refused after one append: {e}"));
    let mut expected = recovered.records.clone();
    expected.push(marker);
    assert_eq!(after.records, expected, "the appended record is not recovered after the old ones");

    let replica = restart_replica(recovered);
    let status = replica.status();
    assert!(status.applied_index <= status.commit_index);
});

fn open_and_recover(dir: &Path) -> Result<Recovered, StorageError> {
    DiskStorage::open(dir)?.recover()
}
