//! A `paxos-peer` channel carrying arbitrary bytes, read the way
//! `ssh::server` reads one: the peer codec cuts frames (4-byte length,
//! bounded by the daemon's frame limit), the first frame is the hello, and
//! every frame is decoded as a consensus `Message` and as a clock frame
//! (the probes and echoes that share the channel).
//!
//! Properties: no panic; the codec fails only on an oversized length and
//! never hands out a frame over the limit; decoding fails only as malformed
//! or unknown (the other errors belong to encoding); any message that
//! decodes re-encodes, fits a frame, and decodes to an equal value; a clock
//! frame that decodes re-encodes to an equal one, and an echo with any
//! timestamps gives a sample or a reason, never a panic.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use paxos::consensus::messages::Message;
use paxos::ssh::clock_probe::{ClockFrame, Prober};
use paxos::ssh::frame::{DEFAULT_MAX_FRAME, FrameError, decode_hello, decode_message, encode_message, peer_codec};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The node the SSH layer authenticated for this channel.
const AUTHENTICATED_PEER: u64 = 2;

fuzz_target!(|data: &[u8]| {
    let mut codec = peer_codec(DEFAULT_MAX_FRAME);
    let mut stream = BytesMut::from(data);
    let mut first = true;
    loop {
        let frame = match codec.decode(&mut stream) {
            Ok(Some(frame)) => frame,
            // The stream ended; FramedRead would call decode_eof, which only
            // complains about bytes left over.
            Ok(None) => break,
            Err(e) => {
                let err = FrameError::from_read(e, DEFAULT_MAX_FRAME);
                assert!(matches!(err, FrameError::Oversized { .. }), "the codec failed on bytes in memory: {err}");
                break;
            }
        };
        assert!(frame.len() <= DEFAULT_MAX_FRAME, "a frame of {} bytes passed the limit", frame.len());
        if first {
            first = false;
            match decode_hello(&frame, AUTHENTICATED_PEER) {
                Ok(hello) => assert_eq!(hello.node, AUTHENTICATED_PEER),
                Err(FrameError::Malformed(_) | FrameError::WrongProtocol { .. } | FrameError::WrongNode { .. }) => {}
                Err(other) => panic!("decode_hello failed with an error only encoding gives: {other:?}"),
            }
        }
        match decode_message::<Message>(&frame) {
            Ok(msg) => round_trip(&mut codec, &msg),
            Err(FrameError::Malformed(_) | FrameError::UnknownType { .. }) => {}
            Err(other) => panic!("decode_message failed with an error only encoding gives: {other:?}"),
        }
        clock_frame(&frame);
    }
});

/// A clock frame decodes, encodes back to an equal frame, and an echo with
/// any timestamps is matched against a probe without a panic.
fn clock_frame(frame: &[u8]) {
    match ClockFrame::decode(frame) {
        Ok(clock) => {
            assert_eq!(ClockFrame::decode(&clock.encode()).ok(), Some(clock), "a clock frame changed on re-encoding");
            if let ClockFrame::ClockEcho { origin, received, sent } = clock {
                let mut prober = Prober::default();
                let _ = prober.probe(origin);
                let _ = prober.echo(origin, received, sent, origin.saturating_add(1));
                let _ = prober.echo(origin, received, sent, i64::MAX);
            }
        }
        Err(FrameError::Malformed(_)) => {}
        Err(other) => panic!("ClockFrame::decode failed with an unexpected error: {other:?}"),
    }
}

/// A message a node accepted must be one it can send on: encode it, frame
/// it, cut the frame again and decode it.
fn round_trip(codec: &mut LengthDelimitedCodec, msg: &Message) {
    let body = match encode_message(msg, DEFAULT_MAX_FRAME) {
        Ok(body) => body,
        Err(e) => panic!("a decoded {} message does not encode: {e}\n{msg:?}", msg.kind()),
    };
    let mut wire = BytesMut::new();
    if let Err(e) = codec.encode(body.clone(), &mut wire) {
        panic!("the codec refused an encoded {} message of {} bytes: {e}", msg.kind(), body.len());
    }
    let framed = match codec.decode(&mut wire) {
        Ok(Some(framed)) => framed,
        other => panic!("the codec did not give back the frame it encoded: {other:?}"),
    };
    assert!(wire.is_empty(), "{} bytes left after one frame", wire.len());
    assert_eq!(&framed[..], &body[..]);
    match decode_message::<Message>(&framed) {
        Ok(back) => assert_eq!(&back, msg, "the message changed on its way through the codec"),
        Err(e) => panic!(
            "a decoded {} message, encoded again, does not decode: {e}\nre-encoded: {}",
            msg.kind(),
            String::from_utf8_lossy(&body)
        ),
    }
}
