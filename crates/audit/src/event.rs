//! The audit events and their JSON shape.
//!
//! Owns what one audit line says. Every line is one JSON object with `ts` (RFC 3339, UTC,
//! milliseconds) and `event` first, then the event's fields; `conn` (the proxy's connection
//! id) ties the lines of one connection together. Durations are `duration_ms` with
//! microsecond precision. Statement events carry the text of a Query or Parse message only:
//! parameter values travel in Bind messages, which are never given to this crate. It does not
//! decide when an event happens (the proxy does) or write anything (`writer`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

/// Longest statement text kept in an audit line, in bytes: enough for any hand-written or
/// ORM-generated statement; longer texts (bulk INSERTs with literal values) are cut at a
/// character boundary and marked `truncated`, so one client cannot make the audit queue
/// hold gigabytes.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;

/// A client completed TLS, its certificate was verified and its identity extracted.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionAccepted {
    /// The proxy's connection id.
    pub conn: u64,
    /// The client's address and port.
    pub client_addr: SocketAddr,
    /// The identity injected into the client's transactions.
    #[serde(serialize_with = "arc_str")]
    pub identity: Arc<str>,
    /// The client certificate's serial number, lowercase hex (see [`crate::serial_hex`]).
    pub serial: String,
    /// SHA-256 of the client certificate's DER encoding, lowercase hex (see
    /// [`crate::certificate_fingerprint`]).
    pub fingerprint_sha256: String,
    /// The TLS version, as rustls names it (`TLSv1_3`).
    pub tls_version: Cow<'static, str>,
    /// The cipher suite, as rustls names it (`TLS13_AES_256_GCM_SHA384`).
    pub cipher: Cow<'static, str>,
}

/// A connection was refused before it could run statements.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRefused {
    /// The proxy's connection id.
    pub conn: u64,
    /// The client's address and port.
    pub client_addr: SocketAddr,
    /// Why, as a stable word (`expired`, `revoked`, `no_match`, `plaintext`, ...); the same
    /// values as the `reason` label of `pgcordon_client_connection_attempts_total`.
    pub reason: Cow<'static, str>,
    /// The identity, when it was known before the refusal (for example a refused startup).
    #[serde(
        serialize_with = "opt_arc_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity: Option<Arc<str>>,
}

/// An accepted connection ended.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionClosed {
    /// The proxy's connection id.
    pub conn: u64,
    /// The client's address and port.
    pub client_addr: SocketAddr,
    /// The connection's identity.
    #[serde(serialize_with = "arc_str")]
    pub identity: Arc<str>,
    /// Time from accept to close.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Transactions the client ran.
    pub transactions: u64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionOutcome {
    /// It ended with the backend idle and no error: committed (or an implicit transaction
    /// that succeeded).
    Committed,
    /// The client rolled it back.
    RolledBack,
    /// A statement failed; the transaction was aborted.
    Failed,
    /// It did not finish: the client left, the backend was lost, or the proxy shut down.
    Interrupted,
}

/// One client transaction, from the first message to the ReadyForQuery that ended it.
#[derive(Clone, Debug, Serialize)]
pub struct TransactionEnded {
    /// The proxy's connection id.
    pub conn: u64,
    /// The identity the transaction ran as.
    #[serde(serialize_with = "arc_str")]
    pub identity: Arc<str>,
    /// The backend target's configured name (`primary`).
    #[serde(serialize_with = "arc_str")]
    pub target: Arc<str>,
    /// The backend's process id, as PostgreSQL's logs and pg_stat_activity show it.
    pub backend_pid: i32,
    /// Time from the first message to the end.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// How it ended.
    pub outcome: TransactionOutcome,
}

/// The text of one Query or Parse message (only with `audit.statements: true`).
#[derive(Clone, Debug, Serialize)]
pub struct Statement {
    /// The proxy's connection id.
    pub conn: u64,
    /// The identity that sent it.
    #[serde(serialize_with = "arc_str")]
    pub identity: Arc<str>,
    /// The statement text, invalid UTF-8 replaced, cut at [`MAX_STATEMENT_BYTES`].
    pub text: String,
    /// Whether `text` was cut.
    pub truncated: bool,
}

impl Statement {
    /// Builds the event from the raw message text, replacing invalid UTF-8 and cutting it
    /// to [`MAX_STATEMENT_BYTES`] at a character boundary.
    pub fn new(conn: u64, identity: Arc<str>, raw: &[u8]) -> Statement {
        let mut cut = raw.len().min(MAX_STATEMENT_BYTES);
        let mut truncated = cut < raw.len();
        // Do not split a UTF-8 character: step back over at most three continuation bytes.
        let mut steps = 0;
        while truncated && steps < 3 && cut > 0 && raw[cut] & 0xC0 == 0x80 {
            cut -= 1;
            steps += 1;
        }
        let mut text = String::from_utf8_lossy(&raw[..cut]).into_owned();
        // Lossy replacement may have grown the text past the limit; cut again on a boundary.
        if text.len() > MAX_STATEMENT_BYTES {
            let mut end = MAX_STATEMENT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        Statement {
            conn,
            identity,
            text,
            truncated,
        }
    }
}

/// The guard refused a statement (always recorded when auditing is on; no text).
#[derive(Clone, Debug, Serialize)]
pub struct StatementRefused {
    /// The proxy's connection id.
    pub conn: u64,
    /// The identity that sent it.
    #[serde(serialize_with = "arc_str")]
    pub identity: Arc<str>,
    /// The guard's reason, the `reason` label of `pgcordon_statements_refused_total`.
    pub reason: Cow<'static, str>,
}

/// Any audit event; the variant name is the `event` field.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// See [`ConnectionAccepted`].
    ConnectionAccepted(ConnectionAccepted),
    /// See [`ConnectionRefused`].
    ConnectionRefused(ConnectionRefused),
    /// See [`ConnectionClosed`].
    ConnectionClosed(ConnectionClosed),
    /// See [`TransactionEnded`].
    Transaction(TransactionEnded),
    /// See [`Statement`].
    Statement(Statement),
    /// See [`StatementRefused`].
    StatementRefused(StatementRefused),
}

/// One line: the time the event happened, then the event.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// Appends `event` at `at` as one JSON line (with its newline) to `out`.
pub(crate) fn encode(at: SystemTime, event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let line = Line {
        ts: crate::time::rfc3339(at),
        event,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

fn arc_str<S: Serializer>(value: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value)
}

fn opt_arc_str<S: Serializer>(value: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&**v),
        None => s.serialize_none(),
    }
}

/// Milliseconds with microsecond precision, as a JSON number.
fn millis<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
    s.serialize_f64(micros as f64 / 1000.0)
}
