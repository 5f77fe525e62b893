//! Sending a snapshot to a learner behind the compacted log, in chunks that
//! always fit a peer frame, and putting it back together on the other side.
//!
//! The sender serializes its store once into an image and serves chunks of
//! it by offset, so every learner behind gets the same consistent state; the
//! learner pulls the next chunk as soon as one arrives, and asks again for
//! the chunk it is missing on the catch-up timer when one is lost. An image
//! stays cached while the log after it is still in memory (the learner then
//! catches up by entries from its `through`).

use super::Replica;
use super::ballot::NodeId;
use super::messages::{CatchUp, InstallSnapshot, Message, SnapshotCursor};
use super::records::Snapshot;
use crate::state_machine::{KvStore, Slot};

/// A serialized store, as served to learners.
#[derive(Debug)]
pub(crate) struct SnapshotImage {
    through: Slot,
    json: String,
}

/// A snapshot being received.
#[derive(Debug)]
pub(crate) struct SnapshotDownload {
    from: NodeId,
    through: Slot,
    total: u64,
    json: String,
}

impl Replica {
    /// Answer a catch-up request that reaches below the log in memory.
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId, cursor: Option<SnapshotCursor>) {
        let usable = self.snapshot_image.as_ref().is_some_and(|i| i.through >= self.log_start && i.through > 0);
        if !usable {
            let json = serde_json::to_string(&self.kv).unwrap_or_default();
            self.snapshot_image = Some(SnapshotImage { through: self.applied, json });
        }
        let Some(image) = self.snapshot_image.as_ref() else { return };
        // Resume where the learner is, if it is downloading this very image.
        let offset = match cursor {
            Some(c) if c.through == image.through && (c.offset as usize) <= image.json.len() => c.offset as usize,
            _ => 0,
        };
        if !image.json.is_char_boundary(offset) {
            return; // not an offset this node ever sent; the learner restarts on its timer
        }
        let mut end = (offset + self.cfg.tuning.snapshot_chunk_bytes).min(image.json.len());
        while !image.json.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = InstallSnapshot {
            through: image.through,
            offset: offset as u64,
            total: image.json.len() as u64,
            chunk: image.json[offset..end].to_string(),
        };
        self.send(to, Message::InstallSnapshot(chunk));
    }

    /// Forget an image the log in memory no longer continues.
    pub(super) fn expire_snapshot_image(&mut self) {
        if self.snapshot_image.as_ref().is_some_and(|i| i.through < self.log_start) {
            self.snapshot_image = None;
        }
    }

    pub(super) fn on_install_snapshot(&mut self, from: NodeId, m: InstallSnapshot) {
        if m.through <= self.applied {
            self.snapshot_download = None;
            return;
        }
        let continues = self.snapshot_download.as_ref().is_some_and(|d| {
            d.from == from && d.through == m.through && d.total == m.total && d.json.len() as u64 == m.offset
        });
        if m.offset == 0 && !continues {
            self.snapshot_download =
                Some(SnapshotDownload { from, through: m.through, total: m.total, json: String::new() });
        } else if !continues {
            return; // a duplicate or a chunk of another transfer
        }
        let Some(download) = self.snapshot_download.as_mut() else { return };
        if download.json.len() as u64 + m.chunk.len() as u64 > download.total {
            self.snapshot_download = None;
            return;
        }
        download.json.push_str(&m.chunk);
        if (download.json.len() as u64) < download.total {
            let cursor = SnapshotCursor { through: download.through, offset: download.json.len() as u64 };
            self.last_catch_up = Some(self.now);
            let from_slot = self.commit_index;
            self.send(from, Message::CatchUp(CatchUp { from_slot, snapshot: Some(cursor) }));
            return;
        }
        let Some(download) = self.snapshot_download.take() else { return };
        let Ok(state) = serde_json::from_str::<KvStore>(&download.json) else {
            // Cannot happen between nodes of one version; start over rather than install garbage.
            return;
        };
        self.adopt_snapshot(download.through, state);
        // The runtime stores the snapshot before the records of this step,
        // so a commit marker past it never outlives it on disk.
        self.out.snapshot = Some(Snapshot { through: download.through, state: self.kv.clone() });
        self.answer_from_sessions();
        self.advance_commit();
    }

    pub(super) fn snapshot_download_source(&self) -> Option<NodeId> {
        self.snapshot_download.as_ref().map(|d| d.from)
    }

    /// Where a download in progress stands, for the next catch-up request.
    pub(super) fn snapshot_cursor(&self, target: NodeId) -> Option<SnapshotCursor> {
        self.snapshot_download
            .as_ref()
            .filter(|d| d.from == target)
            .map(|d| SnapshotCursor { through: d.through, offset: d.json.len() as u64 })
    }
}
