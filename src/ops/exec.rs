//! Running commands: one line at a time (`run_line`, `execute`: the SSH
//! subsystem and the CLI); the console (`super::console`) runs many.
//!
//! A command that panics ends as an internal error of that command alone:
//! the panic is caught here, logged, and answered like any other error, so
//! one bad command never takes a console, let alone the node, with it.

use super::api::{LogEntry, NodeApi, Submitted};
use super::audit::{AuditLog, AuditRecord, rfc3339};
use super::command::{Invocation, OpsCommand, parse, usage_error};
use super::health::node_health;
use super::members::{self, MemberCommand};
use super::render::{Answer, LeaderInfo, entry_json, entry_text};
use super::{EXIT_OK, OpsError, Role, authorize};
use crate::consensus::ballot::NodeId;
use crate::state_machine::{Op, OpResult};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::SystemTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Who is asking, and what they are asking.
pub struct Context<'a> {
    pub api: &'a dyn NodeApi,
    pub role: Role,
    /// SHA-256 fingerprint of the caller's key, for the audit log.
    pub fingerprint: &'a str,
    /// Where mutations are recorded; `None` only where nothing is audited (tests, local tools).
    pub audit: Option<&'a AuditLog>,
}

/// Parse and run one command line: the answer goes to `out`; a failure
/// writes one line to `err` (and, with `--json`, an error document to `out`).
/// Returns the exit status. `watch` runs until the node ends it or a write
/// fails; a caller that learns the channel closed should drop the future.
/// `console` is not run here: check for `OpsCommand::Console` first and
/// hand the channel to `run_console`.
pub async fn run_line<W, E>(ctx: &Context<'_>, line: &str, out: &mut W, err: &mut E) -> i32
where
    W: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    match parse(line) {
        Ok(invocation) => execute(ctx, &invocation, out, err).await,
        Err(e) => {
            let json = line.split_whitespace().any(|w| w == "--json");
            report(&OpsError::Usage(e), json, out, err).await
        }
    }
}

/// Run a parsed command; see `run_line`.
pub async fn execute<W, E>(ctx: &Context<'_>, invocation: &Invocation, out: &mut W, err: &mut E) -> i32
where
    W: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    match answer_contained(ctx, invocation, out, false).await {
        Ok(()) => EXIT_OK,
        Err(e) => report(&e, invocation.json, out, err).await,
    }
}

async fn report<W, E>(e: &OpsError, json: bool, out: &mut W, err: &mut E) -> i32
where
    W: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    // The caller may be gone; the exit status is all that is left to give.
    // An unhealthy node has answered already; the status says the rest.
    if json && !matches!(e, OpsError::Output(_) | OpsError::Unhealthy { .. }) {
        let _ = write_flush(out, &format!("{}\n", e.to_json())).await;
    }
    let _ = write_flush(err, &format!("paxos: {}\n", escape_controls(&e.to_string()))).await;
    e.exit_code()
}

/// `text` with control characters (C0, DEL, C1) and the bidirectional
/// overrides shown as escapes (`\x1b`, `\u{202e}`), so stored bytes cannot
/// drive the reader's terminal. Text output is for people; `--json` carries
/// values exactly.
pub fn escape_controls(text: &str) -> String {
    let hostile = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hostile) {
        return text.to_owned();
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if (c as u32) < 0x80 && hostile(c) => shown.push_str(&format!("\\x{:02x}", c as u32)),
            c if hostile(c) => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    shown
}

/// `answer`, with a panic caught and turned into `OpsError::Internal`.
pub(super) async fn answer_contained<W>(
    ctx: &Context<'_>,
    invocation: &Invocation,
    out: &mut W,
    in_console: bool,
) -> Result<(), OpsError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    match AssertUnwindSafe(answer(ctx, invocation, out, in_console)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(command = %invocation.line, fingerprint = ctx.fingerprint, %reason, "operator command panicked; only that command was stopped");
            Err(OpsError::Internal { command: invocation.command.name(), reason })
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(out: &mut W, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes()).await?;
    out.flush().await
}

fn audit(ctx: &Context<'_>, invocation: &Invocation, outcome: String) {
    let Some(log) = ctx.audit else { return };
    let record = AuditRecord {
        time: rfc3339(SystemTime::now()),
        fingerprint: ctx.fingerprint.to_owned(),
        role: ctx.role,
        command: invocation.line.clone(),
        outcome,
    };
    if let Err(e) = log.record(&record) {
        tracing::error!(error = %e, command = %invocation.line, "cannot write the audit log");
    }
}

fn outcome<T>(result: &Result<T, OpsError>, ok: impl FnOnce(&T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        // Not "failed": a leader has the command and may still apply it.
        Err(e @ OpsError::Node(super::api::NodeError::OutcomeUnknown { .. })) => format!("unknown: {e}"),
        Err(e) => format!("failed: {e}"),
    }
}

/// Check a membership change against the live cluster, put it in the log,
/// and turn the state machine's refusal into an error.
async fn change_members(api: &dyn NodeApi, change: &MemberCommand) -> Result<Submitted, OpsError> {
    let names: BTreeMap<NodeId, String> = api.members().await.into_iter().map(|m| (m.id, m.name)).collect();
    let seed_name = |id: NodeId| names.get(&id).cloned();
    if let MemberCommand::Add { name, address, key, .. } = change
        && let Some(clash) = members::seed_host_clash(api.seed_inventory(), name, address, key)
    {
        return Err(OpsError::Refused(clash));
    }
    let change = members::checked_change(api, change, &seed_name).await?.map_err(OpsError::Refused)?;
    let submitted = api.submit(Op::Reconfigure { change }, None).await?;
    match submitted.result {
        OpResult::Refused { reason } => Err(OpsError::Refused(reason)),
        _ => Ok(submitted),
    }
}

/// Authorize, run and answer one command.
async fn answer<W>(ctx: &Context<'_>, invocation: &Invocation, out: &mut W, in_console: bool) -> Result<(), OpsError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let api = ctx.api;
    let command = &invocation.command;
    if let Err(denied) = authorize(ctx.role, command) {
        audit(ctx, invocation, "denied".to_owned());
        return Err(denied.into());
    }
    let answer = match command {
        OpsCommand::Status => Answer::Status(api.status().await),
        OpsCommand::Leader => match api.status().await.leader {
            None => Answer::Leader(None),
            Some(id) => {
                let members = api.members().await;
                let member = members.iter().find(|m| m.id == id);
                let (name, address) = (member.map(|m| m.name.clone()), member.map(|m| m.address.clone()));
                Answer::Leader(Some(LeaderInfo { id, name, address }))
            }
        },
        OpsCommand::Members { change: None, inventory: false } => Answer::Members(api.members().await),
        OpsCommand::Members { change: None, inventory: true } => {
            let view = api.membership().await?;
            let live = api.seed_inventory().with_membership(&view.membership).map_err(OpsError::Refused)?;
            Answer::Inventory(live.to_value())
        }
        OpsCommand::Members { change: Some(change), .. } => {
            let result = change_members(api, change).await;
            audit(ctx, invocation, outcome(&result, |s| format!("ok slot={}", s.slot)));
            Answer::Submitted { key: None, submitted: result? }
        }
        OpsCommand::Propose { .. } | OpsCommand::Put { .. } | OpsCommand::Delete { .. } | OpsCommand::Cas { .. } => {
            let Some((op, request)) = command.to_op() else { unreachable!("a log mutation has an op") };
            let key = match &op {
                Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => Some(key.clone()),
                Op::Propose { .. } | Op::Reconfigure { .. } => None,
            };
            let result = api.submit(op, request).await.map_err(OpsError::from).and_then(|submitted| {
                if let OpResult::StaleSequence { last_seq } = submitted.result {
                    let request = request.map_or_else(|| "?".to_owned(), |r| r.to_string());
                    return Err(OpsError::StaleRequest { request, last_seq });
                }
                Ok(submitted)
            });
            audit(ctx, invocation, outcome(&result, |s| format!("ok slot={}", s.slot)));
            Answer::Submitted { key, submitted: result? }
        }
        OpsCommand::Get { key, stale } => {
            Answer::Value { key: key.clone(), read: api.read(key.clone(), !stale).await? }
        }
        OpsCommand::Log { from, limit } => {
            let from = match from {
                Some(from) => *from,
                None => api.status().await.commit_index.saturating_sub(*limit),
            };
            let entries = api.log(from, *limit).await?;
            let next = entries.last().map_or(from, |e| e.slot + 1);
            Answer::Log { entries, next }
        }
        OpsCommand::Watch { .. } if in_console => {
            return Err(OpsError::NotHere("watch runs until you disconnect; run it as its own command".into()));
        }
        OpsCommand::Watch { from } => return watch(ctx, *from, invocation.json, out).await,
        OpsCommand::StepDown { to } => {
            if let Some(to) = to {
                let members = api.members().await;
                if !members.iter().any(|m| m.id == *to) {
                    let ids: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
                    let message = format!("node {to} is not a member of this cluster (members: {})", ids.join(", "));
                    return Err(usage_error(Some("step-down"), message).into());
                }
            }
            let result = api.step_down(*to).await.map_err(OpsError::from);
            audit(ctx, invocation, outcome(&result, |leader| format!("ok leader={leader}")));
            Answer::SteppedDown { leader: result? }
        }
        OpsCommand::Metrics => Answer::Metrics(api.metrics().await),
        OpsCommand::Health { max_lag } => {
            let (status, members) = (api.status().await, api.members().await);
            let health = node_health(&status, &members, api.quorum(), *max_lag);
            let problems = health.problems.len();
            write_flush(out, &Answer::Health(health).render(invocation.json)).await?;
            // A console has no exit status: the answer says it all.
            return if problems == 0 || in_console { Ok(()) } else { Err(OpsError::Unhealthy { problems }) };
        }
        OpsCommand::Help { topic } => Answer::help(topic.as_deref(), ctx.role),
        OpsCommand::Console => {
            return Err(OpsError::NotHere(
                "a console is a whole session (ssh NODE -s paxos console); it cannot run inside another command".into(),
            ));
        }
    };
    let mut text = answer.render(invocation.json);
    if in_console && text.is_empty() {
        // A person at a console should see that the command did answer.
        text = match answer {
            Answer::Value { .. } => "(absent)\n".to_owned(),
            _ => "(nothing)\n".to_owned(),
        };
    }
    write_flush(out, &text).await?;
    Ok(())
}

/// Stream decided entries until the node ends the watch or the caller goes away.
async fn watch<W>(ctx: &Context<'_>, from: Option<u64>, json: bool, out: &mut W) -> Result<(), OpsError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let from = match from {
        Some(from) => from,
        None => ctx.api.status().await.commit_index,
    };
    let mut entries = ctx.api.watch(from).await?;
    while let Some(entry) = entries.recv().await {
        let entry: LogEntry = entry?;
        let line = if json { entry_json(&entry).to_string() } else { entry_text(&entry) };
        write_flush(out, &(line + "\n")).await?;
    }
    Ok(())
}
