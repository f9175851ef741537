//! pgcordon's audit trail: one JSON line per event, written off the data path.
//!
//! Owns the audit events (`event`), the queue between the proxy and the output, and the
//! writer task (`writer`). The proxy calls the methods of [`Audit`], which stamp the time
//! and put the record in a bounded queue without waiting: when the queue is full the record
//! is dropped, `pgcordon_audit_records_dropped_total` goes up and a rate-limited warning says
//! how many were lost (`drops`), so a slow disk can never slow a client and no loss goes
//! unnoticed. Connection events are always recorded; transactions and statement texts only
//! when switched on. Statement texts come from Query and Parse messages only, never from
//! Bind, so parameter values are never recorded.
//!
//! It does not decide what happened (the proxy reports events), read the configuration (the
//! proxy converts `audit` into [`AuditSettings`]), or rotate files (an external tool moves
//! the file and asks for [`Audit::reopen`]). Lines are JSON (RFC 8259) with RFC 3339 UTC
//! timestamps.

mod drops;
mod error;
mod event;
mod time;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus::IntCounter;
use tokio::sync::{mpsc, Notify};

pub use drops::WARN_INTERVAL;
pub use error::AuditError;
pub use event::{
    ConnectionAccepted, ConnectionClosed, ConnectionRefused, Event, Statement, StatementRefused,
    TransactionEnded, TransactionOutcome, MAX_STATEMENT_BYTES,
};
pub use time::rfc3339;
pub use writer::{AuditWriter, WriterSummary};

use drops::Drops;
use writer::{Message, Output};

/// Where the audit lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output, for container log collection.
    Stdout,
    /// A file, appended to (created with mode 0640 if missing).
    File(PathBuf),
}

/// The audit trail's settings, converted from the `audit` configuration section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Where lines go.
    pub output: AuditOutput,
    /// Whether each transaction gets a line.
    pub transactions: bool,
    /// Whether each statement text gets a line.
    pub statements: bool,
    /// How many records may wait for the writer before new ones are dropped (at least 1).
    pub queue: usize,
}

/// The handle the data path records events with; cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: mpsc::Sender<Message>,
    transactions: bool,
    statements: bool,
    drops: Arc<Drops>,
    reopen: Arc<Notify>,
}

/// Opens the output and returns the handle and the writer task to spawn.
///
/// `dropped` is the counter to increase for every lost record (give it
/// `Metrics::audit_records_dropped`). The file is opened here, so a bad path fails at
/// start-up rather than at the first record.
///
/// # Errors
/// [`AuditError::Open`] if the file cannot be opened for appending, [`AuditError::Stdout`]
/// if standard output cannot be duplicated (it is closed).
pub fn start(
    settings: &AuditSettings,
    dropped: IntCounter,
) -> Result<(Audit, AuditWriter), AuditError> {
    let output = match &settings.output {
        AuditOutput::Stdout => Output::stdout()?,
        AuditOutput::File(path) => Output::open_file(path.clone())?,
    };
    let (sender, receiver) = mpsc::channel(settings.queue.max(1));
    let drops = Arc::new(Drops::new(dropped, WARN_INTERVAL));
    let reopen = Arc::new(Notify::new());
    let audit = Audit {
        inner: Some(Arc::new(Inner {
            queue: sender,
            transactions: settings.transactions,
            statements: settings.statements,
            drops: drops.clone(),
            reopen: reopen.clone(),
        })),
    };
    let writer = AuditWriter {
        queue: receiver,
        output,
        reopen,
        drops,
    };
    Ok((audit, writer))
}

impl Audit {
    /// A handle that records nothing, for a configuration without `audit`.
    pub fn disabled() -> Audit {
        Audit { inner: None }
    }

    /// Whether events are recorded at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether [`Audit::transaction`] records anything; check it before gathering the fields.
    pub fn transactions_enabled(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.transactions)
    }

    /// Whether [`Audit::statement`] records anything.
    pub fn statements_enabled(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.statements)
    }

    /// Records an accepted connection.
    pub fn connection_accepted(&self, event: ConnectionAccepted) {
        self.send(Event::ConnectionAccepted(event));
    }

    /// Records a refused connection.
    pub fn connection_refused(&self, event: ConnectionRefused) {
        self.send(Event::ConnectionRefused(event));
    }

    /// Records the end of an accepted connection.
    pub fn connection_closed(&self, event: ConnectionClosed) {
        self.send(Event::ConnectionClosed(event));
    }

    /// Records a finished transaction, if transaction auditing is on.
    pub fn transaction(&self, event: TransactionEnded) {
        if self.transactions_enabled() {
            self.send(Event::Transaction(event));
        }
    }

    /// Records the text of a Query or Parse message, if statement auditing is on. Never
    /// pass Bind data: parameter values must not reach the audit trail.
    pub fn statement(&self, conn: u64, identity: &Arc<str>, text: &[u8]) {
        if self.statements_enabled() {
            let event = Statement::new(conn, identity.clone(), text);
            self.send(Event::Statement(event));
        }
    }

    /// Records a statement the guard refused.
    pub fn statement_refused(&self, event: StatementRefused) {
        self.send(Event::StatementRefused(event));
    }

    /// Asks the writer to reopen the audit file (after a rotation tool moved it). Requests
    /// made while one is pending are merged. A no-op for stdout and when disabled.
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            inner.reopen.notify_one();
        }
    }

    fn send(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        let message = Message {
            at: SystemTime::now(),
            event,
        };
        match inner.queue.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => inner.drops.record(1, "the queue is full"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                inner.drops.record(1, "the audit writer is not running")
            }
        }
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.is_enabled())
            .field("transactions", &self.transactions_enabled())
            .field("statements", &self.statements_enabled())
            .finish()
    }
}

/// Lowercase hex of a certificate serial number's bytes, as `openssl x509 -serial` prints
/// them (without its `serial=` prefix and in lowercase).
pub fn serial_hex(serial: &[u8]) -> String {
    hex(serial)
}

/// SHA-256 of a certificate's DER encoding, lowercase hex, as `openssl x509 -fingerprint
/// -sha256` prints it without colons.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
