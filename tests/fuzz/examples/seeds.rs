//! Writes the committed seed corpus and the libFuzzer dictionaries from the
//! real code: frames made by `encode_message`, a WAL and a snapshot written
//! by `DiskStorage`, command lines the grammar accepts, the example
//! inventory and an inventory with generated host keys.
//!
//! Run from the repository root (stable toolchain is enough):
//!     cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds
//! Host keys are generated afresh, so the cluster seeds change on each run.

use bytes::{Bytes, BytesMut};
use paxos::consensus::ballot::Ballot;
use paxos::consensus::messages::*;
use paxos::consensus::records::{Record, Snapshot};
use paxos::ops::COMMANDS;
use paxos::ssh::clock_probe::ClockFrame;
use paxos::ssh::frame::{DEFAULT_MAX_FRAME, encode_hello, encode_message, peer_codec};
use paxos::state_machine::{Command, Entry, KvStore, Op};
use paxos::storage::disk::WAL_FILE;
use paxos::storage::snapshot::SNAPSHOT_FILE;
use paxos::storage::{DiskStorage, Storage};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use tokio_util::codec::Encoder;

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz_dir.join("corpus");
    let dicts = fuzz_dir.join("dicts");
    fs::create_dir_all(&dicts).unwrap();

    let messages = sample_messages();
    let mut frame_tokens = BTreeSet::new();
    for msg in &messages {
        json_tokens(&serde_json::to_value(msg).unwrap(), &mut frame_tokens);
    }
    json_tokens(&serde_json::to_value(paxos::ssh::frame::Hello { protocol: 1, node: 2 }).unwrap(), &mut frame_tokens);
    let dir = seed_dir(&corpus, "peer_frame");
    // One channel per message kind: hello, then the message.
    for msg in &messages {
        write(&dir, &format!("{}.bin", msg.kind()), &channel(std::slice::from_ref(msg)));
    }
    write(&dir, "all-kinds.bin", &channel(&messages));
    // The clock frames that share a peer channel: a probe and its echo.
    let clock_frames = [
        ClockFrame::ClockProbe { origin: 1_764_547_200_000_000 },
        ClockFrame::ClockEcho { origin: 1_764_547_200_000_000, received: 1_764_547_202_000_050, sent: 1_764_547_202_000_060 },
    ];
    for frame in &clock_frames {
        json_tokens(&serde_json::to_value(frame).unwrap(), &mut frame_tokens);
    }
    write(&dir, "clock-frames.bin", &clock_channel(&clock_frames));
    write_dict(&dicts.join("peer_frame.dict"), &frame_tokens);

    let dir = seed_dir(&corpus, "ops_command");
    let lines = [
        "paxos status",
        "paxos status --json",
        "paxos put greeting hello world",
        "paxos put k v --request 7:1 --json",
        "paxos get greeting --stale",
        "paxos cas greeting hello bye",
        "paxos cas fresh --absent first value",
        "paxos delete greeting --request 9:2",
        "paxos log --from 5 --limit 3 --json",
        "paxos watch --from 0",
        "paxos step-down --to 2",
        "paxos propose a value",
        "paxos help put",
        "paxos console --json",
        "metrics",
    ];
    for (i, line) in lines.iter().enumerate() {
        write(&dir, &format!("line-{i:02}.txt"), line.as_bytes());
    }
    write(&dir, "console.txt", b"# a console session\nput a 1\r\nget a --json\n\ncas a 1 2\nleader\nmembers\n");
    let mut command_tokens: BTreeSet<String> = COMMANDS.iter().map(|c| c.name.to_owned()).collect();
    for c in COMMANDS {
        let words = c.usage.split(|ch: char| ch.is_whitespace() || "[]|".contains(ch));
        let flags = words.filter(|w| w.starts_with("--"));
        command_tokens.extend(flags.map(|w| w.trim_end_matches(|ch: char| !ch.is_alphanumeric()).to_owned()));
    }
    command_tokens.extend(["paxos", "--json", "--request", "--help", "-h"].map(String::from));
    write_dict(&dicts.join("ops_command.dict"), &command_tokens);

    let StorageImages { wals: wal_images, snapshot: snapshot_image, tokens: storage_tokens } = storage_images();
    let dir = seed_dir(&corpus, "wal_recovery");
    for (name, image) in &wal_images {
        write(&dir, &format!("{name}.raw"), &flagged(0, image));
        write(&dir, &format!("{name}.fixcrc"), &flagged(1, image));
    }
    write_dict(&dicts.join("wal_recovery.dict"), &storage_tokens);
    for target in ["snapshot_load", "snapshot_install"] {
        let dir = seed_dir(&corpus, target);
        write(&dir, "snapshot.raw", &flagged(0, &snapshot_image));
        write(&dir, "snapshot.fixcrc", &flagged(1, &snapshot_image));
        write_dict(&dicts.join(format!("{target}.dict")), &storage_tokens);
    }

    let dir = seed_dir(&corpus, "cluster_config");
    let example_path = fuzz_dir.join("../../hosts/example.json");
    let example = fs::read(&example_path).unwrap();
    write(&dir, "example.json", &example);
    let node = br#"{"id": 1, "listen": "127.0.0.1:7100", "data_dir": "data/node-1", "key_file": "keys/node-1.key", "cluster_file": "cluster.json", "audit_log": "audit.log", "log_format": "json"}"#;
    write(&dir, "example-and-node.json", &[&example[..], b"\0", node].concat());
    let keyed = keyed_inventory();
    let minimal_node = br#"{"id": 2}"#;
    write(&dir, "keyed-and-node.json", &[keyed.as_bytes(), b"\0", node].concat());
    write(&dir, "keyed-and-minimal-node.json", &[keyed.as_bytes(), b"\0", minimal_node].concat());
    let mut cluster_tokens = BTreeSet::new();
    json_tokens(&serde_json::from_slice(&example).unwrap(), &mut cluster_tokens);
    json_tokens(&serde_json::from_slice(node).unwrap(), &mut cluster_tokens);
    cluster_tokens.extend(["\"host_key\":", "\"ssh-ed25519 ", "\"text\"", "\"::1\""].map(String::from));
    write_dict(&dicts.join("cluster_config.dict"), &cluster_tokens);
}

fn ballot(round: u64, node: u64) -> Ballot {
    Ballot::new(round, node)
}

fn commands() -> Vec<Command> {
    vec![
        Command { client: 7, seq: 1, op: Op::Put { key: "greeting".into(), value: "hello world".into() } },
        Command { client: 7, seq: 2, op: Op::Cas { key: "greeting".into(), expected: None, new: "x".into() } },
        Command {
            client: 9,
            seq: 1,
            op: Op::Cas { key: "greeting".into(), expected: Some("hello world".into()), new: "bye".into() },
        },
        Command { client: 9, seq: 2, op: Op::Delete { key: "greeting".into() } },
        Command { client: 11, seq: 1, op: Op::Propose { value: "v\u{e9}\n\"q\"".into() } },
    ]
}

fn batch() -> Entry {
    Entry::Batch { commands: commands() }
}

/// One message of each kind, with the fields a running cluster fills in.
fn sample_messages() -> Vec<Message> {
    let b = ballot(4, 1);
    let mut state = KvStore::new(100);
    for (slot, command) in commands().iter().enumerate() {
        state.apply(slot as u64, command);
    }
    vec![
        Message::Probe(Probe { ballot: ballot(5, 2) }),
        Message::ProbeReply(ProbeReply { ballot: ballot(5, 2), granted: true, promised: b, commit_index: 12 }),
        Message::Prepare(Prepare { ballot: ballot(5, 2), first_slot: 12, transfer: true, rejoin: false }),
        Message::Prepare(Prepare { ballot: ballot(6, 3), first_slot: 0, transfer: false, rejoin: true }),
        Message::Promise(Promise {
            ballot: ballot(5, 2),
            votes: vec![Vote { slot: 12, ballot: b, entry: batch() }, Vote { slot: 13, ballot: b, entry: Entry::Noop }],
            decided: vec![(15, batch())],
            commit_index: 12,
            incarnation: 77,
            known: vec![(1, 71), (3, 73)],
        }),
        Message::Hello(Hello { incarnation: 77 }),
        Message::HelloReply(HelloReply { incarnation: 71, others: true }),
        Message::Accept(Accept { ballot: b, slot: 13, entry: batch(), commit_index: 12 }),
        Message::Accepted(Accepted { ballot: b, slot: 13 }),
        Message::Nack(Nack { ballot: ballot(3, 3), promised: b, reason: NackReason::LeaderAlive }),
        Message::Heartbeat(Heartbeat { ballot: b, commit_index: 14, read_round: 8 }),
        Message::HeartbeatReply(HeartbeatReply { ballot: b, ok: false, read_round: 8, promised: b, commit_index: 14 }),
        Message::CatchUp(CatchUp { from_slot: 3, snapshot: None }),
        Message::CatchUp(CatchUp { from_slot: 3, snapshot: Some(SnapshotCursor { through: 5, offset: 64 }) }),
        Message::Decided(Decided { first_slot: 3, entries: vec![Entry::Noop, batch()], commit_index: 5 }),
        Message::InstallSnapshot(InstallSnapshot {
            through: 5,
            offset: 0,
            total: serde_json::to_string(&state).map_or(0, |j| j.len() as u64),
            chunk: serde_json::to_string(&state).unwrap_or_default(),
        }),
        Message::Forward(Forward { commands: commands() }),
        Message::ReadIndex(ReadIndex { id: 77, more: vec![78] }),
        Message::ReadIndexReply(ReadIndexReply { id: 77, more: vec![78], index: 14 }),
        Message::TimeoutNow(TimeoutNow { ballot: b }),
    ]
}

/// The bytes of a peer channel from node 2: its hello, then `messages`.
fn channel(messages: &[Message]) -> Vec<u8> {
    let mut codec = peer_codec(DEFAULT_MAX_FRAME);
    let mut wire = BytesMut::new();
    codec.encode(encode_hello(2).unwrap(), &mut wire).unwrap();
    for msg in messages {
        let body: Bytes = encode_message(msg, DEFAULT_MAX_FRAME).unwrap();
        codec.encode(body, &mut wire).unwrap();
    }
    wire.to_vec()
}

/// A peer channel from node 2 carrying clock frames after its hello.
fn clock_channel(frames: &[ClockFrame]) -> Vec<u8> {
    let mut codec = peer_codec(DEFAULT_MAX_FRAME);
    let mut wire = BytesMut::new();
    codec.encode(encode_hello(2).unwrap(), &mut wire).unwrap();
    for frame in frames {
        codec.encode(frame.encode(), &mut wire).unwrap();
    }
    wire.to_vec()
}

/// WAL images (whole, compacted after a snapshot, with a torn tail) and
/// the snapshot, all written by `DiskStorage`, and their JSON tokens.
struct StorageImages {
    /// Named WAL files.
    wals: Vec<(&'static str, Vec<u8>)>,
    snapshot: Vec<u8>,
    tokens: BTreeSet<String>,
}

fn storage_images() -> StorageImages {
    let dir = tempfile::tempdir().unwrap();
    let b = ballot(2, 1);
    let records = vec![
        Record::Campaigned { ballot: b },
        Record::Promised { ballot: b },
        Record::Accepted { slot: 0, ballot: b, entry: batch() },
        Record::Accepted { slot: 1, ballot: b, entry: Entry::Noop },
        Record::Committed { through: 2 },
        Record::Decided { slot: 2, entry: batch() },
        Record::Committed { through: 3 },
    ];
    let mut tokens = BTreeSet::new();
    for record in &records {
        json_tokens(&serde_json::to_value(record).unwrap(), &mut tokens);
    }
    let mut storage = DiskStorage::open(dir.path()).unwrap();
    storage.append(&records).unwrap();
    storage.sync().unwrap();
    let whole = fs::read(dir.path().join(WAL_FILE)).unwrap();
    let torn = whole[..whole.len() - 5].to_vec();

    let mut state = KvStore::new(100);
    for (slot, command) in commands().iter().enumerate() {
        state.apply(slot as u64, command);
    }
    let snapshot = Snapshot { through: 3, state };
    json_tokens(&serde_json::to_value(&snapshot).unwrap(), &mut tokens);
    storage.save_snapshot(&snapshot).unwrap();
    storage.append(&[Record::Accepted { slot: 3, ballot: ballot(3, 2), entry: batch() }]).unwrap();
    storage.sync().unwrap();
    let compacted = fs::read(dir.path().join(WAL_FILE)).unwrap();
    let snapshot_image = fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
    let wals = vec![("whole", whole), ("torn-tail", torn), ("after-snapshot", compacted)];
    StorageImages { wals, snapshot: snapshot_image, tokens }
}

/// An inventory whose nodes have real ed25519 host keys, and an operator.
fn keyed_inventory() -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let key = paxos::keys::generate_ed25519(&dir.path().join(name), name).unwrap();
        paxos::keys::public_line(&key)
    };
    let nodes: Vec<Value> = (1..=3)
        .map(|id| {
            serde_json::json!({
                "id": id, "name": format!("node{id}"), "host": "127.0.0.1", "port": 7100 + id,
                "host_key": key(&format!("node{id}")),
            })
        })
        .collect();
    let inventory = serde_json::json!({
        "cluster": "fuzz", "tick_ms": 10, "nodes": nodes, "operators": [key("operator")], "readers": [],
    });
    serde_json::to_string_pretty(&inventory).unwrap()
}

fn flagged(flags: u8, image: &[u8]) -> Vec<u8> {
    [&[flags][..], image].concat()
}

/// The target's seed directory. Files not written here stay: the snapshot
/// seeds `snapshot-sessions-as-object.*` hold the format written before
/// client sessions went on the wire as pairs, which loading still accepts.
fn seed_dir(corpus: &Path, target: &str) -> PathBuf {
    let dir = corpus.join(target);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

/// Object keys (as `"key":`) and string values (quoted) of a JSON value.
fn json_tokens(value: &Value, tokens: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                tokens.insert(format!("\"{key}\":"));
                json_tokens(value, tokens);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| json_tokens(v, tokens)),
        Value::String(s) if s.len() <= 32 => {
            tokens.insert(format!("\"{s}\""));
        }
        _ => {}
    }
}

/// Integers at the edges of the types that slots, ballots, sizes and
/// timings use: where `+ 1` and `* 2` overflow.
const BOUNDARY_NUMBERS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551614",
    "9223372036854775808",
    "9223372036854775807",
    "4294967296",
    "4294967295",
    "18446744073709551616",
    "-1",
];

/// libFuzzer's dictionary format: one quoted token a line.
fn write_dict(path: &Path, tokens: &BTreeSet<String>) {
    let mut text =
        String::from("# Generated by `cargo run --example seeds`: tokens of real inputs, boundary integers.\n");
    let numbers = BOUNDARY_NUMBERS.iter().map(|n| n.to_string());
    for token in tokens.iter().cloned().chain(numbers) {
        let mut escaped = String::new();
        for byte in token.bytes() {
            match byte {
                b'"' | b'\\' => escaped.push_str(&format!("\\{}", byte as char)),
                0x20..=0x7e => escaped.push(byte as char),
                _ => escaped.push_str(&format!("\\x{byte:02X}")),
            }
        }
        text.push_str(&format!("\"{escaped}\"\n"));
    }
    fs::write(path, text).unwrap();
}
