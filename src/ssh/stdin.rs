//! A channel's incoming data as an owned `AsyncRead`, with backpressure that
//! cannot deadlock.
//!
//! russh 0.65 only offers readers that borrow the channel, or
//! `into_stream()`, whose reader closes the whole channel when dropped; an
//! operator command that ignores its stdin would then lose its output. A
//! small pump task owns the read half instead and queues the data for the
//! command.
//!
//! Backpressure: russh grants the client more window as soon as data
//! arrives, so the only brake on a fast client is to stop reading the
//! channel, which stalls the connection's whole session loop, and with it
//! our own output (it is sent by that loop) and the client's window
//! adjustments. If the command is waiting to write an answer at that
//! moment, neither side can move: that was the console's deadlock with
//! large pipelined input. So the pump stops reading only while the queue is
//! over `SOFT_LIMIT` *and* the command's output is flowing (it is busy
//! working, not waiting on us). While the output waits, the pump keeps
//! reading, up to `HARD_LIMIT`; a client that sends that much more without
//! reading a single answer gets an error instead of our memory.
//!
//! Once nobody holds the reader, the pump keeps draining and discarding, so
//! an unread channel never stalls the connection.

use bytes::{Buf, Bytes};
use russh::{ChannelMsg, ChannelReadHalf};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Queued input above which the pump stops reading while output flows.
pub const SOFT_LIMIT: usize = 256 * 1024;
/// Queued input that ends the input while the client reads no answers.
pub const HARD_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    queued: usize,
    eof: bool,
    overflowed: bool,
    reader_gone: bool,
    /// Writers of the command's output that wait for the connection.
    writers_waiting: usize,
    reader_waker: Option<Waker>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the pump when it may read again.
    pump: Notify,
    soft: usize,
    hard: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn may_read(&self) -> bool {
        let q = self.lock();
        q.reader_gone || q.eof || q.writers_waiting > 0 || q.queued < self.soft
    }

    fn push(&self, data: Bytes) {
        let mut q = self.lock();
        if q.reader_gone || q.eof || q.overflowed {
            return;
        }
        if q.queued + data.len() > self.hard {
            q.overflowed = true;
            q.chunks.clear();
            q.queued = 0;
        } else {
            q.queued += data.len();
            q.chunks.push_back(data);
        }
        if let Some(w) = q.reader_waker.take() {
            w.wake();
        }
    }

    fn end(&self) {
        let mut q = self.lock();
        q.eof = true;
        if let Some(w) = q.reader_waker.take() {
            w.wake();
        }
    }
}

/// The input side: what the command reads.
pub struct ChannelInput {
    shared: Arc<Shared>,
}

/// Marks the command's output as waiting (or not) for the pump; wraps the
/// channel's writer.
pub struct OutputGauge<W> {
    inner: W,
    shared: Arc<Shared>,
    waiting: bool,
}

/// Start the pump for `read`. `output` wraps a writer of the same channel so
/// the pump knows when the command waits on it.
pub(crate) fn spawn_pump(mut read: ChannelReadHalf) -> (ChannelInput, OutputGaugeFactory) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        pump: Notify::new(),
        soft: SOFT_LIMIT,
        hard: HARD_LIMIT,
    });
    let pump = shared.clone();
    tokio::spawn(async move {
        loop {
            while !pump.may_read() {
                pump.pump.notified().await;
            }
            match read.wait().await {
                Some(ChannelMsg::Data { data }) => pump.push(data),
                // EOF for the reader; keep draining until the channel closes.
                Some(ChannelMsg::Eof) => pump.end(),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        pump.end();
    });
    (ChannelInput { shared: shared.clone() }, OutputGaugeFactory { shared })
}

/// Makes `OutputGauge`s for the writers of one channel.
#[derive(Clone)]
pub struct OutputGaugeFactory {
    shared: Arc<Shared>,
}

impl OutputGaugeFactory {
    pub fn wrap<W>(&self, inner: W) -> OutputGauge<W> {
        OutputGauge { inner, shared: self.shared.clone(), waiting: false }
    }
}

impl AsyncRead for ChannelInput {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let shared = &self.shared;
        let mut q = shared.lock();
        if q.overflowed {
            return Poll::Ready(Err(io::Error::other(format!(
                "the client sent more than {} bytes of input without reading the answers; closing this input",
                shared.hard
            ))));
        }
        if q.chunks.is_empty() {
            if q.eof {
                return Poll::Ready(Ok(()));
            }
            q.reader_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let queue = &mut *q;
        while buf.remaining() > 0 {
            let Some(chunk) = queue.chunks.front_mut() else { break };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.advance(n);
            queue.queued -= n;
            if chunk.is_empty() {
                queue.chunks.pop_front();
            }
        }
        let wake_pump = q.queued < shared.soft;
        drop(q);
        if wake_pump {
            shared.pump.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChannelInput {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.reader_gone = true;
        q.chunks.clear();
        q.queued = 0;
        drop(q);
        self.shared.pump.notify_one();
    }
}

impl<W> OutputGauge<W> {
    fn note(&mut self, waiting: bool) {
        if self.waiting == waiting {
            return;
        }
        self.waiting = waiting;
        let mut q = self.shared.lock();
        if waiting {
            q.writers_waiting += 1;
        } else {
            q.writers_waiting -= 1;
        }
        drop(q);
        // Waiting releases the brake; flowing again needs no wake-up.
        if waiting {
            self.shared.pump.notify_one();
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for OutputGauge<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(result.is_pending());
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result.is_pending());
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(result.is_pending());
        result
    }
}

impl<W> Drop for OutputGauge<W> {
    fn drop(&mut self) {
        // A writer that is gone waits for nothing.
        self.note(false);
    }
}
