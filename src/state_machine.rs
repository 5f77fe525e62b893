//! The key-value state machine applied to the decided log, in slot order.
//!
//! Commands carry (client id, sequence number). The store keeps the last
//! sequence number and result per client, so a retried command is answered
//! with its original result instead of being applied twice (the command ids
//! of "Paxos Made Moderately Complex", §3).

use crate::consensus::configuration::{MemberChange, Membership};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub type ClientId = u64;
pub type Slot = u64;

/// An operation on the store. Reads do not go through the log (see
/// `consensus::reads`), so every variant here is a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
    /// An opaque value an operator wants agreed; it changes no key.
    Propose {
        value: String,
    },
    /// A change of the cluster's membership (`consensus::configuration`).
    Reconfigure {
        change: MemberChange,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// The value of one log slot: a batch of commands, or a no-op that a new
/// leader uses to fill a hole (Paxos Made Simple, §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Noop,
    Batch { commands: Vec<Command> },
}

impl Command {
    /// About how many bytes the command holds in memory: its strings and
    /// `HELD_OVERHEAD_BYTES` for the rest.
    pub fn held_bytes(&self) -> usize {
        let strings = match &self.op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
            Op::Cas { key, expected, new } => key.len() + expected.as_ref().map_or(0, String::len) + new.len(),
            Op::Propose { value } => value.len(),
            Op::Reconfigure { change } => change.held_bytes(),
        };
        strings + HELD_OVERHEAD_BYTES
    }

    /// Bytes of this command as JSON, the form every peer message and
    /// record carries it in (escapes included); what byte budgets count.
    pub fn wire_len(&self) -> usize {
        struct Counter(usize);
        impl std::io::Write for Counter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut counter = Counter(0);
        // Serializing plain strings and integers cannot fail.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }
}

impl Entry {
    /// Bytes of the entry's commands as JSON (see `Command::wire_len`).
    pub fn wire_len(&self) -> usize {
        self.commands().iter().map(Command::wire_len).sum()
    }

    /// About how many bytes the entry holds in memory, counted cheaply
    /// (for the snapshot trigger; `wire_len` encodes the entry to count).
    pub fn held_bytes(&self) -> usize {
        self.commands().iter().map(Command::held_bytes).sum()
    }

    pub fn commands(&self) -> &[Command] {
        match self {
            Entry::Noop => &[],
            Entry::Batch { commands } => commands,
        }
    }

    /// Whether the entry carries a membership change.
    pub fn changes_membership(&self) -> bool {
        self.commands().iter().any(|c| matches!(c.op, Op::Reconfigure { .. }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OpResult {
    /// A put: the value it replaced, if any.
    Put {
        previous: Option<String>,
    },
    Delete {
        existed: bool,
    },
    Cas {
        swapped: bool,
        current: Option<String>,
    },
    /// A proposed value was agreed in this slot.
    Proposed {
        slot: Slot,
    },
    /// The client already moved past this sequence number; the original
    /// result is no longer kept.
    StaleSequence {
        last_seq: u64,
    },
    /// A membership change was decided: the configuration of `epoch`
    /// governs slots from `effective` on.
    Reconfigured {
        epoch: u64,
        effective: Slot,
    },
    /// A membership change was decided but refused, on every replica alike.
    Refused {
        reason: String,
    },
    /// The command was applied, but it was a one-off (sequence number
    /// `ONE_OFF_SEQ`) whose result no store keeps: its node answered it
    /// when it applied it, and nobody asks again.
    NotKept,
}

/// The sequence number of a one-off command: one no client will retry
/// with the same id (a node gives every command that comes without a
/// request id a fresh random client id and this sequence number). Its
/// session only stops a copy of it from being applied twice (a node
/// re-forwards a command after a leader change): it keeps no result, so the
/// session table does not hold a previous value per write.
pub const ONE_OFF_SEQ: u64 = 0;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    /// `None` for a one-off, which only the wire holds as a session (see
    /// `KvStore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<OpResult>,
    last_slot: Slot,
}

/// What applying one command did. `fresh` is false when the command was a
/// retry answered from the session table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub result: OpResult,
    pub fresh: bool,
}

/// The store. Everything is ordered (BTreeMap) so that two replicas that
/// applied the same log serialize to the same bytes.
///
/// The sessions go on the wire as a list of `[client, session]` pairs, not
/// as a JSON object: an object's keys are strings, and serde cannot turn
/// them back into integers once the store sits inside an internally tagged
/// enum (the `InstallSnapshot` message), which made every snapshot sent to a
/// peer undecodable. Reading still accepts the object form, which snapshot
/// files written before the change hold.
///
/// One-off commands (`ONE_OFF_SEQ`) keep no result, only the slot that
/// applied them, in a table of their own: 16 bytes in order plus an index
/// entry, where a session costs about 135. On the wire they are sessions
/// without a result, as before that table existed, so snapshots pass
/// between versions both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "StoreImage")]
pub struct KvStore {
    data: BTreeMap<String, String>,
    sessions: BTreeMap<ClientId, Session>,
    /// (last_slot, client) for evicting the least recently active session.
    by_recency: BTreeSet<(Slot, ClientId)>,
    /// One-off commands applied, as (slot, client) in ascending order: the
    /// order they are evicted in, the same on every replica.
    one_offs: VecDeque<(Slot, ClientId)>,
    /// client -> slot of `one_offs`, in client order for the wire.
    one_off_index: BTreeMap<ClientId, Slot>,
    max_sessions: usize,
    proposals: u64,
    /// The membership, once a change was ever decided; until then the
    /// configuration every node was started with governs (`None` keeps
    /// the snapshots of such a cluster as they were).
    membership: Option<Membership>,
}

impl Serialize for KvStore {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("KvStore", 5)?;
        out.serialize_field("data", &self.data)?;
        out.serialize_field("sessions", &SessionPairs(self))?;
        out.serialize_field("max_sessions", &self.max_sessions)?;
        out.serialize_field("proposals", &self.proposals)?;
        match &self.membership {
            Some(membership) => out.serialize_field("membership", membership)?,
            None => out.skip_field("membership")?,
        }
        out.end()
    }
}

/// Sessions and one-offs as one list of `[client, session]` pairs in client
/// order (a one-off is a session of `ONE_OFF_SEQ` without a result).
struct SessionPairs<'a>(&'a KvStore);

impl Serialize for SessionPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use std::borrow::Cow;
        let mut sessions = self.0.sessions.iter().map(|(c, s)| (*c, Cow::Borrowed(s))).peekable();
        let one_off = |(client, slot): (&ClientId, &Slot)| {
            (*client, Cow::Owned(Session { seq: ONE_OFF_SEQ, result: None, last_slot: *slot }))
        };
        let mut one_offs = self.0.one_off_index.iter().map(one_off).peekable();
        let merged = std::iter::from_fn(move || match (sessions.peek(), one_offs.peek()) {
            (Some((a, _)), Some((b, _))) if b < a => one_offs.next(),
            (Some(_), _) => sessions.next(),
            (None, _) => one_offs.next(),
        });
        serializer.collect_seq(merged)
    }
}

/// What a serialized store holds; deserializing goes through it so that the
/// recency index is always rebuilt.
#[derive(Deserialize)]
struct StoreImage {
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "sessions_from_pairs_or_map")]
    sessions: BTreeMap<ClientId, Session>,
    #[serde(default)]
    max_sessions: usize,
    #[serde(default)]
    proposals: u64,
    #[serde(default)]
    membership: Option<Membership>,
}

impl From<StoreImage> for KvStore {
    fn from(image: StoreImage) -> Self {
        // One-offs travel as sessions without a result.
        let (one_offs, sessions): (BTreeMap<_, _>, BTreeMap<_, _>) =
            image.sessions.into_iter().partition(|(_, s)| s.seq == ONE_OFF_SEQ && s.result.is_none());
        let mut one_offs: Vec<(Slot, ClientId)> = one_offs.into_iter().map(|(c, s)| (s.last_slot, c)).collect();
        one_offs.sort_unstable();
        let mut store = KvStore {
            data: image.data,
            sessions,
            by_recency: BTreeSet::new(),
            one_offs: one_offs.into(),
            one_off_index: BTreeMap::new(),
            max_sessions: image.max_sessions,
            proposals: image.proposals,
            membership: image.membership,
        };
        store.reindex();
        store
    }
}

fn sessions_from_pairs_or_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<ClientId, Session>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sessions {
        Pairs(Vec<(ClientId, Session)>),
        Map(BTreeMap<String, Session>),
    }
    match Sessions::deserialize(deserializer)? {
        Sessions::Pairs(pairs) => Ok(pairs.into_iter().collect()),
        Sessions::Map(map) => map
            .into_iter()
            .map(|(client, session)| {
                let id = client
                    .parse::<ClientId>()
                    .map_err(|_| serde::de::Error::custom(format!("session key {client:?} is not a client id")))?;
                Ok((id, session))
            })
            .collect(),
    }
}

pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// What `held_bytes` counts beyond a command's or an entry's strings, and
/// for a session and a one-off (measured with dhat: about 135 bytes a
/// session; a one-off's 16 in order plus its index entry).
const HELD_OVERHEAD_BYTES: usize = 64;
const HELD_SESSION_BYTES: usize = 135;
const HELD_ONE_OFF_BYTES: usize = 40;

impl KvStore {
    pub fn new(max_sessions: usize) -> Self {
        KvStore { max_sessions: max_sessions.max(1), ..Default::default() }
    }

    /// Rebuild the recency index (deserializing does it through `StoreImage`).
    fn reindex(&mut self) {
        self.by_recency = self.sessions.iter().map(|(c, s)| (s.last_slot, *c)).collect();
        self.one_off_index = self.one_offs.iter().map(|(slot, client)| (*client, *slot)).collect();
        if self.max_sessions == 0 {
            self.max_sessions = DEFAULT_MAX_SESSIONS;
        }
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.data.get(key)
    }

    /// About how many bytes the store holds, counted as `Command::held_bytes`
    /// counts: its keys and values, a fixed overhead per entry, sessions and
    /// one-offs at their size. O(keys): for taking a snapshot, not per command.
    pub fn held_bytes(&self) -> usize {
        let data: usize = self.data.iter().map(|(k, v)| k.len() + v.len() + HELD_OVERHEAD_BYTES).sum();
        data + self.sessions.len() * HELD_SESSION_BYTES + self.one_offs.len() * HELD_ONE_OFF_BYTES
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn proposals(&self) -> u64 {
        self.proposals
    }

    /// The replicated membership, if a change was ever decided.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Apply a decided command. A membership change first makes the store
    /// keep the membership, from `genesis` (the configuration the cluster
    /// was started with) unless it keeps one already: every replica does so
    /// at the same slot.
    pub fn apply_decided(&mut self, slot: Slot, command: &Command, genesis: impl FnOnce() -> Membership) -> Applied {
        if self.membership.is_none() && matches!(command.op, Op::Reconfigure { .. }) {
            self.membership = Some(genesis());
        }
        self.apply(slot, command)
    }

    /// A pending change is in force once `applied` reaches its first slot.
    pub fn settle_membership(&mut self, applied: Slot) {
        if let Some(m) = self.membership.as_mut() {
            m.settle(applied);
        }
    }

    /// The answer for a command already applied, and the slot of the
    /// client's last command, if any.
    pub fn cached(&self, client: ClientId, seq: u64) -> Option<(OpResult, Slot)> {
        let Some(session) = self.sessions.get(&client) else {
            let slot = self.one_off_index.get(&client).filter(|_| seq == ONE_OFF_SEQ)?;
            return Some((OpResult::NotKept, *slot));
        };
        if seq == session.seq {
            Some((session.result.clone().unwrap_or(OpResult::NotKept), session.last_slot))
        } else if seq < session.seq {
            Some((OpResult::StaleSequence { last_seq: session.seq }, session.last_slot))
        } else {
            None
        }
    }

    /// Apply one command decided in `slot`. Exactly once per (client, seq).
    pub fn apply(&mut self, slot: Slot, command: &Command) -> Applied {
        if let Some((result, _)) = self.cached(command.client, command.seq) {
            return Applied { result, fresh: false };
        }
        let result = match &command.op {
            Op::Put { key, value } => OpResult::Put { previous: self.data.insert(key.clone(), value.clone()) },
            Op::Delete { key } => OpResult::Delete { existed: self.data.remove(key).is_some() },
            Op::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                if current == *expected {
                    self.data.insert(key.clone(), new.clone());
                    OpResult::Cas { swapped: true, current: Some(new.clone()) }
                } else {
                    OpResult::Cas { swapped: false, current }
                }
            }
            Op::Propose { .. } => {
                self.proposals += 1;
                OpResult::Proposed { slot }
            }
            Op::Reconfigure { change } => match self.membership.as_mut().map(|m| m.decide(slot, change)) {
                Some(Ok((epoch, effective))) => OpResult::Reconfigured { epoch, effective },
                Some(Err(reason)) => OpResult::Refused { reason },
                None => OpResult::Refused { reason: "this store has no membership to change".into() },
            },
        };
        self.remember(command.client, command.seq, slot, result.clone());
        Applied { result, fresh: true }
    }

    fn remember(&mut self, client: ClientId, seq: u64, slot: Slot, result: OpResult) {
        if seq == ONE_OFF_SEQ {
            // Slots only grow as a store applies: this lands at or near the back.
            let at = self.one_offs.partition_point(|entry| *entry < (slot, client));
            self.one_offs.insert(at, (slot, client));
            self.one_off_index.insert(client, slot);
        } else {
            // A client that sent a one-off and now a numbered command is a
            // session from here on: it sits in one table only.
            if let Some(old) = self.one_off_index.remove(&client) {
                let at = self.one_offs.partition_point(|entry| *entry < (old, client));
                self.one_offs.remove(at);
            }
            let session = Session { seq, result: Some(result), last_slot: slot };
            if let Some(old) = self.sessions.insert(client, session) {
                self.by_recency.remove(&(old.last_slot, client));
            }
            self.by_recency.insert((slot, client));
        }
        // Evict the least recent, sessions and one-offs alike, in (slot,
        // client) order.
        while self.sessions.len() + self.one_offs.len() > self.max_sessions {
            let oldest_session = self.by_recency.first().copied();
            match self.one_offs.front().copied() {
                Some(one_off) if oldest_session.is_none_or(|s| one_off <= s) => {
                    self.one_offs.pop_front();
                    self.one_off_index.remove(&one_off.1);
                }
                _ => {
                    let Some((oldest_slot, oldest)) = oldest_session else { break };
                    self.by_recency.remove(&(oldest_slot, oldest));
                    self.sessions.remove(&oldest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(client: ClientId, seq: u64, op: Op) -> Command {
        Command { client, seq, op }
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put { key: key.into(), value: value.into() }
    }

    #[test]
    fn a_retried_command_is_applied_once_and_answered_with_its_first_result() {
        let mut kv = KvStore::new(10);
        let first = kv.apply(1, &cmd(7, 1, put("k", "a")));
        assert!(first.fresh);
        kv.apply(2, &cmd(8, 1, put("k", "b")));
        let retry = kv.apply(3, &cmd(7, 1, put("k", "a")));
        assert!(!retry.fresh);
        assert_eq!(retry.result, first.result);
        assert_eq!(kv.get("k").map(String::as_str), Some("b"), "the retry must not overwrite b");
    }

    #[test]
    fn an_older_sequence_number_is_reported_stale() {
        let mut kv = KvStore::new(10);
        kv.apply(1, &cmd(7, 2, put("k", "a")));
        let old = kv.apply(2, &cmd(7, 1, put("k", "z")));
        assert_eq!(old.result, OpResult::StaleSequence { last_seq: 2 });
        assert_eq!(kv.get("k").map(String::as_str), Some("a"));
    }

    #[test]
    fn compare_and_set_swaps_only_on_the_expected_value() {
        let mut kv = KvStore::new(10);
        let cas = |e: Option<&str>, n: &str| Op::Cas { key: "k".into(), expected: e.map(Into::into), new: n.into() };
        assert_eq!(
            kv.apply(1, &cmd(1, 1, cas(None, "a"))).result,
            OpResult::Cas { swapped: true, current: Some("a".into()) }
        );
        assert_eq!(
            kv.apply(2, &cmd(1, 2, cas(Some("x"), "b"))).result,
            OpResult::Cas { swapped: false, current: Some("a".into()) }
        );
        assert_eq!(
            kv.apply(3, &cmd(1, 3, cas(Some("a"), "b"))).result,
            OpResult::Cas { swapped: true, current: Some("b".into()) }
        );
        assert_eq!(kv.apply(4, &cmd(1, 4, Op::Delete { key: "k".into() })).result, OpResult::Delete { existed: true });
        assert_eq!(kv.get("k"), None);
    }

    #[test]
    fn sessions_beyond_the_limit_evict_the_least_recent_client() {
        let mut kv = KvStore::new(2);
        kv.apply(1, &cmd(1, 1, put("a", "1")));
        kv.apply(2, &cmd(2, 1, put("b", "1")));
        kv.apply(3, &cmd(3, 1, put("c", "1")));
        assert_eq!(kv.cached(1, 1), None, "client 1 was least recent");
        assert!(kv.cached(2, 1).is_some());
        assert!(kv.cached(3, 1).is_some());
    }

    #[test]
    fn a_one_off_command_is_applied_once_and_its_result_is_not_kept() {
        let mut kv = KvStore::new(10);
        let once = cmd(9, ONE_OFF_SEQ, put("k", "first"));
        assert_eq!(kv.apply(1, &once), Applied { result: OpResult::Put { previous: None }, fresh: true });
        kv.apply(2, &cmd(3, 1, put("k", "second")));
        // A re-forwarded copy decided later changes nothing.
        assert_eq!(kv.apply(3, &once), Applied { result: OpResult::NotKept, fresh: false });
        assert_eq!(kv.get("k").map(String::as_str), Some("second"));
        assert_eq!(kv.cached(9, ONE_OFF_SEQ), Some((OpResult::NotKept, 1)));
        // A client with a request id still gets its own answer back.
        assert_eq!(kv.cached(3, 1), Some((OpResult::Put { previous: Some("first".into()) }, 2)));
    }

    #[test]
    fn one_off_sessions_hold_no_previous_values() {
        let value = "v".repeat(256);
        let store = |seq: u64| {
            let mut kv = KvStore::new(10_000);
            for n in 0..1_000u64 {
                kv.apply(2 * n, &cmd(n + 1, seq, put("k", &value)));
            }
            serde_json::to_vec(&kv).unwrap().len()
        };
        let (kept, one_off) = (store(1), store(ONE_OFF_SEQ));
        assert!(kept - one_off > 999 * 256, "{kept} bytes with results, {one_off} without");
        let mut kv = KvStore::new(10);
        kv.apply(4, &cmd(9, ONE_OFF_SEQ, put("k", &value)));
        let json = serde_json::to_string(&kv).unwrap();
        assert_eq!(json.matches(&value).count(), 1, "{json}");
        let back: KvStore = serde_json::from_str(&json).unwrap();
        assert_eq!(back, kv);
        assert_eq!(back.cached(9, ONE_OFF_SEQ), Some((OpResult::NotKept, 4)));
    }

    #[test]
    fn one_offs_and_sessions_share_the_cap_and_the_least_recent_goes_first() {
        let mut kv = KvStore::new(3);
        kv.apply(1, &cmd(1, 1, put("a", "1")));
        kv.apply(2, &cmd(2, ONE_OFF_SEQ, put("a", "2")));
        kv.apply(3, &cmd(3, 1, put("a", "3")));
        kv.apply(4, &cmd(4, ONE_OFF_SEQ, put("a", "4")));
        assert_eq!(kv.cached(1, 1), None, "the session of slot 1 was least recent");
        kv.apply(5, &cmd(5, ONE_OFF_SEQ, put("a", "5")));
        assert_eq!(kv.cached(2, ONE_OFF_SEQ), None, "the one-off of slot 2 was least recent");
        assert!(kv.cached(3, 1).is_some());
        assert_eq!(kv.cached(4, ONE_OFF_SEQ), Some((OpResult::NotKept, 4)));
        assert_eq!(kv.cached(5, ONE_OFF_SEQ), Some((OpResult::NotKept, 5)));
        // An evicted one-off decided again is applied again: the cap is the
        // window within which copies are recognised.
        assert!(kv.apply(6, &cmd(2, ONE_OFF_SEQ, put("a", "2"))).fresh);
        let back: KvStore = serde_json::from_str(&serde_json::to_string(&kv).unwrap()).unwrap();
        assert_eq!(back, kv, "the one-off index is rebuilt on the way in");
    }

    #[test]
    fn one_offs_from_one_slot_are_evicted_in_client_order_whatever_the_apply_order() {
        let fill = |clients: [ClientId; 3]| {
            let mut kv = KvStore::new(2);
            for client in clients {
                kv.apply(7, &cmd(client, ONE_OFF_SEQ, put("a", "1")));
            }
            kv
        };
        let (a, b) = (fill([30, 10, 20]), fill([20, 30, 10]));
        assert_eq!(a, b);
        assert_eq!(a.cached(10, ONE_OFF_SEQ), None);
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }

    #[test]
    fn a_one_off_takes_a_client_id_and_a_slot_in_a_snapshot() {
        let mut kv = KvStore::new(20_000);
        for n in 0..10_000u64 {
            kv.apply(1_000_000 + n, &cmd(u64::MAX - n, ONE_OFF_SEQ, put("k", "v")));
        }
        let bytes = serde_json::to_vec(&kv).unwrap().len();
        // `[18446744073709551615,{"seq":0,"last_slot":1000000}],`
        assert!(bytes < 10_000 * 56, "{bytes} bytes for 10,000 one-offs");
    }

    #[test]
    fn a_client_that_sent_a_one_off_and_then_a_numbered_command_is_one_session() {
        let mut kv = KvStore::new(10);
        kv.apply(1, &cmd(1, ONE_OFF_SEQ, put("a", "1")));
        kv.apply(2, &cmd(1, 1, put("a", "2")));
        assert_eq!(kv.cached(1, ONE_OFF_SEQ), Some((OpResult::StaleSequence { last_seq: 1 }, 2)));
        let json = serde_json::to_string(&kv).unwrap();
        assert_eq!(json.matches("[1,").count(), 1, "{json}");
        assert_eq!(serde_json::from_str::<KvStore>(&json).unwrap(), kv);
    }

    /// The wire form is the one of the version before one-offs had a table
    /// of their own: a snapshot reads and writes the same bytes in both.
    #[test]
    fn one_offs_travel_as_sessions_without_a_result_in_client_order() {
        let json = r#"{"data":{"a":"1"},"sessions":[[3,{"seq":0,"last_slot":9}],[8,{"seq":2,"result":{"result":"delete","existed":false},"last_slot":3}],[9,{"seq":0,"last_slot":4}]],"max_sessions":5,"proposals":0}"#;
        let kv: KvStore = serde_json::from_str(json).unwrap();
        assert_eq!(kv.cached(9, ONE_OFF_SEQ), Some((OpResult::NotKept, 4)));
        assert_eq!(kv.cached(3, ONE_OFF_SEQ), Some((OpResult::NotKept, 9)));
        assert_eq!(kv.cached(8, 2), Some((OpResult::Delete { existed: false }, 3)));
        assert_eq!(serde_json::to_string(&kv).unwrap(), json);
        // The one-off of slot 4 is the least recent: it goes first.
        let mut kv = kv;
        kv.max_sessions = 3;
        kv.apply(10, &cmd(4, ONE_OFF_SEQ, put("a", "2")));
        assert_eq!(kv.cached(8, 2), None, "slot 3 was least recent");
        kv.apply(11, &cmd(5, ONE_OFF_SEQ, put("a", "3")));
        assert_eq!(kv.cached(9, ONE_OFF_SEQ), None, "slot 4 was least recent");
    }

    #[test]
    fn a_store_survives_a_json_round_trip_with_its_sessions() {
        let mut kv = KvStore::new(5);
        kv.apply(1, &cmd(1, 1, put("a", "1")));
        kv.apply(2, &cmd(1, 2, Op::Propose { value: "hello".into() }));
        let back: KvStore = serde_json::from_str(&serde_json::to_string(&kv).unwrap()).unwrap();
        assert_eq!(back, kv, "the recency index is rebuilt on the way in");
        assert_eq!(back.cached(1, 2), Some((OpResult::Proposed { slot: 2 }, 2)));
    }

    /// A store inside an internally tagged enum (as in the `InstallSnapshot`
    /// peer message) is buffered by serde before it is decoded: integer map
    /// keys written as JSON strings failed to decode there.
    #[test]
    fn a_store_inside_a_tagged_enum_survives_json() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        enum Wire {
            Snapshot { state: KvStore },
        }
        let mut kv = KvStore::new(5);
        kv.apply(1, &cmd(u64::MAX, 1, put("a", "1")));
        kv.apply(2, &cmd(42, 7, put("b", "2")));
        let wire = Wire::Snapshot { state: kv };
        let json = serde_json::to_string(&wire).unwrap();
        assert_eq!(serde_json::from_str::<Wire>(&json).unwrap(), wire);
    }

    #[test]
    fn a_store_written_with_sessions_as_an_object_still_loads() {
        let json = r#"{"data":{"a":"1"},"sessions":{"7":{"seq":3,"result":{"result":"put","previous":null},"last_slot":9}},"max_sessions":5,"proposals":0}"#;
        let kv: KvStore = serde_json::from_str(json).unwrap();
        assert_eq!(kv.cached(7, 3), Some((OpResult::Put { previous: None }, 9)));
        let bad = json.replace("\"7\"", "\"seven\"");
        let err = serde_json::from_str::<KvStore>(&bad).unwrap_err();
        assert!(err.to_string().contains("not a client id"), "{err}");
    }
}
