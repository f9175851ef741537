//! Framing of regular (tagged) protocol messages: a tag byte, an `i32` length that counts itself,
//! then the body. The whole message is kept as one `Bytes` so it can be forwarded unchanged.

use bytes::{Bytes, BytesMut};

/// The length field counts itself, so no valid message is shorter than this.
const MIN_LEN: usize = 4;

/// One complete protocol message: its tag and every byte of it, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub tag: u8,
    pub bytes: Bytes,
}

impl RawMessage {
    /// The body, without the tag and the length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// Why a byte stream is not a valid sequence of messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type {tag:?}")]
    InvalidLength { tag: char, len: i64 },
    #[error("message of type {tag:?} is {len} bytes, over the limit of {max} bytes")]
    TooLarge { tag: char, len: usize, max: usize },
}

/// Takes one complete message off the front of `buf`, or returns `None` when more bytes are
/// needed. The length is checked against `max_len` before any body is awaited, so a peer cannot
/// make the caller buffer an oversized frame; when the header is complete but the body is not,
/// `buf` is grown to fit the whole message once.
///
/// # Errors
/// A length below 4 or above `max_len`.
pub fn decode_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<RawMessage>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if (len as i64) < MIN_LEN as i64 {
        return Err(FrameError::InvalidLength {
            tag: tag as char,
            len: len as i64,
        });
    }
    let len = len as usize;
    if len > max_len {
        return Err(FrameError::TooLarge {
            tag: tag as char,
            len,
            max: max_len,
        });
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let bytes = buf.split_to(total).freeze();
    Ok(Some(RawMessage { tag, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_back_to_back_messages_and_waits_for_partial_ones() {
        let mut data = msg(b'Q', b"SELECT 1\0");
        data.extend(msg(b'S', b""));
        let partial = msg(b'X', b"");
        data.extend_from_slice(&partial[..3]);
        let mut buf = BytesMut::from(&data[..]);

        let first = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(first.tag, b'Q');
        assert_eq!(first.body(), b"SELECT 1\0");
        let second = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((second.tag, second.body()), (b'S', &b""[..]));
        assert_eq!(decode_frame(&mut buf, 1024).unwrap(), None);
        buf.extend_from_slice(&partial[3..]);
        assert_eq!(decode_frame(&mut buf, 1024).unwrap().unwrap().tag, b'X');
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_short_negative_and_oversized_lengths_before_the_body_arrives() {
        for len in [0i32, 3, -1, i32::MIN] {
            let mut buf = BytesMut::from(&[b'Q'][..]);
            buf.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                decode_frame(&mut buf, 1024),
                Err(FrameError::InvalidLength { .. })
            ));
        }
        let mut buf = BytesMut::from(&[b'd'][..]);
        buf.extend_from_slice(&(1_000_000i32).to_be_bytes());
        let err = decode_frame(&mut buf, 1024).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                tag: 'd',
                len: 1_000_000,
                max: 1024
            }
        );
        assert!(
            buf.capacity() < 1_000_000,
            "must not reserve an oversized body"
        );
    }
}
