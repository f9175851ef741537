//! Identity injection: the messages that put a client's identity (and its session parameters) on
//! a pooled backend session before the client's own messages, and the tracker that consumes their
//! responses.
//!
//! Design (see docs/identity-injection.md): an explicit transaction of its own, written as
//! extended-protocol messages *without* a Sync, in the same write as the client's first message:
//!
//! ```text
//! Parse/Bind/Execute  BEGIN
//! Parse/Bind/Execute  SELECT pg_catalog.set_config($1, $2, false)   (once per setting)
//! Parse/Bind/Execute  COMMIT
//! <the client's messages>
//! ```
//!
//! - It commits before the client's first statement runs, so the client's ROLLBACK or error cannot
//!   undo it and the client's `BEGIN ISOLATION LEVEL ...` still comes first in its own transaction.
//! - The values are bound parameters: no quoting, nothing a certificate field can break out of.
//! - If any of it fails, PostgreSQL skips every following message up to the next Sync, so no client
//!   statement can run on a session that still holds another identity; pgcordon then drops the
//!   session and ends the client connection.
//! - No round trip is added: nothing waits for these responses before the client's messages go.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

/// OID of `text`, the declared type of both set_config parameters.
const TEXT_OID: u32 = 25;

const SET_CONFIG_SQL: &str = "SELECT pg_catalog.set_config($1, $2, false)";

/// Appends the injection for `assignments` (setting name, value) to `out`; returns the tracker
/// for its responses.
pub fn write_injection(out: &mut BytesMut, assignments: &[(&str, &str)]) -> InjectionTracker {
    let mut expected = Vec::with_capacity(6 + assignments.len() * 4);
    statement(out, "BEGIN", &[]);
    expected.extend_from_slice(b"12C");
    for (name, value) in assignments {
        statement(out, SET_CONFIG_SQL, &[name, value]);
        expected.extend_from_slice(b"12DC");
    }
    statement(out, "COMMIT", &[]);
    expected.extend_from_slice(b"12C");
    InjectionTracker { expected, next: 0 }
}

/// Parse, Bind and Execute of one unnamed statement with text parameters.
fn statement(out: &mut BytesMut, sql: &str, params: &[&str]) {
    let types = params.iter().map(|_| TEXT_OID);
    // Serialising into a BytesMut can only fail on an interior NUL or an i32 overflow; the SQL is
    // ours and values were validated (no NUL) where they entered the proxy.
    let _ = frontend::parse("", sql, types, out);
    let _ = frontend::bind(
        "",
        "",
        params.iter().map(|_| 0i16),
        params.iter(),
        |value, buf| {
            buf.extend_from_slice(value.as_bytes());
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(IsNull::No)
        },
        Some(0i16),
        out,
    );
    let _ = frontend::execute("", 0, out);
}

/// What to do with one backend message while an injection is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One of the injection's own responses: drop it.
    Swallow,
    /// The injection's last response: drop it; what follows belongs to the client.
    Done,
    /// Not part of the injection's sequence (ParameterStatus, a notice): pass it on.
    PassThrough,
    /// The injection failed or the server answered out of sequence.
    Failed,
}

/// Consumes the fixed sequence of responses the injection produces.
#[derive(Debug, Clone)]
pub struct InjectionTracker {
    expected: Vec<u8>,
    next: usize,
}

impl InjectionTracker {
    pub fn step(&mut self, tag: u8) -> Step {
        match tag {
            b'S' | b'N' => return Step::PassThrough,
            b'E' => return Step::Failed,
            _ => {}
        }
        if self.expected.get(self.next) != Some(&tag) {
            return Step::Failed;
        }
        self.next += 1;
        if self.next == self.expected.len() {
            Step::Done
        } else {
            Step::Swallow
        }
    }
}

/// Appends a simple Query whose execution raises `message` with SQLSTATE `code` on the server.
/// Used to refuse a statement inside a client's transaction: the server then aborts the
/// transaction exactly as it would for any other error, so the client sees the usual
/// transaction semantics.
pub fn raising_sql(code: &str, message: &str) -> String {
    let mut escaped = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\'' => escaped.push_str("''"),
            '\\' => escaped.push_str("\\\\"),
            '\0' => {}
            c => escaped.push(c),
        }
    }
    let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!(
        "DO $pgcordon$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = E'{escaped}'; \
         END$pgcordon$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgcordon_wire::decode_frame;

    #[test]
    fn injection_is_nine_plus_three_per_setting_messages_without_sync() {
        let mut out = BytesMut::new();
        let tracker = write_injection(&mut out, &[("app.current_user_id", "a'b")]);
        let mut tags = Vec::new();
        while let Some(m) = decode_frame(&mut out, 1 << 20).unwrap() {
            tags.push(m.tag);
        }
        assert_eq!(tags, b"PBEPBEPBE");
        assert!(!tags.contains(&b'S'), "must not end the client's batch");
        assert_eq!(tracker.expected, b"12C12DC12C");
    }

    #[test]
    fn tracker_swallows_the_sequence_and_flags_errors_and_surprises() {
        let mut out = BytesMut::new();
        let mut t = write_injection(&mut out, &[("a.b", "x")]);
        for tag in b"12C12D".iter() {
            assert_eq!(t.step(*tag), Step::Swallow);
        }
        assert_eq!(t.step(b'S'), Step::PassThrough);
        assert_eq!(t.step(b'C'), Step::Swallow);
        assert_eq!(t.step(b'1'), Step::Swallow);
        assert_eq!(t.step(b'2'), Step::Swallow);
        assert_eq!(t.step(b'C'), Step::Done);

        let mut t = write_injection(&mut BytesMut::new(), &[("a.b", "x")]);
        assert_eq!(t.step(b'1'), Step::Swallow);
        assert_eq!(t.step(b'E'), Step::Failed);
        let mut t = write_injection(&mut BytesMut::new(), &[]);
        assert_eq!(t.step(b'Z'), Step::Failed);
    }

    #[test]
    fn raising_sql_escapes_quotes_and_backslashes() {
        let sql = raising_sql("42501", r"it's \ bad");
        assert!(sql.contains(r"MESSAGE = E'it''s \\ bad'"), "{sql}");
        assert!(sql.contains("ERRCODE = '42501'"));
    }
}
