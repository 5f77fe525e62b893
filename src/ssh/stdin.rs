//! A channel's incoming data as an owned `AsyncRead`.
//!
//! russh 0.65 only offers readers that borrow the channel, or
//! `into_stream()`, whose reader closes the whole channel when dropped; an
//! operator command that ignores its stdin would then lose its output. A
//! small pump task owns the read half instead and copies data into a pipe.
//! Once nobody holds the pipe's reader, the pump keeps draining and
//! discarding, so an unread channel never stalls the connection.

use russh::{ChannelMsg, ChannelReadHalf};
use tokio::io::{AsyncRead, AsyncWriteExt};

const PIPE_BYTES: usize = 64 * 1024;

pub(crate) fn spawn_pump(mut read: ChannelReadHalf) -> impl AsyncRead + Send + Unpin + 'static {
    // A duplex pipe, not a simplex: dropping one end fails the other's
    // writes, which is how the pump learns nobody reads any more.
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        let mut writer = Some(writer);
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(w) = writer.as_mut()
                        && w.write_all(&data).await.is_err()
                    {
                        writer = None;
                    }
                }
                // Dropping the writer is EOF for the reader.
                ChannelMsg::Eof => writer = None,
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    });
    reader
}
