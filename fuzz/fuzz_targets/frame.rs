//! Frame decoding of tagged messages (`pgcordon_wire::decode_frame`, used on every client and
//! backend byte stream) and the `inspect` readers the proxy applies to the bodies. Checks,
//! besides "no panic": a frame's length field matches its bytes and never exceeds the cap,
//! the frames and the leftover rebuild the input (nothing is consumed that was not a whole
//! frame), an error names the header it stopped at, the readers only return pieces of the
//! body, and feeding the same bytes in arbitrary pieces gives the same frames and error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgcordon_wire::{decode_frame, inspect, FrameError, RawMessage};

/// Decodes everything `buf` holds; returns the frames and the first error, if any.
fn drain(buf: &mut BytesMut, max: usize) -> (Vec<RawMessage>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        match decode_frame(buf, max) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn length_field(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
}

/// The readers the session runs on client bodies (Query, Parse, Bind, Describe/Close) and on
/// backend bodies (ReadyForQuery, ErrorResponse): each answer must lie inside the body.
fn check_readers(body: &[u8]) {
    if let Some(text) = inspect::query_text(body) {
        assert_eq!(text, &body[..body.len() - 1]);
        assert_eq!(body.last(), Some(&0));
    }
    if let Some((name, text)) = inspect::parse_head(body) {
        assert!(!name.contains(&0) && !text.contains(&0));
        assert!(name.len() + text.len() + 2 <= body.len());
        assert_eq!(name, &body[..name.len()]);
    }
    if let Some((portal, statement)) = inspect::bind_head(body) {
        assert!(!portal.contains(&0) && !statement.contains(&0));
        assert!(portal.len() + statement.len() + 2 <= body.len());
    }
    if let Some((kind, name)) = inspect::target_of(body) {
        assert_eq!(Some(&kind), body.first());
        assert!(!name.contains(&0) && name.len() + 2 <= body.len());
    }
    assert_eq!(inspect::ready_status(body).is_some(), body.len() == 1);
    let _ = inspect::error_fields(body);
    let _ = inspect::command_tag(body);
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the frame cap (4..=2044) and the read size; the rest is the
    // stream.
    let [cap, step, stream @ ..] = data else {
        return;
    };
    let max = 4 + usize::from(*cap) * 8;
    let step = usize::from(*step % 16) + 1;

    let mut whole = BytesMut::from(stream);
    let (frames, error) = drain(&mut whole, max);
    let mut rebuilt = Vec::new();
    for frame in &frames {
        assert!(frame.bytes.len() >= 5);
        let len = length_field(&frame.bytes);
        assert!(len >= 4);
        assert!(len as usize <= max, "a frame over the cap was accepted");
        assert_eq!(len as usize + 1, frame.bytes.len());
        assert_eq!(frame.tag, frame.bytes[0]);
        rebuilt.extend_from_slice(&frame.bytes);
        check_readers(frame.body());
    }
    rebuilt.extend_from_slice(&whole);
    assert_eq!(rebuilt, stream, "decoding lost, added or reordered bytes");

    // An error leaves the offending header at the front of the buffer, and says why.
    match &error {
        Some(FrameError::InvalidLength { tag, len }) => {
            assert_eq!(*tag, whole[0] as char);
            assert_eq!(*len, i64::from(length_field(&whole)));
            assert!(*len < 4);
        }
        Some(FrameError::TooLarge { tag, len, max: m }) => {
            assert_eq!(*tag, whole[0] as char);
            assert_eq!(*len as i64, i64::from(length_field(&whole)));
            assert!(*len > max && *m == max);
        }
        None => {
            // What is left is an incomplete frame: a short header, or a body still to come.
            if whole.len() >= 5 {
                let len = length_field(&whole);
                assert!((4..=max as i64).contains(&i64::from(len)));
                assert!(whole.len() < len as usize + 1);
            }
        }
    }

    // The same stream in pieces of `step` bytes, as reads from a socket would deliver it.
    let mut buf = BytesMut::new();
    let mut pieces = Vec::new();
    let mut piece_error = None;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        let (mut got, err) = drain(&mut buf, max);
        pieces.append(&mut got);
        if err.is_some() {
            piece_error = err;
            break;
        }
    }
    assert_eq!(pieces, frames);
    assert_eq!(piece_error, error);
});
