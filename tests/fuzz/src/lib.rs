//! What the fuzz targets share: a scratch data directory, checksum fix-ups
//! that let mutated WAL frames and snapshot headers reach the JSON decoders
//! behind them, and the replica the daemon would build from what storage
//! recovered.
//!
//! Inputs of the storage targets start with one flag byte: bit 0 set means
//! "fix the checksums (and the snapshot's length field) before writing the
//! file", so that both the framing checks and the record decoding behind
//! them get explored. Without the bit the bytes are written exactly as given.

use paxos::consensus::Replica;
use paxos::consensus::config::{Config, Roles};
use paxos::consensus::records::Recovered;
use paxos::storage::wal::{FRAME_HEADER_LEN, MAX_RECORD_LEN};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Bit 0 of a storage input's flag byte.
pub const FIX_CHECKSUMS: u8 = 1;

/// An empty data directory, the same path on every call of one process
/// (each fuzzing process has its own). `run.sh` points TMPDIR at a tmpfs
/// directory of its own, so the fsyncs of the storage code cost little, and
/// removes it afterwards: libFuzzer exits without running destructors, so a
/// bare `cargo fuzz run` leaves one small `paxos-fuzz-*` directory behind.
pub fn fresh_data_dir() -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        tempfile::Builder::new().prefix("paxos-fuzz-").tempdir().expect("cannot create a scratch directory")
    });
    let dir = root.path().join("data");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot empty the scratch directory {}: {e}", dir.display()),
    }
    std::fs::create_dir(&dir).expect("cannot create the scratch data directory");
    dir
}

/// Recompute the CRC of every whole frame of a WAL image
/// (`[u32 LE length][u32 LE CRC32][payload]`), stopping at the first frame
/// whose length is 0, too large or past the end.
pub fn fix_wal_checksums(bytes: &mut [u8]) {
    let mut offset = 0;
    while let Some(header) = bytes.get(offset..offset + FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if len == 0 || len > MAX_RECORD_LEN {
            return;
        }
        let start = offset + FRAME_HEADER_LEN;
        let Some(payload) = bytes.get(start..start + len as usize) else { return };
        let crc = crc32fast::hash(payload);
        bytes[offset + 4..start].copy_from_slice(&crc.to_le_bytes());
        offset = start + len as usize;
    }
}

/// The snapshot header: 8-byte marker, u64 LE payload length, u32 LE CRC32.
const SNAPSHOT_HEADER_LEN: usize = 8 + 8 + 4;

/// Make a snapshot image's length field and CRC match its payload (the
/// marker is left as given).
pub fn fix_snapshot_header(bytes: &mut [u8]) {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return;
    }
    let (header, payload) = bytes.split_at_mut(SNAPSHOT_HEADER_LEN);
    header[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

/// Split a storage input into its flag byte and the file image, applying
/// the fix-ups the flag asks for.
pub fn storage_image(data: &[u8], fix: fn(&mut [u8])) -> Option<Vec<u8>> {
    let (&flags, image) = data.split_first()?;
    let mut image = image.to_vec();
    if flags & FIX_CHECKSUMS != 0 {
        fix(&mut image);
    }
    Some(image)
}

/// The consensus config of node 1 in a cluster of three full members, the
/// shape of `hosts/example.json`.
pub fn three_node_config() -> Config {
    let members: BTreeMap<_, _> = (1..=3).map(|id| (id, Roles::default())).collect();
    Config::new(1, members)
}

/// What `paxos serve` does with recovered state: build the replica from it.
/// The config is valid, so only a panic can stop this.
pub fn restart_replica(recovered: Recovered) -> Replica {
    match Replica::new(three_node_config(), 0, recovered) {
        Ok(replica) => replica,
        Err(e) => panic!("the fixed three-node config was refused: {e}"),
    }
}

/// The bytes of `path`, which the target itself wrote or had the code write.
pub fn read_back(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read back {}: {e}", path.display()))
}
