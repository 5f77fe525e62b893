//! The console: many command lines over one channel (`ssh NODE -s paxos
//! console [--json]`), run concurrently and answered in the order of the
//! lines.
//!
//! Commands overlap as `super::order` allows: a command waits for every
//! earlier command of the console on the same key (reads and writes alike),
//! and a command without a key (`propose`, `status`, `log`, `help`...) waits
//! for every earlier command and holds back every later one. Commands on
//! different keys may take effect in any order until they are answered; to
//! keep an order across keys, wait for the answer. At most
//! `MAX_IN_FLIGHT` lines are read ahead of the answer written last; then the
//! console stops reading until the oldest is answered, which holds back a
//! client that sends faster than the node answers (the SSH window fills).
//!
//! Input is untrusted bytes. A line is at most `MAX_LINE_BYTES`; a longer
//! one is skipped up to its newline without being kept in memory and is
//! answered with an error, as is a line that is not UTF-8. Either way the
//! console goes on with the next line, so the answers still match the
//! requests one for one.

use super::exec::{answer_contained, escape_controls};
use super::order::{Footprint, Order};
use super::{Context, OpsError, parse};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The longest console line, newline excluded: room for a command carrying
/// a value of a few megabytes, while a line that never ends costs the node
/// no more than this.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

/// The most lines of one console read and not yet answered. Beyond it the
/// console reads nothing until the oldest is answered.
pub const MAX_IN_FLIGHT: usize = 64;

/// One line of input as read, before it is decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum RawLine {
    /// The bytes of a line without its newline (a last line may lack one).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were read and dropped.
    TooLong { bytes: u64 },
}

/// A line read so far. Kept outside the read, so that a read abandoned
/// midway (the console waits for input and for answers at once) loses
/// nothing: the next read goes on from here.
#[derive(Debug, Default)]
struct Partial {
    line: Vec<u8>,
    dropped: u64,
    saw_any: bool,
}

/// Read one line of at most `max` bytes (newline excluded). `Ok(None)` at
/// the end of input. Never holds more than `max` bytes of a line.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> std::io::Result<Option<RawLine>> {
    next_line(input, &mut Partial::default(), max).await
}

/// `read_line_bounded` with its progress in `partial`: cancel-safe, since
/// bytes are consumed only right after `fill_buf` answers, with no await
/// between, and what was consumed is in `partial`.
async fn next_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    partial: &mut Partial,
    max: usize,
) -> std::io::Result<Option<RawLine>> {
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            // End of input: a last line without a newline still counts.
            let Partial { line, dropped, saw_any } = std::mem::take(partial);
            return Ok(match (saw_any, dropped) {
                (false, _) => None,
                (true, 0) => Some(RawLine::Line(line)),
                (true, _) => Some(RawLine::TooLong { bytes: dropped + line.len() as u64 }),
            });
        }
        partial.saw_any = true;
        let (body, found_newline) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        let used = body.len() + usize::from(found_newline);
        if partial.dropped > 0 || partial.line.len() + body.len() > max {
            // Too long already: count the bytes, keep none of them.
            partial.dropped += (partial.line.len() + body.len()) as u64;
            partial.line = Vec::new();
        } else {
            partial.line.extend_from_slice(body);
        }
        input.consume(used);
        if found_newline {
            let Partial { line, dropped, .. } = std::mem::take(partial);
            return Ok(Some(if dropped > 0 { RawLine::TooLong { bytes: dropped } } else { RawLine::Line(line) }));
        }
    }
}

/// Run commands from `input`, one per line, until it ends. Each answer is
/// written to `out`, in the order of the lines; with `json` (or `--json` on
/// a line) every answer, errors included, is exactly one line, so a client
/// can pipeline requests and match answers by order. Commands overlap as
/// the module documentation says, at most `MAX_IN_FLIGHT` at a time. Blank
/// lines and lines starting with `#` are skipped without an answer. A line
/// that is too long or not UTF-8 is answered with an error and the console
/// goes on. At the end of input every command read is answered first. Only
/// an I/O error ends the session early; a read error is reported on `out`
/// after the answers of the lines before it.
pub async fn run_console<R, W>(ctx: &Context<'_>, json: bool, input: R, out: &mut W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    run_console_with(ctx, json, input, out, MAX_IN_FLIGHT).await
}

/// `run_console` with at most `limit` lines in flight (at least 1).
pub(super) async fn run_console_with<R, W>(
    ctx: &Context<'_>,
    json: bool,
    mut input: R,
    out: &mut W,
    limit: usize,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let limit = limit.max(1);
    let mut partial = Partial::default();
    let mut in_flight: FuturesOrdered<BoxFuture<'_, Vec<u8>>> = FuturesOrdered::new();
    let mut order = Order::default();
    let mut number: u64 = 0;
    let mut ended = false;
    loop {
        if ended && in_flight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            // Answers first: they free room for more lines.
            biased;
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = write_flush(out, &answer).await {
                    // The caller is gone. Commands already running still
                    // finish (and are audited); their answers go nowhere.
                    while in_flight.next().await.is_some() {}
                    return Err(e);
                }
            }
            raw = next_line(&mut input, &mut partial, MAX_LINE_BYTES), if !ended && in_flight.len() < limit => {
                let raw = match raw {
                    Ok(Some(raw)) => raw,
                    Ok(None) => {
                        ended = true;
                        continue;
                    }
                    Err(e) => {
                        while let Some(answer) = in_flight.next().await {
                            write_flush(out, &answer).await?;
                        }
                        let error = OpsError::Input(format!("the console's input failed: {e}"));
                        let _ = write_flush(out, error_text(&error, json).as_bytes()).await;
                        return Err(e);
                    }
                };
                number += 1;
                if let Some(answer) = start(ctx, json, number, raw, &mut order) {
                    in_flight.push_back(answer);
                }
            }
        }
    }
}

/// The future answering one line (`None` for a line without an answer: a
/// blank line or a comment). A command waits for the commands it must
/// follow, runs, and signals the ones waiting for it.
fn start<'a>(
    ctx: &'a Context<'a>,
    json: bool,
    number: u64,
    raw: RawLine,
    order: &mut Order,
) -> Option<BoxFuture<'a, Vec<u8>>> {
    let error = |message: String| -> Option<BoxFuture<'a, Vec<u8>>> {
        let text = error_text(&OpsError::Input(message), json);
        Some(Box::pin(std::future::ready(text.into_bytes())))
    };
    let bytes = match raw {
        RawLine::Line(bytes) => bytes,
        RawLine::TooLong { bytes } => {
            return error(format!(
                "line {number} is {bytes} bytes, over the console's limit of {MAX_LINE_BYTES} bytes; it was skipped"
            ));
        }
    };
    let Ok(line) = std::str::from_utf8(&bytes) else {
        return error(format!("line {number} is not valid UTF-8; it was skipped"));
    };
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut invocation = match parse(line) {
        Ok(invocation) => invocation,
        Err(e) => {
            let json = json || line.split_whitespace().any(|w| w == "--json");
            let text = error_text(&OpsError::Usage(e), json);
            return Some(Box::pin(std::future::ready(text.into_bytes())));
        }
    };
    invocation.json |= json;
    let mut ticket = order.admit(&Footprint::of(&invocation.command));
    Some(Box::pin(async move {
        ticket.ready().await;
        let mut answer = Vec::new();
        let result = answer_contained(ctx, &invocation, &mut answer, true).await;
        // Done before the answer is written: later commands on the key may run.
        drop(ticket);
        if let Err(e) = result {
            answer.extend_from_slice(error_text(&e, invocation.json).as_bytes());
        }
        answer
    }))
}

fn error_text(e: &OpsError, json: bool) -> String {
    if json { format!("{}\n", e.to_json()) } else { format!("error: {}\n", escape_controls(&e.to_string())) }
}

async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(out: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}
