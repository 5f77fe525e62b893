//! An append-only log of records in CRC-checked frames, with group commit
//! and a recovery that tells a torn tail from real damage.
//!
//! A frame is `[u32 LE payload length][u32 LE CRC32 of payload][payload]`,
//! the payload being the record as JSON.
//!
//! Why a torn tail may be cut off but damage before it may not: `sync`
//! returns only after fdatasync, and the runtime sends a promise or a vote
//! only after that (DESIGN.md, "send only after persisted"). A crash inside
//! a `sync` can leave part of that batch on disk, but nobody was told about
//! any of it, so cutting it off forgets nothing anyone relied on. A bad frame
//! with intact data after it was followed by a later write, so it may well
//! have been fsynced and acted on: dropping it could make this acceptor
//! forget a promise (Paxos Made Simple, §2.3), so recovery refuses instead.

use super::{StorageError, parent_dir, sync_dir};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use tracing::warn;

/// Bytes before each payload: length, then CRC.
pub const FRAME_HEADER_LEN: usize = 8;
/// The largest payload a frame may carry. A length above it is damage, and
/// is reported as such rather than allocated.
pub const MAX_RECORD_LEN: u32 = 64 * 1024 * 1024;

/// An open log file. `R` is the record type; the log only needs to
/// serialize it, so it can be tested without the consensus types.
pub struct Wal<R> {
    path: PathBuf,
    file: File,
    /// Frames appended since the last `sync`, written by the next one.
    unsynced: Vec<u8>,
    unsynced_records: usize,
    /// Bytes in the file, all of them fsynced.
    durable_len: u64,
    /// A write or fsync failed: what reached the disk is unknown (after a
    /// failed fsync Linux may drop the dirty pages and report success next
    /// time), so the log refuses further work until a restart re-reads it.
    failed: bool,
    _records: PhantomData<fn(R) -> R>,
}

impl<R> fmt::Debug for Wal<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("path", &self.path)
            .field("durable_len", &self.durable_len)
            .field("unsynced_bytes", &self.unsynced.len())
            .field("unsynced_records", &self.unsynced_records)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<R: Serialize + DeserializeOwned> Wal<R> {
    /// Open (or create) the log at `path` and return it with every record
    /// in it. A torn tail is truncated (with a warning); damage before the
    /// tail is `StorageError::Corrupt` and leaves the file untouched. A
    /// leftover `<path>.tmp` from an interrupted `rewrite` is removed.
    pub fn open(path: &Path) -> Result<(Wal<R>, Vec<R>), StorageError> {
        remove_leftover(&tmp_path(path))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| StorageError::io(path, e))?;
        let (records, end) = parse(path, &bytes)?;
        if end < bytes.len() {
            warn!(
                file = %path.display(),
                offset = end,
                dropped_bytes = bytes.len() - end,
                "the log ends in a torn write (a sync that never completed); truncating it at the last whole record"
            );
            file.set_len(end as u64).and_then(|()| file.sync_all()).map_err(|e| StorageError::io(path, e))?;
        }
        // The file may be new: its directory entry must be durable before
        // any record in it is relied on.
        sync_dir(parent_dir(path))?;
        let wal = Wal {
            path: path.to_path_buf(),
            file,
            unsynced: Vec::new(),
            unsynced_records: 0,
            durable_len: end as u64,
            failed: false,
            _records: PhantomData,
        };
        Ok((wal, records))
    }

    /// Queue records after the ones already appended. No system call: the
    /// bytes wait in memory for `sync`. All or nothing: if one record cannot
    /// be encoded, none of `records` is queued.
    pub fn append(&mut self, records: &[R]) -> Result<(), StorageError> {
        self.check_usable()?;
        let start = self.unsynced.len();
        for record in records {
            if let Err(e) = encode_frame(&mut self.unsynced, record) {
                self.unsynced.truncate(start);
                return Err(StorageError::io(&self.path, e));
            }
        }
        self.unsynced_records += records.len();
        Ok(())
    }

    /// Make every appended record durable: one write, one fdatasync, however
    /// many records the batch holds (group commit). Does nothing when
    /// nothing is pending.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        if self.unsynced.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.unsynced).and_then(|()| self.file.sync_data()) {
            self.failed = true;
            return Err(StorageError::io(&self.path, e));
        }
        self.durable_len += self.unsynced.len() as u64;
        self.unsynced.clear();
        self.unsynced_records = 0;
        Ok(())
    }

    /// Replace every durable record with `records`, atomically: a crash
    /// leaves either the old log or the new one. Records appended but not
    /// yet synced stay queued and land after `records` at the next `sync`.
    pub fn rewrite(&mut self, records: &[R]) -> Result<(), StorageError> {
        self.check_usable()?;
        let mut bytes = Vec::new();
        for record in records {
            encode_frame(&mut bytes, record).map_err(|e| StorageError::io(&self.path, e))?;
        }
        let tmp = tmp_path(&self.path);
        let written = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(f)
        });
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(StorageError::io(&tmp, e));
            }
        };
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::io(&self.path, e));
        }
        // The name now points at the new file; the old handle is stale. The
        // new handle's position is at its end, where the next sync writes.
        self.file = file;
        self.durable_len = bytes.len() as u64;
        if let Err(e) = sync_dir(parent_dir(&self.path)) {
            self.failed = true;
            return Err(e);
        }
        Ok(())
    }

    /// Every durable record, read back from the file (unsynced ones are not
    /// in it yet). Used for compaction and for `recover` after open.
    pub fn read_durable(&self) -> Result<Vec<R>, StorageError> {
        self.check_usable()?;
        let bytes = fs::read(&self.path).map_err(|e| StorageError::io(&self.path, e))?;
        let (records, end) = parse(&self.path, &bytes)?;
        if end as u64 != self.durable_len || bytes.len() != end {
            return Err(StorageError::corrupt(
                &self.path,
                end as u64,
                format!(
                    "the file holds {} bytes ({end} in whole records) but this process made {} bytes durable; \
                     something else is writing to the log",
                    bytes.len(),
                    self.durable_len
                ),
            ));
        }
        Ok(records)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file, all of them fsynced.
    pub fn durable_len(&self) -> u64 {
        self.durable_len
    }

    /// Records appended since the last `sync`.
    pub fn unsynced_records(&self) -> usize {
        self.unsynced_records
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::io(
                &self.path,
                io::Error::other(
                    "an earlier write or fsync of this log failed, so what is on disk is unknown; \
                     restart the node so that it recovers from the file",
                ),
            ));
        }
        Ok(())
    }
}

/// `<path>.tmp`: where `rewrite` builds the next log.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Remove a half-written temporary file left by a crash; it was never
/// renamed into place, so nothing in it was ever relied on.
pub(crate) fn remove_leftover(tmp: &Path) -> Result<(), StorageError> {
    match fs::remove_file(tmp) {
        Ok(()) => {
            warn!(file = %tmp.display(), "removed a temporary file left by an interrupted write");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(tmp, e)),
    }
}

/// Append one frame for `record` to `buf`. On error `buf` may hold a
/// partial frame; the caller truncates it.
fn encode_frame<R: Serialize>(buf: &mut Vec<u8>, record: &R) -> io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    serde_json::to_writer(&mut *buf, record).map_err(io::Error::from)?;
    let payload = &buf[start + FRAME_HEADER_LEN..];
    let len = u32::try_from(payload.len()).ok().filter(|len| *len <= MAX_RECORD_LEN).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a record of {} bytes exceeds the maximum of {MAX_RECORD_LEN} bytes", payload.len()),
        )
    })?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Why the frame at some offset is not a whole, intact frame.
enum BadFrame {
    ShortHeader,
    ZeroLength,
    TooLong(u32),
    PastEnd(u32),
    Crc { stored: u32, computed: u32, end: usize },
}

/// The payload of the frame at `offset` and where the next frame starts.
fn check_frame(bytes: &[u8], offset: usize) -> Result<(&[u8], usize), BadFrame> {
    let header = bytes.get(offset..offset + FRAME_HEADER_LEN).ok_or(BadFrame::ShortHeader)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Err(BadFrame::ZeroLength);
    }
    if len > MAX_RECORD_LEN {
        return Err(BadFrame::TooLong(len));
    }
    let start = offset + FRAME_HEADER_LEN;
    let end = start + len as usize;
    let payload = bytes.get(start..end).ok_or(BadFrame::PastEnd(len))?;
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Err(BadFrame::Crc { stored, computed, end });
    }
    Ok((payload, end))
}

/// The first offset after `from` where an intact frame starts, if any.
///
/// Cheap despite looking at every offset: a payload is JSON, which never
/// holds a byte below 0x20, while a length up to `MAX_RECORD_LEN` needs a
/// top byte below 0x04, so inside payloads the length check fails at once.
fn next_intact_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1)).find(|&at| check_frame(bytes, at).is_ok())
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Decode every frame. Returns the records and the end of the last whole
/// one; bytes past that end are a torn tail. Anything else is `Corrupt`.
fn parse<R: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<(Vec<R>, usize), StorageError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let corrupt = move |reason: String| Err(StorageError::corrupt(path, offset as u64, reason));
        match check_frame(bytes, offset) {
            Ok((payload, next)) => match serde_json::from_slice(payload) {
                Ok(record) => {
                    records.push(record);
                    offset = next;
                }
                // The CRC says these are the bytes that were written, so
                // this is no torn write: a bug, or a log from another version.
                Err(e) => return corrupt(format!("the record's checksum is intact but it does not decode: {e}")),
            },
            // Fewer bytes than a header: the start of a write that never finished.
            Err(BadFrame::ShortHeader) => break,
            // Some file systems extend the file before its data lands, leaving zeros.
            Err(BadFrame::ZeroLength) if all_zero(&bytes[offset..]) => break,
            Err(BadFrame::ZeroLength) => {
                return corrupt("a frame has length 0, which no record has, and non-zero data follows".into());
            }
            Err(BadFrame::TooLong(len)) => {
                return corrupt(format!(
                    "a frame claims {len} bytes, more than the maximum record size of {MAX_RECORD_LEN}: \
                     its length field is damaged"
                ));
            }
            // A damaged length can also point past the end; only an intact
            // frame further on tells that apart from a torn write.
            Err(BadFrame::PastEnd(len)) => match next_intact_frame(bytes, offset + FRAME_HEADER_LEN) {
                None => break,
                Some(at) => {
                    return corrupt(format!(
                        "a frame claims {len} bytes, past the end of the file, yet an intact record starts at \
                         byte offset {at}: its length field is damaged"
                    ));
                }
            },
            Err(BadFrame::Crc { end, .. }) if all_zero(&bytes[end..]) => break,
            Err(BadFrame::Crc { stored, computed, end }) => {
                return corrupt(format!(
                    "checksum mismatch (stored {stored:08x}, computed {computed:08x}) with {} more bytes after \
                     the frame, so it is damage before the tail, not a torn write",
                    bytes.len() - end
                ));
            }
        }
    }
    Ok((records, offset))
}

#[cfg(test)]
mod tests;
