//! Server messages pgcordon writes to clients itself: the authentication exchange it terminates,
//! the parameters and ReadyForQuery it reports, and the errors it raises.

use bytes::{BufMut, BytesMut};

/// Severity of an ErrorResponse: `Error` leaves the session usable, `Fatal` precedes a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn from_byte(b: u8) -> Option<TxStatus> {
        match b {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// Writes a tagged message: tag, length placeholder, body from `body`, then the real length.
fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early and shift every later field.
    out.extend(s.bytes().filter(|b| *b != 0));
    out.put_u8(0);
}

/// An ErrorResponse with severity, SQLSTATE, message and optional detail and hint.
pub fn error_response(
    out: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    put_message(out, b'E', |b| {
        b.put_u8(b'S');
        put_cstr(b, severity.as_str());
        b.put_u8(b'V');
        put_cstr(b, severity.as_str());
        b.put_u8(b'C');
        put_cstr(b, code);
        b.put_u8(b'M');
        put_cstr(b, message);
        if let Some(detail) = detail {
            b.put_u8(b'D');
            put_cstr(b, detail);
        }
        if let Some(hint) = hint {
            b.put_u8(b'H');
            put_cstr(b, hint);
        }
        b.put_u8(0);
    });
}

/// AuthenticationOk: pgcordon authenticates clients by their certificate, during TLS.
pub fn authentication_ok(out: &mut BytesMut) {
    put_message(out, b'R', |b| b.put_i32(0));
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    put_message(out, b'S', |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, process_id: i32, secret_key: i32) {
    put_message(out, b'K', |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: TxStatus) {
    put_message(out, b'Z', |b| b.put_u8(status.as_byte()));
}

/// NegotiateProtocolVersion: the newest minor version we speak and the `_pq_.` options we ignore.
pub fn negotiate_protocol_version(out: &mut BytesMut, newest_minor: i32, unknown: &[&str]) {
    put_message(out, b'v', |b| {
        b.put_i32(newest_minor);
        b.put_i32(unknown.len() as i32);
        for name in unknown {
            put_cstr(b, name);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::error_fields;
    use crate::{decode_frame, RawMessage};

    fn one(buf: &mut BytesMut) -> RawMessage {
        let m = decode_frame(buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one message");
        m
    }

    #[test]
    fn error_response_round_trips_through_the_inspector() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28000",
            "no cert\0x",
            Some("d"),
            None,
        );
        let m = one(&mut buf);
        assert_eq!(m.tag, b'E');
        let f = error_fields(m.body());
        assert_eq!(f.severity.as_deref(), Some("FATAL"));
        assert_eq!(f.code.as_deref(), Some("28000"));
        assert_eq!(f.message.as_deref(), Some("no certx"));
        assert_eq!(f.detail.as_deref(), Some("d"));
    }

    #[test]
    fn fixed_messages_have_exact_bytes() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, TxStatus::InTransaction);
        assert_eq!(&buf[..], b"Z\0\0\0\x05T");
        let mut buf = BytesMut::new();
        authentication_ok(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x08\0\0\0\0");
        let mut buf = BytesMut::new();
        backend_key_data(&mut buf, 1, -1);
        assert_eq!(&buf[..], b"K\0\0\0\x0c\0\0\0\x01\xff\xff\xff\xff");
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "a", "b");
        assert_eq!(&buf[..], b"S\0\0\0\x08a\0b\0");
        let mut buf = BytesMut::new();
        negotiate_protocol_version(&mut buf, 0, &["_pq_.x"]);
        assert_eq!(&buf[..], b"v\0\0\0\x13\0\0\0\0\0\0\0\x01_pq_.x\0");
    }
}
