//! One benchmark client: a console channel on one node, kept `pipeline`
//! commands deep. A writer half sends command lines while a reader half
//! takes the answers, which come one JSON line per command, in order; each
//! command's latency runs from just before its line is sent to its answer.

use super::stats::{Ack, Errors, Samples, unix_micros};
use crate::consensus::rng::Rng;
use crate::ops::api::Submitted;
use crate::ssh::client::{Console, ConsoleRx, ConsoleTx};
use crate::state_machine::OpResult;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// When commands are measured, and when clients stop sending.
#[derive(Debug)]
pub struct Schedule {
    /// Commands sent before this are warm-up.
    pub measure_from: Instant,
    /// No command is sent from here on.
    pub stop_at: Instant,
    /// With a count: measured commands not yet sent. `None`: run until `stop_at`.
    remaining: Option<AtomicU64>,
}

/// What a client may do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticket {
    Warmup,
    Measured,
    Stop,
}

impl Schedule {
    pub fn new(measure_from: Instant, stop_at: Instant, count: Option<u64>) -> Schedule {
        Schedule { measure_from, stop_at, remaining: count.map(AtomicU64::new) }
    }

    /// Claims the next command: warm-up, measured (one of the count, if
    /// there is one), or none at all.
    pub fn ticket(&self, now: Instant) -> Ticket {
        if now >= self.stop_at {
            return Ticket::Stop;
        }
        if now < self.measure_from {
            return Ticket::Warmup;
        }
        match &self.remaining {
            None => Ticket::Measured,
            Some(left) => match left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
                Ok(_) => Ticket::Measured,
                Err(_) => Ticket::Stop,
            },
        }
    }
}

/// What every client sends.
#[derive(Clone, Debug)]
pub struct Workload {
    pub keys: u64,
    pub read_percent: u32,
    pub value_size: usize,
    pub pipeline: usize,
    /// Keep an [`Ack`] of every answered command (`--ack-log`).
    pub record_acks: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write,
    Read,
}

/// The figures of one client.
#[derive(Debug, Default)]
pub struct ClientResult {
    pub writes: Samples,
    pub reads: Samples,
    pub errors: Errors,
    /// Failed commands sent during the warm-up; not in `errors`.
    pub warmup_errors: u64,
    /// When the last measured command was answered.
    pub last_answer: Option<Instant>,
    /// Every answered command, warm-up included, if the workload asks for them.
    pub acks: Vec<Ack>,
}

/// Why an answer is not the success it should be: a kind and a text.
pub type Failure = (String, String);

fn shorten(line: &str) -> String {
    const MAX: usize = 300;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Checks one JSON answer: a `put` must have been applied as a put, a
/// `get` must carry a value (or null) and the index it was read at.
pub fn check_answer(kind: Kind, line: &str) -> Result<(), Failure> {
    let unexpected = || ("unexpected".to_owned(), format!("unexpected answer: {}", shorten(line)));
    let doc: Value = serde_json::from_str(line)
        .map_err(|e| ("unreadable".to_owned(), format!("not JSON ({e}): {}", shorten(line))))?;
    if let Some(error) = doc.get("error") {
        let kind = error.get("kind").and_then(Value::as_str).unwrap_or("error").to_owned();
        let text = error.get("message").and_then(Value::as_str).map_or_else(|| shorten(line), str::to_owned);
        return Err((kind, text));
    }
    match kind {
        Kind::Write => match serde_json::from_value::<Submitted>(doc) {
            Ok(Submitted { result: OpResult::Put { .. }, .. }) => Ok(()),
            _ => Err(unexpected()),
        },
        Kind::Read => {
            let value_ok = matches!(doc.get("value"), Some(Value::String(_) | Value::Null));
            let index_ok = doc.get("index").is_some_and(Value::is_u64);
            if value_ok && index_ok { Ok(()) } else { Err(unexpected()) }
        }
    }
}

/// Letters and digits only, so the value is one word that no parser takes for a flag.
pub fn make_value(rng: &mut Rng, size: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size).map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize] as char).collect()
}

fn next_command(rng: &mut Rng, workload: &Workload, value: &str) -> (Kind, String) {
    let key = rng.between(0, workload.keys - 1);
    if rng.between(1, 100) <= u64::from(workload.read_percent) {
        (Kind::Read, format!("get bench{key} --json"))
    } else {
        (Kind::Write, format!("put bench{key} {value} --json"))
    }
}

struct Pending {
    kind: Kind,
    sent: Instant,
    /// The same moment on the wall clock, for the ack log.
    sent_wall: SystemTime,
    measured: bool,
}

/// Runs one client until the schedule stops it and every answer is in, or
/// until `give_up_at` (answers still missing then count as errors).
pub async fn run(
    console: Console,
    workload: Arc<Workload>,
    schedule: Arc<Schedule>,
    seed: u64,
    give_up_at: Instant,
) -> ClientResult {
    let (tx, rx) = console.split();
    let window = Arc::new(Semaphore::new(workload.pipeline));
    let (pending_tx, pending_rx) = mpsc::unbounded_channel();
    let mut result = ClientResult::default();
    let send = send_loop(tx, &workload, &schedule, seed, window.clone(), pending_tx);
    let receive = receive_loop(rx, window, pending_rx, give_up_at, workload.record_acks, &mut result);
    let (send_error, ()) =
        tokio::join!(async { tokio::time::timeout_at(give_up_at, send).await.unwrap_or(None) }, receive);
    if let Some(text) = send_error {
        result.errors.add("send_failed", text);
    }
    result
}

/// Sends while the window has room; returns why it stopped early, if it did.
async fn send_loop(
    mut tx: ConsoleTx,
    workload: &Workload,
    schedule: &Schedule,
    seed: u64,
    window: Arc<Semaphore>,
    pending: mpsc::UnboundedSender<Pending>,
) -> Option<String> {
    let mut rng = Rng::new(seed);
    let value = make_value(&mut rng, workload.value_size);
    loop {
        // Closed by the receiver when the console is gone.
        let Ok(permit) = window.acquire().await else { break };
        permit.forget();
        let measured = match schedule.ticket(Instant::now()) {
            Ticket::Stop => break,
            Ticket::Warmup => false,
            Ticket::Measured => true,
        };
        let (kind, line) = next_command(&mut rng, workload, &value);
        let (sent, sent_wall) = (Instant::now(), SystemTime::now());
        // Queued before the line leaves, so its answer always finds it.
        if pending.send(Pending { kind, sent, sent_wall, measured }).is_err() {
            break;
        }
        if let Err(e) = tx.send_line(&line).await {
            return Some(format!("sending a command: {e}"));
        }
    }
    drop(pending);
    tx.finish().await;
    None
}

async fn receive_loop(
    mut rx: ConsoleRx,
    window: Arc<Semaphore>,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    give_up_at: Instant,
    record_acks: bool,
    result: &mut ClientResult,
) {
    let no_answer = || format!("no answer within {} s after the clients stopped sending", DRAIN.as_secs());
    let mut reason = String::new();
    // Ends once the sender has stopped and every command it sent is answered.
    loop {
        let command = match tokio::time::timeout_at(give_up_at, pending.recv()).await {
            Ok(Some(command)) => command,
            Ok(None) => break,
            Err(_) => {
                reason = no_answer();
                break;
            }
        };
        let line = match tokio::time::timeout_at(give_up_at, rx.read_line()).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                reason = console_ended(&rx);
                tally_unanswered(result, command, &reason);
                break;
            }
            Err(_) => {
                reason = no_answer();
                tally_unanswered(result, command, &reason);
                break;
            }
        };
        let now = Instant::now();
        let answered_wall = SystemTime::now();
        window.add_permits(1);
        let answer = check_answer(command.kind, &line);
        if record_acks {
            result.acks.push(Ack {
                sent_us: unix_micros(command.sent_wall),
                answered_us: unix_micros(answered_wall),
                write: command.kind == Kind::Write,
                failure: answer.as_ref().err().map(|(kind, _)| kind.clone()),
            });
        }
        if !command.measured {
            result.warmup_errors += u64::from(answer.is_err());
            continue;
        }
        result.last_answer = Some(now);
        match answer {
            Ok(()) => {
                let samples = if command.kind == Kind::Write { &mut result.writes } else { &mut result.reads };
                samples.record(now - command.sent);
            }
            Err((kind, text)) => result.errors.add(&kind, text),
        }
    }
    window.close();
    while let Ok(command) = pending.try_recv() {
        tally_unanswered(result, command, &reason);
    }
}

fn console_ended(rx: &ConsoleRx) -> String {
    let stderr = rx.stderr().join("; ");
    if stderr.is_empty() {
        "the console ended before answering".to_owned()
    } else {
        format!("the console ended before answering: {stderr}")
    }
}

fn tally_unanswered(result: &mut ClientResult, command: Pending, reason: &str) {
    if command.measured {
        result.errors.add("no_answer", reason);
    } else {
        result.warmup_errors += 1;
    }
}

/// Seconds to wait for the last answers after the clients stop sending:
/// longer than a node waits for a decision before it answers "timeout".
pub const DRAIN: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::api::{NodeError, ReadValue};
    use crate::ops::render::Answer;
    use crate::ops::{OpsError, UsageError};

    fn put_answer(result: OpResult) -> String {
        Answer::Submitted { key: Some("bench1".into()), submitted: Submitted { slot: 12, result } }.render(true)
    }

    #[test]
    fn a_put_answer_must_be_an_applied_put() {
        assert_eq!(check_answer(Kind::Write, put_answer(OpResult::Put { previous: None }).trim()), Ok(()));
        assert_eq!(check_answer(Kind::Write, &put_answer(OpResult::Put { previous: Some("old".into()) })), Ok(()));
        let stale = check_answer(Kind::Write, &put_answer(OpResult::StaleSequence { last_seq: 3 }));
        assert_eq!(stale.unwrap_err().0, "unexpected");
        let read = Answer::Value { key: "k".into(), read: ReadValue { value: None, index: 4 } }.render(true);
        assert_eq!(check_answer(Kind::Write, &read).unwrap_err().0, "unexpected");
    }

    #[test]
    fn a_get_answer_carries_a_value_or_null_and_its_index() {
        for value in [None, Some("v".to_owned())] {
            let answer = Answer::Value { key: "k".into(), read: ReadValue { value, index: 9 } }.render(true);
            assert_eq!(check_answer(Kind::Read, &answer), Ok(()));
        }
        assert_eq!(check_answer(Kind::Read, r#"{"key":"k","index":3}"#).unwrap_err().0, "unexpected");
        assert_eq!(
            check_answer(Kind::Read, &put_answer(OpResult::Put { previous: None })).unwrap_err().0,
            "unexpected"
        );
    }

    #[test]
    fn an_error_answer_reports_the_nodes_kind_and_message() {
        let timeout = OpsError::Node(NodeError::Timeout { waited_ms: 10_000 });
        let (kind, text) = check_answer(Kind::Write, &timeout.to_json().to_string()).unwrap_err();
        assert_eq!(kind, "timeout");
        assert_eq!(text, timeout.to_string());
        let usage = OpsError::Usage(UsageError { message: "bad".into(), usage: "paxos put KEY VALUE".into() });
        assert_eq!(check_answer(Kind::Read, &usage.to_json().to_string()).unwrap_err().0, "usage");
        let (kind, text) = check_answer(Kind::Write, "error: the node said no").unwrap_err();
        assert_eq!(kind, "unreadable");
        assert!(text.ends_with("error: the node said no"), "{text}");
        let long = "x".repeat(10_000);
        assert!(check_answer(Kind::Write, &long).unwrap_err().1.len() < 400);
    }

    #[test]
    fn the_schedule_warms_up_then_measures_until_it_stops() {
        let start = Instant::now();
        let s = Schedule::new(start + Duration::from_secs(2), start + Duration::from_secs(12), None);
        assert_eq!(s.ticket(start), Ticket::Warmup);
        assert_eq!(s.ticket(start + Duration::from_secs(2)), Ticket::Measured);
        assert_eq!(s.ticket(start + Duration::from_millis(11_999)), Ticket::Measured);
        assert_eq!(s.ticket(start + Duration::from_secs(12)), Ticket::Stop);
    }

    #[test]
    fn a_counted_schedule_hands_out_exactly_the_count() {
        let start = Instant::now();
        let s = Schedule::new(start, start + Duration::from_secs(60), Some(3));
        let tickets: Vec<Ticket> = (0..5).map(|_| s.ticket(start)).collect();
        assert_eq!(tickets, [Ticket::Measured, Ticket::Measured, Ticket::Measured, Ticket::Stop, Ticket::Stop]);
        // The time limit still applies with a count left.
        let s = Schedule::new(start, start + Duration::from_secs(1), Some(3));
        assert_eq!(s.ticket(start + Duration::from_secs(1)), Ticket::Stop);
    }

    #[test]
    fn commands_follow_the_mix_and_the_key_range() {
        let workload = Workload { keys: 10, read_percent: 30, value_size: 8, pipeline: 1, record_acks: false };
        let mut rng = Rng::new(1);
        let value = make_value(&mut rng, workload.value_size);
        assert_eq!(value.len(), 8);
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric()));
        let mut reads = 0;
        for _ in 0..10_000 {
            let (kind, line) = next_command(&mut rng, &workload, &value);
            let invocation = crate::ops::parse(&line).unwrap();
            assert!(invocation.json);
            match (kind, invocation.command) {
                (Kind::Read, crate::ops::OpsCommand::Get { key, stale: false }) => {
                    reads += 1;
                    assert!(key["bench".len()..].parse::<u64>().unwrap() < 10);
                }
                (Kind::Write, crate::ops::OpsCommand::Put { value: v, request: None, .. }) => assert_eq!(v, value),
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!((2700..3300).contains(&reads), "{reads} reads in 10000 at 30%");
        let none = Workload { read_percent: 0, ..workload.clone() };
        let all = Workload { read_percent: 100, ..workload };
        assert!((0..1000).all(|_| next_command(&mut rng, &none, &value).0 == Kind::Write));
        assert!((0..1000).all(|_| next_command(&mut rng, &all, &value).0 == Kind::Read));
    }
}
