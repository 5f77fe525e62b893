//! A data directory whose `snapshot.bin` holds arbitrary bytes: loaded by
//! `storage::snapshot::load`, then recovered the way `paxos serve` does it
//! (`DiskStorage::open`, `recover`, `Replica::new`). Input: one flag byte
//! (bit 0 makes the header's length and CRC match the payload), then the
//! file.
//!
//! Properties: no panic and no allocation beyond the bounds run.sh sets; a
//! refusal is `StorageError::Corrupt`, by `load` and by `DiskStorage::open`
//! alike; a loaded snapshot saves and loads back equal, and the replica
//! restarted from it has applied exactly the slots below it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::storage::snapshot::{self, SNAPSHOT_FILE};
use paxos::storage::{DiskStorage, Storage, StorageError};
use paxos_fuzz::{fix_snapshot_header, fresh_data_dir, restart_replica, storage_image};

fuzz_target!(|data: &[u8]| {
    let Some(image) = storage_image(data, fix_snapshot_header) else { return };
    let dir = fresh_data_dir();
    std::fs::write(dir.join(SNAPSHOT_FILE), &image).expect("cannot write the scratch snapshot");

    let loaded = match snapshot::load(&dir) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => panic!("load found no snapshot in a file that exists"),
        Err(StorageError::Corrupt { .. }) => {
            match DiskStorage::open(&dir) {
                Err(StorageError::Corrupt { .. }) => {}
                Err(e) => panic!("load said corrupt but DiskStorage::open failed otherwise: {e}"),
                Ok(_) => panic!("load refused the snapshot but DiskStorage::open accepted it"),
            }
            return;
        }
        Err(e) => panic!("loading failed with an I/O error on a healthy directory: {e}"),
    };

    snapshot::save(&dir, &loaded).unwrap_or_else(|e| panic!("a loaded snapshot cannot be saved again: {e}"));
    match snapshot::load(&dir) {
        Ok(Some(back)) => assert_eq!(back, loaded, "the snapshot changed on a save and load"),
        other => panic!("a snapshot saved by the code does not load back: {other:?}"),
    }

    let recovered = match DiskStorage::open(&dir).and_then(|mut storage| storage.recover()) {
        Ok(recovered) => recovered,
        Err(e) => panic!("load accepted the snapshot but recovery refused it: {e}"),
    };
    assert_eq!(recovered.snapshot.as_ref(), Some(&loaded));
    let through = loaded.through;
    let status = restart_replica(recovered).status();
    assert_eq!(status.applied_index, through, "the replica did not resume right after the snapshot");
});
