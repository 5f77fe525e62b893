//! Messages between replicas: one struct per message, the `Message` enum
//! that tags them on the wire, and the `Envelope` that addresses them.

use super::ballot::{Ballot, NodeId};
use crate::state_machine::{Command, Entry, Slot};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Probe(Probe),
    ProbeReply(ProbeReply),
    Prepare(Prepare),
    Promise(Promise),
    Accept(Accept),
    Accepted(Accepted),
    Nack(Nack),
    Heartbeat(Heartbeat),
    HeartbeatReply(HeartbeatReply),
    CatchUp(CatchUp),
    Decided(Decided),
    InstallSnapshot(InstallSnapshot),
    Forward(Forward),
    ReadIndex(ReadIndex),
    ReadIndexReply(ReadIndexReply),
    TimeoutNow(TimeoutNow),
    Hello(Hello),
    HelloReply(HelloReply),
}

/// Pre-vote: "would you promise `ballot` if I asked?" An acceptor answers
/// without changing state, so a node cut off from the cluster cannot inflate
/// ballots and depose a healthy leader when it comes back (the aim of Raft's
/// pre-vote, §9.6 of Ongaro's thesis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub ballot: Ballot,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReply {
    pub ballot: Ballot,
    pub granted: bool,
    pub promised: Ballot,
    /// Lets a node that cannot hear the leader learn that it is behind and
    /// catch up from whoever answered.
    #[serde(default)]
    pub commit_index: Slot,
}

/// Phase 1a for every slot from `first_slot` on (Multi-Paxos runs phase 1
/// once per leadership, not once per slot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepare {
    pub ballot: Ballot,
    pub first_slot: Slot,
    /// Set by a planned leadership transfer: acceptors waive stickiness.
    #[serde(default)]
    pub transfer: bool,
    /// Phase 1 of an acceptor that lost its data and is rejoining
    /// (`membership`): acceptors waive stickiness; the sender never leads
    /// with this ballot.
    #[serde(default)]
    pub rejoin: bool,
}

/// A vote an acceptor cast before: value `entry` for `slot` at `ballot`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub slot: Slot,
    pub ballot: Ballot,
    pub entry: Entry,
}

/// Phase 1b. Every slot below `commit_index` is decided at this acceptor and
/// not reported: the new leader proposes nothing there and learns those
/// entries by catch-up. For slots at or above both `commit_index` and the
/// prepare's `first_slot`, `votes` holds this acceptor's votes and `decided`
/// the entries it knows were chosen (beyond a gap in its log).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promise {
    pub ballot: Ballot,
    pub votes: Vec<Vote>,
    pub decided: Vec<(Slot, Entry)>,
    pub commit_index: Slot,
    /// The sender's incarnation, and every incarnation it has recorded for
    /// its peers: a candidate drops a promise that another contradicts
    /// (a promise made before its sender lost its data).
    #[serde(default)]
    pub incarnation: u64,
    #[serde(default)]
    pub known: Vec<(NodeId, u64)>,
}

impl Promise {
    /// The promise without the votes and decisions it reported: what a
    /// leader keeps to check later promises against.
    pub fn without_values(&self) -> Promise {
        Promise { votes: Vec::new(), decided: Vec::new(), known: self.known.clone(), ..*self }
    }
}

/// Phase 2a for one slot; piggybacks the leader's commit index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    pub ballot: Ballot,
    pub slot: Slot,
    pub entry: Entry,
    pub commit_index: Slot,
}

/// Phase 2b.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub ballot: Ballot,
    pub slot: Slot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackReason {
    /// The acceptor promised a higher ballot.
    Preempted,
    /// The acceptor hears from a live leader and will not promise anyone else.
    LeaderAlive,
}

/// A refusal of a prepare or accept at `ballot`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    pub ballot: Ballot,
    pub promised: Ballot,
    pub reason: NackReason,
}

/// Sent by the leader every heartbeat interval to every other member.
/// `read_round` lets followers' replies confirm leadership for reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ballot: Ballot,
    pub commit_index: Slot,
    pub read_round: u64,
}

/// `ok` is false if the sender promised a higher ballot than the leader's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub ballot: Ballot,
    pub ok: bool,
    pub read_round: u64,
    pub promised: Ballot,
    pub commit_index: Slot,
}

/// A learner missing decisions from `from_slot` on asks for them; while it
/// downloads a snapshot, `snapshot` says which chunk it needs next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    pub from_slot: Slot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotCursor>,
}

/// The next byte wanted of the snapshot image taken through `through`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCursor {
    pub through: Slot,
    pub offset: u64,
}

/// Chosen entries, contiguous from `first_slot`, and the sender's commit index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub first_slot: Slot,
    pub entries: Vec<Entry>,
    pub commit_index: Slot,
}

/// One chunk of the state machine after applying every slot below
/// `through`, for a learner that fell behind past the compacted part of the
/// log. The image is the store's JSON, `total` bytes, sent as consecutive
/// UTF-8 chunks from `offset`, each small enough for a frame even with
/// every byte escaped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstallSnapshot {
    pub through: Slot,
    pub offset: u64,
    pub total: u64,
    pub chunk: String,
}

/// Client commands a follower hands to the leader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forward {
    pub commands: Vec<Command>,
}

/// A follower asks the leader for a read index (etcd's ReadIndex) for the
/// read `id` and the reads in `more`, which arrived in the same batch. A
/// node of an earlier version reads `id` alone and ignores `more`; those
/// reads are asked again when they time out, so a rolling upgrade slows
/// them down but loses none and closes no channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadIndex {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<u64>,
}

/// The read index for the reads `id` and `more`, confirmed together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadIndexReply {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<u64>,
    pub index: Slot,
}

/// Most read ids one `ReadIndex` or `ReadIndexReply` carries (about 170 KB
/// of JSON), whatever the number of reads waiting.
pub const MAX_READ_IDS: usize = 8192;

impl ReadIndex {
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.id).chain(self.more.iter().copied())
    }
}

impl ReadIndexReply {
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.id).chain(self.more.iter().copied())
    }
}

/// `ids` as messages of at most `MAX_READ_IDS` each: (first, the rest).
pub fn read_id_chunks(ids: &[u64]) -> impl Iterator<Item = (u64, Vec<u64>)> + '_ {
    ids.chunks(MAX_READ_IDS).map(|chunk| (chunk[0], chunk[1..].to_vec()))
}

/// Planned transfer: the leader asks the target to campaign at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeoutNow {
    pub ballot: Ballot,
}

/// "I am this incarnation": sent to every peer until it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub incarnation: u64,
}

/// Sent once the hello's incarnation is on disk. `others`: the sender has
/// seen another incarnation of the node that said hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    pub incarnation: u64,
    pub others: bool,
}

impl Message {
    /// The wire tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Probe(_) => "probe",
            Message::ProbeReply(_) => "probe_reply",
            Message::Prepare(_) => "prepare",
            Message::Promise(_) => "promise",
            Message::Accept(_) => "accept",
            Message::Accepted(_) => "accepted",
            Message::Nack(_) => "nack",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatReply(_) => "heartbeat_reply",
            Message::CatchUp(_) => "catch_up",
            Message::Decided(_) => "decided",
            Message::InstallSnapshot(_) => "install_snapshot",
            Message::Forward(_) => "forward",
            Message::ReadIndex(_) => "read_index",
            Message::ReadIndexReply(_) => "read_index_reply",
            Message::TimeoutNow(_) => "timeout_now",
            Message::Hello(_) => "hello",
            Message::HelloReply(_) => "hello_reply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_type_on_the_wire() {
        let msg = Message::Accepted(Accepted { ballot: Ballot::new(3, 1), slot: 9 });
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["type"], "accepted");
        assert_eq!(json["slot"], 9);
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn read_index_messages_of_one_read_keep_the_earlier_form_both_ways() {
        // What a node of the earlier version sends and understands.
        let old = r#"{"type":"read_index","id":7}"#;
        assert_eq!(
            serde_json::from_str::<Message>(old).unwrap(),
            Message::ReadIndex(ReadIndex { id: 7, more: vec![] })
        );
        let one = Message::ReadIndexReply(ReadIndexReply { id: 7, more: vec![], index: 3 });
        assert_eq!(serde_json::to_string(&one).unwrap(), r#"{"type":"read_index_reply","id":7,"index":3}"#);
        // Several: the first where the earlier version looks, the rest beside it.
        let many = Message::ReadIndex(ReadIndex { id: 7, more: vec![8, 9] });
        let json = serde_json::to_value(&many).unwrap();
        assert_eq!((json["id"].as_u64(), json["more"].as_array().map(Vec::len)), (Some(7), Some(2)));
    }

    #[test]
    fn read_ids_go_in_messages_of_at_most_max_read_ids() {
        let ids: Vec<u64> = (0..2 * MAX_READ_IDS as u64 + 1).collect();
        let chunks: Vec<(u64, Vec<u64>)> = read_id_chunks(&ids).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|(_, more)| more.len() < MAX_READ_IDS));
        let back: Vec<u64> = chunks.into_iter().flat_map(|(id, more)| std::iter::once(id).chain(more)).collect();
        assert_eq!(back, ids);
        assert_eq!(read_id_chunks(&[]).count(), 0);
    }

    #[test]
    fn an_unknown_message_type_fails_to_decode() {
        let err = serde_json::from_str::<Message>(r#"{"type":"launch_missiles"}"#).unwrap_err();
        assert!(err.to_string().contains("launch_missiles"), "{err}");
    }
}
