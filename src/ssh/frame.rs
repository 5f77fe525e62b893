//! The wire format of `paxos-peer` channels: length-delimited frames (4-byte
//! big-endian length, bounded), the first a JSON `Hello`, every later one a
//! JSON message of the consensus core's tagged enum.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;
use tokio_util::codec::length_delimited::LengthDelimitedCodecError;

/// Bumped whenever the frame layout or the meaning of a message changes in a
/// way an older node would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The subsystem a node requests when it dials a peer.
pub const PEER_SUBSYSTEM: &str = "paxos-peer";

/// Default bound on one frame: the core's byte budgets keep every message
/// well under it.
pub const DEFAULT_MAX_FRAME: usize = crate::consensus::config::MAX_MESSAGE_BYTES;

/// The first frame on a peer channel: who is speaking, and which protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub node: u64,
}

/// The frame codec for peer channels: 4-byte big-endian length prefix and a
/// maximum frame length enforced on both read and write.
pub fn peer_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).big_endian().max_frame_length(max_frame).new_codec()
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame exceeds the limit of {max} bytes{}", len.map(|l| format!(" ({l} bytes)")).unwrap_or_default())]
    Oversized { len: Option<usize>, max: usize },
    #[error("malformed JSON in frame: {0}")]
    Malformed(String),
    #[error("unknown message type {kind:?}: {detail}")]
    UnknownType { kind: String, detail: String },
    #[error("peer speaks protocol version {got}, this node speaks {PROTOCOL_VERSION}")]
    WrongProtocol { got: u32 },
    #[error("hello claims to be node {claimed} but the channel authenticated with the key of node {authenticated}")]
    WrongNode { claimed: u64, authenticated: u64 },
    #[error("cannot encode message as JSON: {0}")]
    Encode(String),
    #[error("reading frame: {0}")]
    Io(std::io::Error),
}

impl FrameError {
    /// Classifies an error from reading a framed stream: the codec reports
    /// an oversized length prefix as an `InvalidData` I/O error.
    pub fn from_read(err: std::io::Error, max: usize) -> FrameError {
        let oversized = err.get_ref().is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
        if oversized { FrameError::Oversized { len: None, max } } else { FrameError::Io(err) }
    }
}

fn encode_json<T: Serialize>(value: &T, max_frame: usize) -> Result<Bytes, FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Encode(e.to_string()))?;
    if body.len() > max_frame {
        return Err(FrameError::Oversized { len: Some(body.len()), max: max_frame });
    }
    Ok(Bytes::from(body))
}

/// The body of the hello frame this node sends.
pub fn encode_hello(node: u64) -> Result<Bytes, FrameError> {
    let hello = Hello { protocol: PROTOCOL_VERSION, node };
    encode_json(&hello, usize::MAX)
}

/// The body of one message frame, refused if it exceeds `max_frame`.
pub fn encode_message<M: Serialize>(msg: &M, max_frame: usize) -> Result<Bytes, FrameError> {
    encode_json(msg, max_frame)
}

/// Checks the first frame of a peer channel against the node the SSH layer
/// authenticated: a node's key may only speak for that node.
pub fn decode_hello(frame: &[u8], authenticated: u64) -> Result<Hello, FrameError> {
    let hello: Hello = serde_json::from_slice(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if hello.protocol != PROTOCOL_VERSION {
        return Err(FrameError::WrongProtocol { got: hello.protocol });
    }
    if hello.node != authenticated {
        return Err(FrameError::WrongNode { claimed: hello.node, authenticated });
    }
    Ok(hello)
}

/// Decodes one message frame, telling an unknown `type` apart from JSON
/// that is broken or does not fit the message it names.
pub fn decode_message<M: DeserializeOwned>(frame: &[u8]) -> Result<M, FrameError> {
    let err = match serde_json::from_slice::<M>(frame) {
        Ok(msg) => return Ok(msg),
        Err(err) => err,
    };
    // Only the error path pays for a second parse.
    if err.is_data() && err.to_string().starts_with("unknown variant") {
        let kind = serde_json::from_slice::<serde_json::Value>(frame)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        return Err(FrameError::UnknownType { kind, detail: err.to_string() });
    }
    Err(FrameError::Malformed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Msg {
        Ping { n: u64 },
        Pong { n: u64 },
    }

    #[test]
    fn hello_round_trip_and_checks() {
        let frame = encode_hello(3).unwrap();
        assert_eq!(decode_hello(&frame, 3).unwrap(), Hello { protocol: PROTOCOL_VERSION, node: 3 });
        let err = decode_hello(&frame, 2).unwrap_err();
        assert!(matches!(err, FrameError::WrongNode { claimed: 3, authenticated: 2 }));
        assert!(err.to_string().contains("node 3"), "{err}");
        let err = decode_hello(br#"{"protocol":99,"node":3}"#, 3).unwrap_err();
        assert!(matches!(err, FrameError::WrongProtocol { got: 99 }), "{err}");
        assert!(matches!(decode_hello(b"{", 3), Err(FrameError::Malformed(_))));
    }

    /// The largest read-index messages a node sends (`MAX_READ_IDS` ids of
    /// the largest value) go through the real encoder well inside the frame
    /// limit and come back whole.
    #[test]
    fn the_largest_read_index_messages_fit_a_frame_and_decode() {
        use crate::consensus::messages::{MAX_READ_IDS, Message, ReadIndex, ReadIndexReply};
        let more = vec![u64::MAX; MAX_READ_IDS - 1];
        for msg in [
            Message::ReadIndex(ReadIndex { id: u64::MAX, more: more.clone() }),
            Message::ReadIndexReply(ReadIndexReply { id: u64::MAX, more: more.clone(), index: u64::MAX }),
        ] {
            let frame = encode_message(&msg, DEFAULT_MAX_FRAME).unwrap();
            assert!(frame.len() < DEFAULT_MAX_FRAME / 64, "{} bytes", frame.len());
            assert_eq!(decode_message::<Message>(&frame).unwrap(), msg);
        }
    }

    #[test]
    fn message_errors_say_what_was_wrong() {
        let frame = encode_message(&Msg::Ping { n: 7 }, 1024).unwrap();
        assert_eq!(decode_message::<Msg>(&frame).unwrap(), Msg::Ping { n: 7 });

        let err = decode_message::<Msg>(br#"{"type":"shutdown_everything"}"#).unwrap_err();
        match &err {
            FrameError::UnknownType { kind, .. } => assert_eq!(kind, "shutdown_everything"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode_message::<Msg>(b"{not json"), Err(FrameError::Malformed(_))));
        // Known type, wrong fields: malformed, not unknown.
        assert!(matches!(decode_message::<Msg>(br#"{"type":"ping","n":"x"}"#), Err(FrameError::Malformed(_))));
        let err = encode_message(&Msg::Pong { n: 1 }, 4).unwrap_err();
        assert!(matches!(err, FrameError::Oversized { .. }), "{err}");
    }

    #[test]
    fn codec_enforces_max_frame() {
        let mut codec = peer_codec(8);
        let mut buf = BytesMut::new();
        codec.encode(Bytes::from_static(b"12345678"), &mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 8]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"12345678"[..]);

        let mut big = BytesMut::from(&[0u8, 0, 0, 9][..]);
        big.extend_from_slice(b"123456789");
        let err = codec.decode(&mut big).unwrap_err();
        assert!(matches!(FrameError::from_read(err, 8), FrameError::Oversized { max: 8, .. }));
    }
}
