//! The newest snapshot of the state machine, in one file replaced
//! atomically.
//!
//! Layout: `[8 bytes "PAXSNAP1"][u64 LE payload length][u32 LE CRC32 of
//! payload][payload = the Snapshot as JSON]`. The header lets a load tell a
//! damaged or truncated snapshot from a good one: once the log is compacted
//! the snapshot is the only copy of the slots below it, so a damaged one
//! must stop the node, not be read as an empty store.

use super::wal::remove_leftover;
use super::{StorageError, write_atomically_with};
use crate::consensus::records::Snapshot;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The snapshot's file name inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// Where a snapshot is written before it is renamed into place.
pub const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";

const MAGIC: &[u8; 8] = b"PAXSNAP1";
const HEADER_LEN: usize = 8 + 8 + 4;

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Write `snapshot` durably and atomically into `dir`: to `snapshot.tmp`,
/// fsync, rename over `snapshot.bin`, fsync the directory. A crash leaves
/// the old snapshot or the new one, never a mix.
///
/// The JSON streams to the file through a buffer as it is produced, the
/// checksum and length summed on the way, and the header is filled in
/// last: a 35 MB store costs no 35 MB buffer (let alone two).
pub fn save(dir: &Path, snapshot: &Snapshot) -> Result<(), StorageError> {
    write_atomically_with(dir, SNAPSHOT_TMP_FILE, SNAPSHOT_FILE, |file| encode_into(file, snapshot))
}

/// The snapshot in `dir`, if one was ever saved. A leftover `snapshot.tmp`
/// is never read: it was not renamed into place, so it is not a snapshot.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let path = path_in(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    decode(&path, &bytes).map(Some)
}

/// Remove a `snapshot.tmp` that a crash left behind.
pub fn remove_leftover_tmp(dir: &Path) -> Result<(), StorageError> {
    remove_leftover(&dir.join(SNAPSHOT_TMP_FILE))
}

/// A writer that passes bytes through, counting them and summing their CRC.
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write the snapshot's header and payload to `file` from its start.
fn encode_into(file: &mut fs::File, snapshot: &Snapshot) -> io::Result<()> {
    file.write_all(&[0; HEADER_LEN])?;
    let (len, crc) = {
        let buffered = io::BufWriter::with_capacity(256 * 1024, &mut *file);
        let mut out = Summing { inner: buffered, crc: crc32fast::Hasher::new(), len: 0 };
        serde_json::to_writer(&mut out, snapshot)?;
        out.flush()?;
        (out.len, out.crc.clone().finalize())
    };
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&len.to_le_bytes());
    header[16..].copy_from_slice(&crc.to_le_bytes());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::corrupt(path, offset as u64, reason);
    let Some((header, payload)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err(corrupt(0, format!("the snapshot is {} bytes, shorter than its header", bytes.len())));
    };
    if &header[..8] != MAGIC {
        return Err(corrupt(0, "the file does not start with the snapshot marker PAXSNAP1".into()));
    }
    let mut len = [0; 8];
    len.copy_from_slice(&header[8..16]);
    let len = u64::from_le_bytes(len);
    if len != payload.len() as u64 {
        return Err(corrupt(
            8,
            format!(
                "the header says {len} bytes of snapshot follow, but {} do: the snapshot is damaged",
                payload.len()
            ),
        ));
    }
    let stored = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(corrupt(
            HEADER_LEN,
            format!(
                "snapshot checksum mismatch (stored {stored:08x}, computed {computed:08x}): the snapshot is damaged"
            ),
        ));
    }
    let snapshot: Snapshot = serde_json::from_slice(payload)
        .map_err(|e| corrupt(HEADER_LEN, format!("the snapshot's checksum is intact but it does not decode: {e}")))?;
    let max = crate::consensus::provenance::MAX_SLOT;
    if snapshot.through > max {
        return Err(corrupt(HEADER_LEN, format!("the snapshot claims slot {} (the limit is {max})", snapshot.through)));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::{Command, KvStore, Op};

    fn snapshot(through: u64) -> Snapshot {
        let mut state = KvStore::new(10);
        for slot in 0..through {
            state
                .apply(slot, &Command { client: 7, seq: slot + 1, op: Op::Put { key: "k".into(), value: "v".into() } });
        }
        Snapshot { through, state }
    }

    #[test]
    fn a_saved_snapshot_loads_back_with_its_client_sessions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None, "no snapshot yet");
        save(dir.path(), &snapshot(3)).unwrap();
        save(dir.path(), &snapshot(5)).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back, snapshot(5));
        assert!(!dir.path().join(SNAPSHOT_TMP_FILE).exists());
    }

    #[test]
    fn the_streamed_file_is_the_header_then_the_json_it_sums() {
        let dir = tempfile::tempdir().unwrap();
        // Larger than the write buffer, so the sums cross many writes.
        let big = Snapshot { through: 9, state: big_store() };
        save(dir.path(), &big).unwrap();
        let bytes = fs::read(path_in(dir.path())).unwrap();
        let payload = serde_json::to_vec(&big).unwrap();
        assert!(payload.len() > 1 << 20);
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(bytes[8..16], (payload.len() as u64).to_le_bytes());
        assert_eq!(bytes[16..20], crc32fast::hash(&payload).to_le_bytes());
        assert_eq!(bytes[HEADER_LEN..], payload[..]);
        assert_eq!(load(dir.path()).unwrap(), Some(big));
    }

    fn big_store() -> KvStore {
        let mut state = KvStore::new(10);
        for n in 0..5_000u64 {
            let op = Op::Put { key: format!("key{n}"), value: "v".repeat(256) };
            state.apply(n, &Command { client: n + 1, seq: 1, op });
        }
        state
    }

    #[test]
    fn a_failed_save_leaves_the_old_snapshot_and_no_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snapshot(2)).unwrap();
        // A directory where the tmp file goes: the write fails.
        fs::create_dir(dir.path().join(SNAPSHOT_TMP_FILE)).unwrap();
        assert!(save(dir.path(), &snapshot(5)).is_err());
        fs::remove_dir(dir.path().join(SNAPSHOT_TMP_FILE)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(snapshot(2)));
    }

    #[test]
    fn a_snapshot_cut_short_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snapshot(2)).unwrap();
        let path = path_in(dir.path());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset: 8, .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path_in(dir.path()), b"{\"through\":1}").unwrap();
        assert!(matches!(load(dir.path()), Err(StorageError::Corrupt { offset: 0, .. })));
    }

    /// Found by the snapshot_load fuzz target: a well-formed snapshot at the
    /// top of the slot range overflowed the next snapshot's slot on restart.
    #[test]
    fn a_snapshot_claiming_an_absurd_slot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &Snapshot { through: u64::MAX, state: KvStore::new(10) }).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("claims slot 18446744073709551615"), "{err}");
    }
}
