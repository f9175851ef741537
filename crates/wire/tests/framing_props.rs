//! Property tests for the framing and the first-packet parser: what is encoded by the
//! protocol's rules decodes back unchanged, however the bytes are split across reads; lengths
//! outside the allowed range are errors (never panics, never a buffered oversized body); and a
//! StartupMessage with any parameter list round trips.

use bytes::BytesMut;
use pgcordon_wire::{
    decode_frame, decode_startup, FirstPacket, FrameError, RawMessage, StartupError, StartupParams,
    MAX_STARTUP_PACKET,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Frame cap used by most properties: above every generated body.
const CAP: usize = 4096;

/// Encodes one tagged message: tag, length counting itself, body.
fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes a protocol 3.0 StartupMessage with `pairs`.
fn encode_startup(pairs: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in pairs {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&196_608i32.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Feeds `stream` in pieces ending at `cuts` (sorted offsets), decoding after every piece.
fn decode_in_pieces(
    stream: &[u8],
    cuts: &[usize],
    max: usize,
) -> Result<(Vec<RawMessage>, usize), FrameError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[from..to]);
        from = to;
        while let Some(frame) = decode_frame(&mut buf, max)? {
            frames.push(frame);
        }
    }
    Ok((frames, buf.len()))
}

fn message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), vec(any::<u8>(), 0..1024))
}

/// A parameter name: non-empty UTF-8 without NUL. Values may be empty.
fn param_name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,24}"
}

fn param_value() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,48}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_encoded_message_decodes_to_the_same_tag_body_and_bytes((tag, body) in message()) {
        let wire = encode(tag, &body);
        let mut buf = BytesMut::from(&wire[..]);
        let frame = decode_frame(&mut buf, CAP).unwrap().expect("a complete frame");
        prop_assert_eq!(frame.tag, tag);
        prop_assert_eq!(frame.body(), &body[..]);
        prop_assert_eq!(&frame.bytes[..], &wire[..]);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_split_of_a_stream_decodes_like_the_whole_stream(
        messages in vec(message(), 1..12),
        cut_points in vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(|(t, b)| encode(*t, b)).collect();
        let mut cuts: Vec<usize> = cut_points.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();

        let (whole, left_whole) = decode_in_pieces(&stream, &[], CAP).unwrap();
        let (split, left_split) = decode_in_pieces(&stream, &cuts, CAP).unwrap();
        prop_assert_eq!(left_whole, 0);
        prop_assert_eq!(left_split, 0);
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(whole.len(), messages.len());
        for (frame, (tag, body)) in whole.iter().zip(&messages) {
            prop_assert_eq!(frame.tag, *tag);
            prop_assert_eq!(frame.body(), &body[..]);
        }
    }

    #[test]
    fn a_truncated_stream_waits_and_keeps_every_byte(
        (tag, body) in message(),
        keep in any::<prop::sample::Index>(),
    ) {
        let wire = encode(tag, &body);
        let kept = keep.index(wire.len());
        let mut buf = BytesMut::from(&wire[..kept]);
        prop_assert_eq!(decode_frame(&mut buf, CAP).unwrap(), None);
        prop_assert_eq!(&buf[..], &wire[..kept]);
    }

    #[test]
    fn a_length_below_four_is_an_error(
        tag in any::<u8>(),
        len in i32::MIN..4,
        tail in vec(any::<u8>(), 0..16),
    ) {
        let mut buf = BytesMut::from(&[tag][..]);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&tail);
        prop_assert_eq!(
            decode_frame(&mut buf, CAP),
            Err(FrameError::InvalidLength { tag: tag as char, len: i64::from(len) })
        );
    }

    #[test]
    fn a_length_over_the_cap_is_an_error_before_any_body_is_buffered(
        tag in any::<u8>(),
        max in 4usize..65_536,
        over in prop_oneof![1usize..8, 8usize..(i32::MAX as usize - 65_536)],
    ) {
        let len = max + over;
        let mut buf = BytesMut::with_capacity(5);
        buf.extend_from_slice(&[tag]);
        buf.extend_from_slice(&(len as i32).to_be_bytes());
        prop_assert_eq!(
            decode_frame(&mut buf, max),
            Err(FrameError::TooLarge { tag: tag as char, len, max })
        );
        prop_assert!(buf.capacity() < 65_536 + 5, "grew to {}", buf.capacity());
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_without_panicking(
        bytes in vec(any::<u8>(), 0..256),
        max in 0usize..300,
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut taken = 0;
        while let Ok(Some(frame)) = decode_frame(&mut buf, max) {
            prop_assert!(frame.bytes.len() >= 5 && frame.bytes.len() <= max + 1);
            taken += frame.bytes.len();
        }
        prop_assert_eq!(taken + buf.len(), bytes.len());
    }

    #[test]
    fn a_startup_message_round_trips_any_parameter_list(
        pairs in vec((param_name(), param_value()), 0..12),
    ) {
        let wire = encode_startup(&pairs);
        let mut buf = BytesMut::from(&wire[..]);
        let decoded = decode_startup(&mut buf).unwrap();
        let expected = FirstPacket::Startup {
            major: 3,
            minor: 0,
            params: StartupParams { pairs: pairs.clone() },
        };
        prop_assert_eq!(decoded, Some(expected));
        prop_assert!(buf.is_empty());

        // Byte by byte, the packet is only taken once it is complete.
        let mut trickle = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            trickle.extend_from_slice(&[*byte]);
            let step = decode_startup(&mut trickle).unwrap();
            prop_assert_eq!(step.is_some(), i + 1 == wire.len());
        }
    }

    #[test]
    fn a_startup_length_below_eight_is_an_error(len in i32::MIN..8) {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        prop_assert_eq!(decode_startup(&mut buf), Err(StartupError::InvalidLength(i64::from(len))));
    }
}

/// A long ASCII value, generated byte-wise (regex strategies are slow at this size).
fn long_value() -> impl Strategy<Value = String> {
    vec(b'a'..=b'z', 200..400).prop_map(|v| String::from_utf8(v).expect("ASCII"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_startup_packet_over_the_cap_is_refused_by_its_length(
        pairs in vec((param_name(), long_value()), 30..60),
    ) {
        let wire = encode_startup(&pairs);
        prop_assume!(wire.len() > MAX_STARTUP_PACKET);
        let mut buf = BytesMut::from(&wire[..4]);
        prop_assert_eq!(decode_startup(&mut buf), Err(StartupError::TooLarge(wire.len())));
    }
}
