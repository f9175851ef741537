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

/// Appends the injection for `assignments` (setting name, value) to `out`; returns how many
/// statements it holds (each one a Parse, Bind and Execute, no Sync).
pub fn write_injection(out: &mut BytesMut, assignments: &[(&str, &str)]) -> usize {
    statement(out, "BEGIN", &[]);
    for (name, value) in assignments {
        statement(out, SET_CONFIG_SQL, &[name, value]);
    }
    statement(out, "COMMIT", &[]);
    assignments.len() + 2
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

/// SQL whose execution raises `message` with SQLSTATE `code` on the server.
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
    fn injection_is_three_messages_per_statement_without_sync() {
        let mut out = BytesMut::new();
        let statements = write_injection(&mut out, &[("app.current_user_id", "a'b")]);
        let mut tags = Vec::new();
        while let Some(m) = decode_frame(&mut out, 1 << 20).unwrap() {
            tags.push(m.tag);
        }
        assert_eq!(statements, 3);
        assert_eq!(tags, b"PBEPBEPBE");
        assert!(!tags.contains(&b'S'), "must not end the client's batch");
    }

    #[test]
    fn raising_sql_escapes_quotes_and_backslashes() {
        let sql = raising_sql("42501", r"it's \ bad");
        assert!(sql.contains(r"MESSAGE = E'it''s \\ bad'"), "{sql}");
        assert!(sql.contains("ERRCODE = '42501'"));
    }
}
