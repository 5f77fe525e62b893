//! A snapshot a node can load must be one it can send: a leader answers a
//! learner that fell behind its compacted log with `InstallSnapshot` chunks
//! of its state's JSON image (`consensus::snapshot_transfer`), which cross
//! the peer codec. Input as for `snapshot_load`: one flag byte (bit 0 fixes
//! the header), then the file.
//!
//! Property: for every snapshot `storage::snapshot::load` accepts, each
//! chunk of its image (cut at UTF-8 boundaries, at most the default chunk
//! size) encodes within the frame limit and decodes back to an equal
//! message, and the chunks put back together decode to an equal store.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::consensus::config::Tuning;
use paxos::consensus::messages::{InstallSnapshot, Message};
use paxos::ssh::frame::{DEFAULT_MAX_FRAME, decode_message, encode_message};
use paxos::state_machine::KvStore;
use paxos::storage::snapshot::{self, SNAPSHOT_FILE};
use paxos_fuzz::{fix_snapshot_header, fresh_data_dir, storage_image};

fuzz_target!(|data: &[u8]| {
    let Some(image) = storage_image(data, fix_snapshot_header) else { return };
    let dir = fresh_data_dir();
    std::fs::write(dir.join(SNAPSHOT_FILE), &image).expect("cannot write the scratch snapshot");
    let Ok(Some(loaded)) = snapshot::load(&dir) else { return };

    let image = serde_json::to_string(&loaded.state).expect("a store always serializes");
    let chunk_bytes = Tuning::default().snapshot_chunk_bytes;
    let mut received = String::new();
    let mut offset = 0;
    while offset < image.len() {
        let mut end = (offset + chunk_bytes).min(image.len());
        while !image.is_char_boundary(end) {
            end -= 1;
        }
        let msg = Message::InstallSnapshot(InstallSnapshot {
            through: loaded.through,
            offset: offset as u64,
            total: image.len() as u64,
            chunk: image[offset..end].to_string(),
        });
        let body = match encode_message(&msg, DEFAULT_MAX_FRAME) {
            Ok(body) => body,
            Err(e) => panic!("a snapshot chunk does not encode as a peer message: {e}"),
        };
        match decode_message::<Message>(&body) {
            Ok(Message::InstallSnapshot(back)) => {
                assert_eq!(Message::InstallSnapshot(back.clone()), msg, "a chunk changed on its way");
                received.push_str(&back.chunk);
            }
            Ok(other) => panic!("a chunk decoded as another message: {other:?}"),
            Err(e) => panic!("a snapshot chunk does not decode at the learner: {e}"),
        }
        offset = end;
    }
    let state: KvStore = serde_json::from_str(&received).expect("the image put back together decodes");
    assert_eq!(state, loaded.state, "the store changed on its way through the peer codec");
});
