//! A snapshot a node can load must be one it can send: a leader answers a
//! learner that fell behind its compacted log with `InstallSnapshot` of its
//! state (`consensus::learner`), which crosses the peer codec. Input as for
//! `snapshot_load`: one flag byte (bit 0 fixes the header), then the file.
//!
//! Property: every snapshot `storage::snapshot::load` accepts, wrapped in
//! `Message::InstallSnapshot`, encodes within the frame limit and decodes
//! back to an equal message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::consensus::messages::{InstallSnapshot, Message};
use paxos::ssh::frame::{DEFAULT_MAX_FRAME, decode_message, encode_message};
use paxos::storage::snapshot::{self, SNAPSHOT_FILE};
use paxos_fuzz::{fix_snapshot_header, fresh_data_dir, storage_image};

fuzz_target!(|data: &[u8]| {
    let Some(image) = storage_image(data, fix_snapshot_header) else { return };
    let dir = fresh_data_dir();
    std::fs::write(dir.join(SNAPSHOT_FILE), &image).expect("cannot write the scratch snapshot");
    let Ok(Some(loaded)) = snapshot::load(&dir) else { return };

    let msg = Message::InstallSnapshot(InstallSnapshot { through: loaded.through, state: loaded.state });
    let body = match encode_message(&msg, DEFAULT_MAX_FRAME) {
        Ok(body) => body,
        Err(e) => panic!("a loaded snapshot does not encode as a peer message: {e}"),
    };
    match decode_message::<Message>(&body) {
        Ok(back) => assert_eq!(back, msg, "the snapshot changed on its way through the peer codec"),
        Err(e) => panic!(
            "a loaded snapshot, sent as install_snapshot, does not decode at the learner: {e}\nframe: {}",
            String::from_utf8_lossy(&body)
        ),
    }
});
