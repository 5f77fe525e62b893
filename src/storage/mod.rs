//! Durable storage for a replica: a small, synchronous trait with a
//! write-ahead log on disk (`wal`) and an in-memory one for tests and the
//! simulation (`mem`).
//!
//! The runtime calls `append` for every record a step asked for, then one
//! `sync` for all of them (group commit), and only then sends the messages
//! that depended on them.
//!
//! Both implementations share one meaning: only `sync` (and `save_snapshot`
//! for the snapshot itself) makes anything durable; records appended but not
//! yet synced survive a `save_snapshot` as still-unsynced records, and are
//! lost by a crash.

pub mod compaction;
pub mod disk;
pub mod identity;
pub mod mem;
pub mod snapshot;
pub mod wal;

pub use compaction::compact;
pub use disk::{DiskStorage, Opened};
pub use identity::Owner;
pub use mem::MemStorage;
pub use wal::Wal;

use crate::consensus::records::{Record, Recovered, Snapshot};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Data that was written intact is damaged, so starting could forget a
    /// promise or a vote. `offset` is the byte offset of the bad frame (or
    /// of the damaged header, for a snapshot).
    #[error(
        "{path}: corrupt data at byte offset {offset}: {reason}; refusing to start \
         (restore the data directory from a peer or a backup)"
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },
}

pub trait Storage {
    /// Queue records to be written, in order. They are not durable yet.
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;
    /// Make every appended record durable with one flush (fdatasync on disk).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Store a snapshot durably, then drop the records it makes redundant:
    /// votes and decisions for slots below `snapshot.through`, and all but
    /// the highest promise, campaign ballot and commit marker.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
    /// Everything durable, for a replica that is starting.
    fn recover(&mut self) -> Result<Recovered, StorageError>;
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

/// The directory a file lives in ("." for a bare file name).
pub(crate) fn parent_dir(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    }
}

/// Make a create, rename or removal in `dir` durable. A renamed or new file
/// whose directory entry was never synced can vanish in a crash together
/// with every fsynced byte in it.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(dir, e))
}

/// Replace `dir/name` with `bytes` durably and atomically: write `dir/tmp`,
/// fsync it, rename it over `name`, fsync the directory. A crash leaves the
/// old file or the new one, never a mix; a failed write leaves no `tmp`.
pub(crate) fn write_atomically(dir: &std::path::Path, tmp: &str, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    write_atomically_with(dir, tmp, name, |file| file.write_all(bytes))
}

/// `write_atomically`, with `write` filling the new file (from its start).
pub(crate) fn write_atomically_with(
    dir: &std::path::Path,
    tmp: &str,
    name: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StorageError> {
    let tmp = dir.join(tmp);
    let written = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StorageError::io(&tmp, e));
    }
    let path = dir.join(name);
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(StorageError::io(&path, e));
    }
    sync_dir(dir)
}
