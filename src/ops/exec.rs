//! Running commands: one line at a time (`run_line`, `execute`: the SSH
//! subsystem and the CLI) or many over one channel (`run_console`).

use super::api::{LogEntry, NodeApi};
use super::audit::{AuditLog, AuditRecord, rfc3339};
use super::command::{Invocation, OpsCommand, parse};
use super::render::{Answer, LeaderInfo, entry_json, entry_text};
use super::{EXIT_OK, OpsError, Role, authorize};
use crate::state_machine::{Op, OpResult};
use std::time::SystemTime;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

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
    match answer(ctx, invocation, out, false).await {
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
    if json && !matches!(e, OpsError::Output(_)) {
        let _ = write_flush(out, &format!("{}\n", e.to_json())).await;
    }
    let _ = write_flush(err, &format!("paxos: {e}\n")).await;
    e.exit_code()
}

async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(out: &mut W, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes()).await?;
    out.flush().await
}

/// Run commands from `input`, one per line, until it ends. Each answer is
/// written to `out`; with `json` (or `--json` on a line) every answer,
/// errors included, is exactly one line, so a client can pipeline requests
/// and match answers by order. Blank lines and lines starting with `#` are
/// skipped without an answer. Only an I/O error ends the session early.
pub async fn run_console<R, W>(ctx: &Context<'_>, json: bool, input: R, out: &mut W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (result, json) = match parse(line) {
            Ok(mut invocation) => {
                invocation.json |= json;
                (answer(ctx, &invocation, out, true).await, invocation.json)
            }
            Err(e) => (Err(OpsError::Usage(e)), json || line.split_whitespace().any(|w| w == "--json")),
        };
        match result {
            Ok(()) => {}
            Err(OpsError::Output(e)) => return Err(e),
            Err(e) if json => write_flush(out, &format!("{}\n", e.to_json())).await?,
            Err(e) => write_flush(out, &format!("error: {e}\n")).await?,
        }
    }
    Ok(())
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
        OpsCommand::Members => Answer::Members(api.members().await),
        OpsCommand::Propose { .. } | OpsCommand::Put { .. } | OpsCommand::Delete { .. } | OpsCommand::Cas { .. } => {
            let Some((op, request)) = command.to_op() else { unreachable!("a log mutation has an op") };
            let key = match &op {
                Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => Some(key.clone()),
                Op::Propose { .. } => None,
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
            let result = api.step_down(*to).await.map_err(OpsError::from);
            audit(ctx, invocation, outcome(&result, |leader| format!("ok leader={leader}")));
            Answer::SteppedDown { leader: result? }
        }
        OpsCommand::Metrics => Answer::Metrics(api.metrics().await),
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
