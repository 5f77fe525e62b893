//! `Storage` on a data directory: a write-ahead log (`wal.log`), the newest
//! snapshot (`snapshot.bin`), the directory's `IDENTITY` (cluster, node,
//! incarnation), and a `LOCK` file that keeps a second daemon out.

use super::compaction::{compact, is_covered};
use super::identity::{self, Identity, Owner};
use super::wal::Wal;
use super::{Storage, StorageError, snapshot};
use crate::consensus::records::{JoinedHow, Record, Recovered, Snapshot};
use crate::state_machine::Slot;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use tracing::warn;

/// The log's file name inside the data directory.
pub const WAL_FILE: &str = "wal.log";
/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug)]
pub struct DiskStorage {
    dir: PathBuf,
    wal: Wal<Record>,
    /// `through` of the snapshot on disk, if any.
    snapshot_through: Option<Slot>,
    /// From `IDENTITY`; 0 for a directory opened without one (`open`).
    incarnation: u64,
    /// Holds the exclusive lock on `LOCK` until the storage is dropped.
    _lock: File,
}

/// What `open_as` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The directory was this node's already.
    Existing,
    /// The directory was empty or missing: a new incarnation begins, which
    /// must be admitted before it votes.
    Created,
    /// The directory held data from before identities existed; it was given
    /// one and keeps its history (and its right to vote).
    Adopted,
}

impl DiskStorage {
    /// Open the data directory `dir`, creating it if missing. Fails if
    /// another process holds it, if the snapshot is damaged, or if the log
    /// is damaged before its tail; a torn tail is truncated.
    /// The directory's identity is read if it has one, never written: this
    /// is for tools and tests; a node opens its directory with `open_as`.
    pub fn open(dir: &Path) -> Result<DiskStorage, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let lock = lock(dir)?;
        snapshot::remove_leftover_tmp(dir)?;
        let incarnation = identity::load(dir)?.map_or(0, |i| i.incarnation);
        let snapshot_through = snapshot::load(dir)?.map(|s| s.through);
        let (wal, _records) = Wal::open(&dir.join(WAL_FILE))?;
        Ok(DiskStorage { dir: dir.to_path_buf(), wal, snapshot_through, incarnation, _lock: lock })
    }

    /// Open `dir` as the data directory of `owner`, as `paxos serve` does:
    /// refuse a directory of another node or cluster, or one whose log is
    /// gone; give a new or empty directory a new incarnation.
    pub fn open_as(dir: &Path, owner: &Owner) -> Result<(DiskStorage, Opened), StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let lock = lock(dir)?;
        snapshot::remove_leftover_tmp(dir)?;
        let wal_path = dir.join(WAL_FILE);
        let existing = identity::load(dir)?;
        if let Some(identity) = &existing {
            identity.check(owner, dir)?;
            if !wal_path.exists() {
                return Err(StorageError::corrupt(
                    &wal_path,
                    0,
                    format!(
                        "the log is missing from a data directory that has an identity, so this node's promises \
                         and votes are lost; move {} away (keep it for inspection) and start the node with an \
                         empty directory: it will rejoin as a new incarnation",
                        dir.display()
                    ),
                ));
            }
        }
        let snapshot_through = snapshot::load(dir)?.map(|s| s.through);
        let (mut wal, records) = Wal::open(&wal_path)?;
        let (identity, opened) = match existing {
            Some(identity) => (identity, Opened::Existing),
            None => {
                let had_data = snapshot_through.is_some() || !records.is_empty();
                let identity = Identity::new(owner);
                if had_data {
                    // The history stays, so the right to vote stays with it.
                    wal.append(&[Record::Joined { how: JoinedHow::Adopted }])?;
                    wal.sync()?;
                }
                identity::save(dir, &identity)?;
                (identity, if had_data { Opened::Adopted } else { Opened::Created })
            }
        };
        let storage = DiskStorage {
            dir: dir.to_path_buf(),
            wal,
            snapshot_through,
            incarnation: identity.incarnation,
            _lock: lock,
        };
        Ok((storage, opened))
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn wal(&self) -> &Wal<Record> {
        &self.wal
    }
}

impl Storage for DiskStorage {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.wal.append(records)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync()
    }

    /// The snapshot first, then the log: a crash between the two leaves a
    /// new snapshot with an uncompacted log, which `recover` reads the same
    /// way. Records appended but not synced stay unsynced.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if let Some(current) = self.snapshot_through
            && snapshot.through < current
        {
            // The slots in between are compacted away; going back would lose them.
            warn!(
                dir = %self.dir.display(),
                current,
                offered = snapshot.through,
                "kept the newer snapshot instead of an older one"
            );
            return Ok(());
        }
        snapshot::save(&self.dir, snapshot)?;
        self.snapshot_through = Some(snapshot.through);
        let durable = self.wal.read_durable()?;
        self.wal.rewrite(&compact(&durable, snapshot.through))
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let snapshot = snapshot::load(&self.dir)?;
        let mut records = self.wal.read_durable()?;
        if let Some(snapshot) = &snapshot {
            records.retain(|record| !is_covered(record, snapshot.through));
        }
        Ok(Recovered { snapshot, records, incarnation: self.incarnation })
    }
}

/// Take the exclusive lock on `dir/LOCK` and write our pid into it, for the
/// error message of whoever comes second. The lock (flock on Linux) goes
/// away with the process, so a crash never leaves the directory locked.
fn lock(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(StorageError::io(
                &path,
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the data directory {} is locked by another paxos process{holder}; stop that process, \
                         or give this one a data directory of its own",
                        dir.display()
                    ),
                ),
            ));
        }
        Err(fs::TryLockError::Error(e)) => return Err(StorageError::io(&path, e)),
    }
    file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(|e| StorageError::io(&path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests;
