//! Durable storage for a replica: a small, synchronous trait with a
//! write-ahead log on disk (`wal`) and an in-memory one for tests and the
//! simulation (`mem`).
//!
//! The runtime calls `append` for every record a step asked for, then one
//! `sync` for all of them (group commit), and only then sends the messages
//! that depended on them.

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
    #[error(
        "{path}: corrupt record at byte offset {offset}: {reason}; the log is damaged before its tail, \
         so refusing to start (restore the data directory from a peer or a backup)"
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
