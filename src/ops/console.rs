//! The console: many command lines over one channel (`ssh NODE -s paxos
//! console [--json]`), answered one by one in order.
//!
//! Input is untrusted bytes. A line is at most `MAX_LINE_BYTES`; a longer
//! one is skipped up to its newline without being kept in memory and is
//! answered with an error, as is a line that is not UTF-8. Either way the
//! console goes on with the next line, so the answers still match the
//! requests one for one.

use super::exec::{answer_contained, escape_controls};
use super::{Context, OpsError, parse};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The longest console line, newline excluded: room for a command carrying
/// a value of a few megabytes, while a line that never ends costs the node
/// no more than this.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

/// One line of input as read, before it is decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum RawLine {
    /// The bytes of a line without its newline (a last line may lack one).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were read and dropped.
    TooLong { bytes: u64 },
}

/// Read one line of at most `max` bytes (newline excluded). `Ok(None)` at
/// the end of input. Never holds more than `max` bytes of a line.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> std::io::Result<Option<RawLine>> {
    let mut line = Vec::new();
    let mut dropped: u64 = 0;
    let mut saw_any = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            // End of input: a last line without a newline still counts.
            return Ok(match (saw_any, dropped) {
                (false, _) => None,
                (true, 0) => Some(RawLine::Line(line)),
                (true, _) => Some(RawLine::TooLong { bytes: dropped + line.len() as u64 }),
            });
        }
        saw_any = true;
        let (body, found_newline) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        let used = body.len() + usize::from(found_newline);
        if dropped > 0 || line.len() + body.len() > max {
            // Too long already: count the bytes, keep none of them.
            dropped += (line.len() + body.len()) as u64;
            line = Vec::new();
        } else {
            line.extend_from_slice(body);
        }
        input.consume(used);
        if found_newline {
            return Ok(Some(if dropped > 0 { RawLine::TooLong { bytes: dropped } } else { RawLine::Line(line) }));
        }
    }
}

/// Run commands from `input`, one per line, until it ends. Each answer is
/// written to `out`; with `json` (or `--json` on a line) every answer,
/// errors included, is exactly one line, so a client can pipeline requests
/// and match answers by order. Blank lines and lines starting with `#` are
/// skipped without an answer. A line that is too long or not UTF-8 is
/// answered with an error and the console goes on. Only an I/O error ends
/// the session early; a read error is reported on `out` first.
pub async fn run_console<R, W>(ctx: &Context<'_>, json: bool, mut input: R, out: &mut W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut number: u64 = 0;
    loop {
        let raw = match read_line_bounded(&mut input, MAX_LINE_BYTES).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(e) => {
                let error = OpsError::Input(format!("the console's input failed: {e}"));
                let _ = write_error(&error, json, out).await;
                return Err(e);
            }
        };
        number += 1;
        let bytes = match raw {
            RawLine::Line(bytes) => bytes,
            RawLine::TooLong { bytes } => {
                let message = format!(
                    "line {number} is {bytes} bytes, over the console's limit of {MAX_LINE_BYTES} bytes; it was skipped"
                );
                write_error(&OpsError::Input(message), json, out).await?;
                continue;
            }
        };
        let Ok(line) = std::str::from_utf8(&bytes) else {
            let message = format!("line {number} is not valid UTF-8; it was skipped");
            write_error(&OpsError::Input(message), json, out).await?;
            continue;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (result, json) = match parse(line) {
            Ok(mut invocation) => {
                invocation.json |= json;
                (answer_contained(ctx, &invocation, out, true).await, invocation.json)
            }
            Err(e) => (Err(OpsError::Usage(e)), json || line.split_whitespace().any(|w| w == "--json")),
        };
        match result {
            Ok(()) => {}
            Err(OpsError::Output(e)) => return Err(e),
            Err(e) => write_error(&e, json, out).await?,
        }
    }
}

async fn write_error<W: AsyncWrite + Unpin + ?Sized>(e: &OpsError, json: bool, out: &mut W) -> std::io::Result<()> {
    let text =
        if json { format!("{}\n", e.to_json()) } else { format!("error: {}\n", escape_controls(&e.to_string())) };
    out.write_all(text.as_bytes()).await?;
    out.flush().await
}
