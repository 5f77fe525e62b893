//! The log on real files with real fsync, over a record type of its own.

use super::*;
use serde::Deserialize;
use std::io::{Seek, SeekFrom};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    n: u64,
    text: String,
}

fn note(n: u64) -> Note {
    Note { n, text: format!("note number {n}") }
}

fn notes(range: std::ops::Range<u64>) -> Vec<Note> {
    range.map(note).collect()
}

/// A log at `dir/wal.log` holding `records`, synced; returns its path and
/// the byte offset where each record's frame starts.
fn log_with(dir: &Path, records: &[Note]) -> (PathBuf, Vec<u64>) {
    let path = dir.join("wal.log");
    let (mut wal, _) = Wal::<Note>::open(&path).unwrap();
    let mut offsets = Vec::new();
    for record in records {
        offsets.push(wal.durable_len());
        wal.append(std::slice::from_ref(record)).unwrap();
        wal.sync().unwrap();
    }
    (path, offsets)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn write_at(path: &Path, at: u64, data: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(data).unwrap();
}

fn append_raw(path: &Path, data: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(data).unwrap();
}

/// Run `f` and return what it logged, as text.
fn with_logs<T>(f: impl FnOnce() -> T) -> (String, T) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let logged = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    (logged, result)
}

fn reopen(path: &Path) -> Result<(Wal<Note>, Vec<Note>), StorageError> {
    Wal::<Note>::open(path)
}

#[test]
fn synced_records_come_back_in_order_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), &notes(0..5));
    let (_, records) = reopen(&path).unwrap();
    assert_eq!(records, notes(0..5));
}

#[test]
fn many_appends_and_one_sync_make_every_record_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.log");
    let (mut wal, _) = Wal::<Note>::open(&path).unwrap();
    for n in 0..1000 {
        wal.append(&[note(n)]).unwrap();
    }
    assert_eq!(file_len(&path), 0, "append alone writes nothing");
    assert_eq!(wal.unsynced_records(), 1000);
    wal.sync().unwrap();
    assert_eq!(wal.unsynced_records(), 0);
    assert_eq!(file_len(&path), wal.durable_len());
    drop(wal);
    assert_eq!(reopen(&path).unwrap().1, notes(0..1000));
}

#[test]
fn records_appended_but_never_synced_are_gone_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.log");
    let (mut wal, _) = Wal::<Note>::open(&path).unwrap();
    wal.append(&notes(0..2)).unwrap();
    wal.sync().unwrap();
    wal.append(&notes(2..4)).unwrap();
    drop(wal);
    assert_eq!(reopen(&path).unwrap().1, notes(0..2));
}

#[test]
fn a_last_record_cut_mid_payload_is_truncated_and_the_log_takes_new_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..4));
    let last = offsets[3];
    OpenOptions::new().write(true).open(&path).unwrap().set_len(last + 8 + 5).unwrap();

    let (logged, (mut wal, records)) = with_logs(|| reopen(&path).unwrap());
    assert_eq!(records, notes(0..3));
    assert_eq!(file_len(&path), last, "truncated to the end of the last whole record");
    for needle in ["WARN", "torn write", &path.display().to_string(), &format!("offset={last}"), "dropped_bytes=13"] {
        assert!(logged.contains(needle), "the warning should say {needle:?}: {logged}");
    }
    wal.append(&[note(10)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(reopen(&path).unwrap().1, [notes(0..3), vec![note(10)]].concat());
}

#[test]
fn a_last_record_cut_inside_its_header_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..3));
    OpenOptions::new().write(true).open(&path).unwrap().set_len(offsets[2] + 3).unwrap();
    assert_eq!(reopen(&path).unwrap().1, notes(0..2));
    assert_eq!(file_len(&path), offsets[2]);
}

#[test]
fn a_final_record_with_a_bad_checksum_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..3));
    flip_byte(&path, offsets[2] + 8 + 4);
    let (mut wal, records) = reopen(&path).unwrap();
    assert_eq!(records, notes(0..2));
    assert_eq!(file_len(&path), offsets[2]);
    wal.append(&[note(7)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(reopen(&path).unwrap().1, [notes(0..2), vec![note(7)]].concat());
}

#[test]
fn a_zero_filled_tail_left_by_the_file_system_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), &notes(0..2));
    let good = file_len(&path);
    append_raw(&path, &[0; 4096]);
    assert_eq!(reopen(&path).unwrap().1, notes(0..2));
    assert_eq!(file_len(&path), good);
}

#[test]
fn a_flipped_byte_before_the_tail_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..3));
    let before = file_len(&path);
    flip_byte(&path, offsets[1] + 8 + 2);

    let err = reopen(&path).unwrap_err();
    match &err {
        StorageError::Corrupt { path: p, offset, reason } => {
            assert_eq!(p, &path);
            assert_eq!(*offset, offsets[1]);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte offset {}", offsets[1])), "{message}");
    assert_eq!(file_len(&path), before, "a damaged log is left as it is for the operator");
}

#[test]
fn a_garbage_huge_length_is_reported_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..3));
    write_at(&path, offsets[1], &u32::MAX.to_le_bytes());
    match reopen(&path).unwrap_err() {
        StorageError::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, offsets[1]);
            assert!(reason.contains("maximum record size"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_damaged_length_that_points_past_the_end_is_not_mistaken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = log_with(dir.path(), &notes(0..3));
    // Below the maximum, past the end of the file: on its own it looks like
    // a torn write, but the intact record after it says otherwise.
    write_at(&path, offsets[1], &1_000_000u32.to_le_bytes());
    match reopen(&path).unwrap_err() {
        StorageError::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, offsets[1]);
            assert!(reason.contains(&format!("intact record starts at byte offset {}", offsets[2])), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn an_intact_record_that_does_not_decode_is_corrupt_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), &notes(0..2));
    let at = file_len(&path);
    let payload = br#"{"not":"a note"}"#;
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    append_raw(&path, &frame);
    match reopen(&path).unwrap_err() {
        StorageError::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, at);
            assert!(reason.contains("does not decode"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_rewrite_replaces_the_log_and_keeps_unsynced_records_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.log");
    let (mut wal, _) = Wal::<Note>::open(&path).unwrap();
    wal.append(&notes(0..10)).unwrap();
    wal.sync().unwrap();
    wal.append(&[note(10)]).unwrap();
    wal.rewrite(&notes(8..10)).unwrap();
    assert_eq!(wal.read_durable().unwrap(), notes(8..10));
    assert!(!tmp_path(&path).exists());
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(reopen(&path).unwrap().1, notes(8..11));
}

#[test]
fn a_leftover_rewrite_tmp_is_removed_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), &notes(0..2));
    fs::write(tmp_path(&path), b"half a rewrite").unwrap();
    assert_eq!(reopen(&path).unwrap().1, notes(0..2));
    assert!(!tmp_path(&path).exists());
}

#[test]
fn an_append_that_cannot_be_encoded_queues_nothing() {
    #[derive(Serialize, Deserialize)]
    struct Keyed(std::collections::BTreeMap<(u8, u8), u8>);
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::<Keyed>::open(&dir.path().join("wal.log")).unwrap();
    // JSON object keys must be strings, so a tuple key fails to encode.
    let bad = Keyed([((1, 2), 3)].into());
    let fine = Keyed(Default::default());
    assert!(matches!(wal.append(&[fine, bad]), Err(StorageError::Io { .. })));
    assert_eq!(wal.unsynced_records(), 0);
    wal.sync().unwrap();
    assert_eq!(wal.durable_len(), 0);
}
