//! One client session: forwarding between the client and a pooled backend session, deciding
//! transaction boundaries, and applying the statement guard. `client` handles what the client
//! sends; `attached` what pgcordon sends a backend session and expects back.
//!
//! Transaction pooling: a backend is attached at the first message that needs one and released at
//! the ReadyForQuery with status idle that answers the client's last Sync or Query, once nothing
//! else is outstanding. Session pooling: the backend stays until the client leaves, then is reset
//! with DISCARD ALL before it returns to the pool.

mod attached;
mod client;
mod end;
mod serve;

pub(crate) use serve::serve;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgcordon_pool::BackendPool;
use pgcordon_wire::{decode_frame, inspect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::backend_io::{record_parameter, write_draining, MAX_BACKEND_MESSAGE};
use crate::cancel::CancelSlot;
use crate::errors::ClientError;
use crate::listener::Shared;
use crate::params::{canonical_value, is_unsafe_encoding, tracked_name, UNREPORTED};
use crate::prepared::{empty_message, ClientStatements};
use crate::responses::{Action, Effects};
use crate::settings::PoolMode;

use crate::listener::Phase;
use crate::route::{RouteKind, WriteScope};
use attached::Attached;
use pgcordon_audit::{TransactionEnded, TransactionOutcome};
use pgcordon_metrics::{ClientConnection, ClientState};
use pgcordon_routing::{current_wal_lsn, Lsn};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::sync::watch;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// End of stream (or a write failure) from the client.
    ClientGone,
    /// The client sent Terminate; what it sent before still reaches the server.
    Terminated,
    /// Report this error (FATAL) and close.
    Fatal(ClientError),
    /// The backend session failed while attached; the client's transaction is gone.
    BackendLost(String),
    /// The server reports a client_encoding pgcordon cannot read safely (changed where no
    /// statement inspection sees it: a function, a DO block). The backend session is closed.
    UnsafeEncoding(String),
}

struct Session<'a> {
    shared: &'a Arc<Shared>,
    client: TlsStream<TcpStream>,
    client_in: BytesMut,
    client_out: BytesMut,
    identity: Arc<str>,
    /// Tracked parameters as this client's sessions must have them.
    desired: BTreeMap<String, String>,
    backend: Option<Attached>,
    /// After a locally reported error in an extended-protocol batch: drop messages until Sync.
    skip_until_sync: bool,
    /// Named statements the client prepared (transaction pooling).
    statements: ClientStatements,
    /// Set by the guard for a statement that sends the identity back to neutral.
    resets_identity: bool,
    /// Where this client's cancel requests go: the backend attached now, if any.
    cancel_slot: Arc<CancelSlot>,
    conn_id: u64,
    /// This connection in the client connections gauge, by state.
    gauge: ClientConnection,
    /// The proxy's phase: a drain ends the session between transactions.
    phase: watch::Receiver<Phase>,
    stats: ConnStats,
    /// Time spent waiting for the pool in the current loop iteration (not pgcordon's overhead).
    acquire_wait: Duration,
    /// A transaction that ended in this loop iteration, recorded once the reply is written.
    ended_tx: Option<TxStats>,
    /// The client's messages of the current transaction while it may run on a replica, so a
    /// read can be retried on the primary if the replica fails before answering.
    replay: BytesMut,
    replay_ok: bool,
    /// Route the next transaction to the primary (a replica failed under it).
    force_primary: bool,
    /// The primary's WAL position after this client's last committed write, and the position
    /// being learned right now (read-your-writes).
    write_lsn: Option<Lsn>,
    pending_lsn: Option<oneshot::Receiver<Lsn>>,
    /// Why the client is pinned to its backend until it disconnects (transaction pooling).
    pinned: Option<&'static str>,
    /// Tracked parameter settings and RESET ALL of the current transaction, applied to the
    /// client's desired values once it commits.
    pending_sets: Vec<(String, Option<String>)>,
    pending_reset_all: bool,
}

/// Largest transaction (in client bytes) kept for a retry on the primary.
const MAX_REPLAY: usize = 1 << 20;

/// Totals of one client connection, for the closing audit record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConnStats {
    pub(crate) transactions: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// One transaction in progress on the attached backend.
#[derive(Debug)]
pub(crate) struct TxStats {
    started: Instant,
    /// The target index it runs on.
    target: usize,
    /// Whether anything of it reached the client (then it cannot be retried elsewhere).
    answered: bool,
    /// Time pgcordon spent processing this transaction's messages (framing, checks, rewriting,
    /// encryption and writes), excluding waits for the pool, the client and the server.
    overhead: Duration,
    failed: bool,
    rolled_back: bool,
    backend_pid: i32,
}

impl TxStats {
    pub(crate) fn new(backend_pid: i32, target: usize) -> TxStats {
        TxStats {
            started: Instant::now(),
            target,
            answered: false,
            overhead: Duration::ZERO,
            failed: false,
            rolled_back: false,
            backend_pid,
        }
    }

    fn outcome(&self) -> TransactionOutcome {
        if self.failed {
            TransactionOutcome::Failed
        } else if self.rolled_back {
            TransactionOutcome::RolledBack
        } else {
            TransactionOutcome::Committed
        }
    }
}

impl Session<'_> {
    async fn run(&mut self) -> End {
        loop {
            let iteration = Instant::now();
            self.acquire_wait = Duration::ZERO;
            if let Err(end) = self.handle_client_messages().await {
                return end;
            }
            if let Err(end) = self.flush_backend().await {
                return end;
            }
            if let Err(end) = self.handle_backend_messages() {
                if let End::BackendLost(detail) = &end {
                    if self.retry_on_primary(detail) {
                        continue;
                    }
                }
                return end;
            }
            if let Err(end) = self.flush_client().await {
                return end;
            }
            let spent = iteration.elapsed().saturating_sub(self.acquire_wait);
            if let Some(tx) = self.backend.as_mut().and_then(|b| b.tx.as_mut()) {
                tx.overhead += spent;
            }
            if let Some(mut ended) = self.ended_tx.take() {
                ended.overhead += spent;
                self.record_transaction(ended, None);
            }
            if let Err(end) = self.wait_for_input().await {
                if let End::BackendLost(detail) = &end {
                    if self.retry_on_primary(detail) {
                        continue;
                    }
                }
                return end;
            }
        }
    }

    /// Keeps a client message while its transaction may run on a replica.
    fn remember_for_retry(&mut self, msg: &pgcordon_wire::RawMessage) {
        let on_replica = self.backend.as_ref().is_none_or(|b| b.target != 0);
        if !self.replay_ok || !on_replica || !self.shared.router.routes_reads() {
            return;
        }
        if self.replay.len() + msg.bytes.len() > MAX_REPLAY {
            self.replay_ok = false;
            self.replay.clear();
            return;
        }
        self.replay.extend_from_slice(&msg.bytes);
    }

    /// A replica failed under a read that has not answered anything yet: run the read again on
    /// the primary instead of failing it. Writes never run on replicas, so nothing is repeated
    /// that could have changed data.
    fn retry_on_primary(&mut self, detail: &str) -> bool {
        let Some(b) = self.backend.as_ref() else {
            return false;
        };
        let answered = b.tx.as_ref().is_none_or(|tx| tx.answered);
        if b.target == 0 || answered || !self.replay_ok || self.replay.is_empty() {
            return false;
        }
        tracing::warn!(
            detail,
            target = b.target,
            "replica lost under a read; retrying on the primary"
        );
        if let Some(b) = self.backend.take() {
            BackendPool::discard(b.checkout);
        }
        self.cancel_slot.clear();
        let mut replay = std::mem::take(&mut self.replay);
        replay.extend_from_slice(&self.client_in);
        self.client_in = replay;
        self.force_primary = true;
        self.skip_until_sync = false;
        self.gauge.set(ClientState::Idle);
        true
    }

    /// Counts a finished transaction and writes its audit record.
    fn record_transaction(&mut self, tx: TxStats, outcome: Option<TransactionOutcome>) {
        self.stats.transactions += 1;
        let target = &self.shared.target_metrics[tx.target];
        target.transactions.inc();
        target
            .transaction_overhead_seconds
            .observe(tx.overhead.as_secs_f64());
        let audit = &self.shared.obs.audit;
        if audit.transactions_enabled() {
            audit.transaction(TransactionEnded {
                conn: self.conn_id,
                identity: self.identity.clone(),
                target: self.shared.target_names[tx.target].clone(),
                backend_pid: tx.backend_pid,
                duration: tx.started.elapsed(),
                outcome: outcome.unwrap_or_else(|| tx.outcome()),
            });
        }
    }

    async fn flush_backend(&mut self) -> Result<(), End> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(());
        };
        if b.to_backend.is_empty() {
            return Ok(());
        }
        let backend = &mut b.checkout.backend;
        let written = write_draining(&mut backend.stream, &b.to_backend, &mut backend.read_buf);
        if let Err(e) = written.await {
            return Err(End::BackendLost(format!("write failed: {e}")));
        }
        b.to_backend.clear();
        Ok(())
    }

    /// Forwards what the backend sent, in order, with pgcordon's own requests' answers removed
    /// and its stand-in answers inserted; releases the backend when it is idle.
    fn handle_backend_messages(&mut self) -> Result<(), End> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(());
        };
        let mut effects = Effects::default();
        loop {
            let msg = match decode_frame(&mut b.checkout.backend.read_buf, MAX_BACKEND_MESSAGE) {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => return Err(End::BackendLost(format!("malformed server message: {e}"))),
            };
            let action = b.queue.on_message(msg.tag, &mut effects);
            emit_effects(&mut effects, &mut self.client_out, b);
            match msg.tag {
                b'Z' => b.status = inspect::ready_status(msg.body()).unwrap_or(b'E'),
                b'S' => {
                    if let Some(encoding) = unsafe_encoding_reported(msg.body()) {
                        tracing::warn!(encoding = %encoding,
                            "the server reports an unsafe client_encoding; ending the session");
                        return Err(End::UnsafeEncoding(encoding));
                    }
                    record_parameter(&mut b.checkout.params, msg.body());
                    record_desired(&mut self.desired, msg.body());
                }
                b'E' => {
                    let f = inspect::error_fields(msg.body());
                    if matches!(f.severity.as_deref(), Some("FATAL") | Some("PANIC")) {
                        let why = f
                            .message
                            .unwrap_or_else(|| "server ended the session".into());
                        return Err(End::BackendLost(why));
                    }
                    if let Some(tx) = b.tx.as_mut() {
                        tx.failed |= action == Action::Forward;
                    }
                }
                b'C' if msg.body().starts_with(b"ROLLBACK") => {
                    if let Some(tx) = b.tx.as_mut() {
                        tx.rolled_back = true;
                    }
                }
                _ => {}
            }
            if action == Action::Forward && !matches!(msg.tag, b'N' | b'S' | b'A') {
                if let Some(tx) = b.tx.as_mut() {
                    tx.answered = true;
                }
            }
            match action {
                Action::Forward => self.client_out.put_slice(&msg.bytes),
                Action::Drop => {}
                Action::Fatal => {
                    let f = inspect::error_fields(msg.body());
                    tracing::error!(code = ?f.code, message = ?f.message,
                        "identity injection failed; dropping the backend session");
                    return Err(End::BackendLost(
                        "could not apply the client identity".into(),
                    ));
                }
            }
        }
        b.queue.drain_synthesized(&mut effects);
        emit_effects(&mut effects, &mut self.client_out, b);
        if !b.is_quiescent() {
            return Ok(());
        }
        if let Some(tx) = b.tx.take() {
            let committed = !tx.failed && !tx.rolled_back;
            let sets = std::mem::take(&mut self.pending_sets);
            let reset_all = std::mem::take(&mut self.pending_reset_all);
            if committed {
                let defaults = self.shared.defaults_now();
                apply_settings(&mut self.desired, b, defaults.as_deref(), reset_all, sets);
            }
            self.ended_tx = Some(tx);
        }
        self.replay.clear();
        self.replay_ok = true;
        if self.shared.settings.pool_mode == PoolMode::Transaction && self.pinned.is_none() {
            if let Some(b) = self.backend.take() {
                self.give_back(b);
            }
        }
        Ok(())
    }

    /// Returns an idle backend session to the pool, once no cancel of this client can still
    /// reach it.
    fn give_back(&mut self, b: Attached) {
        self.gauge.set(ClientState::Idle);
        let router = &self.shared.router;
        let learn = b.target == 0
            && b.kind == RouteKind::Write
            && router.routes_reads()
            && router.settings.read_your_writes != WriteScope::Off;
        if learn {
            return self.learn_write_position(b);
        }
        if self.cancel_slot.clear() {
            let slot = self.cancel_slot.clone();
            tokio::spawn(async move {
                slot.wait_idle().await;
                drop(b);
            });
        }
    }

    async fn flush_client(&mut self) -> Result<(), End> {
        if self.client_out.is_empty() {
            return Ok(());
        }
        let written = self.client.write_all(&self.client_out).await;
        if written.is_err() || self.client.flush().await.is_err() {
            return Err(End::ClientGone);
        }
        let n = self.client_out.len() as u64;
        self.shared.obs.metrics.client_sent_bytes.inc_by(n);
        self.stats.bytes_out += n;
        self.client_out.clear();
        Ok(())
    }

    /// Waits for bytes from the client or the backend, or for the proxy to drain.
    async fn wait_for_input(&mut self) -> Result<(), End> {
        let between_transactions = self.backend.as_ref().is_none_or(Attached::is_quiescent);
        match *self.phase.borrow() {
            Phase::Running => {}
            Phase::Draining if !between_transactions => {}
            _ => return Err(End::Fatal(ClientError::Shutdown)),
        }
        // Waiting on the client between transactions, or inside one with nothing outstanding.
        let limits = &self.shared.settings.limits;
        let idle_limit = match self.backend.as_ref() {
            _ if between_transactions => limits
                .idle_timeout
                .map(|d| (d, ClientError::IdleSessionTimeout)),
            Some(b) if b.queue.is_empty() && b.to_backend.is_empty() => limits
                .idle_in_transaction_timeout
                .map(|d| (d, ClientError::IdleInTransactionTimeout)),
            _ => None,
        };
        let idle_after = idle_limit.as_ref().map(|(after, _)| *after);
        let idle = async {
            match idle_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let Session {
            client,
            client_in,
            backend,
            phase,
            ..
        } = self;
        let read = match backend.as_mut() {
            None => tokio::select! {
                read = client.read_buf(client_in) => Input::Client(read),
                _ = phase.changed() => Input::Phase,
                _ = idle => Input::Idle,
            },
            Some(b) => {
                let backend = &mut b.checkout.backend;
                tokio::select! {
                    read = client.read_buf(client_in) => Input::Client(read),
                    read = backend.stream.read_buf(&mut backend.read_buf) => Input::Backend(read),
                    _ = phase.changed() => Input::Phase,
                    _ = idle => Input::Idle,
                }
            }
        };
        if let (Input::Idle, Some((_, err))) = (&read, idle_limit) {
            tracing::info!(code = err.sqlstate(), "closing an idle client");
            return Err(End::Fatal(err));
        }
        match read {
            Input::Client(Ok(0) | Err(_)) => Err(End::ClientGone),
            Input::Client(Ok(n)) => {
                self.shared
                    .obs
                    .metrics
                    .client_received_bytes
                    .inc_by(n as u64);
                self.stats.bytes_in += n as u64;
                Ok(())
            }
            Input::Backend(Ok(0)) => Err(End::BackendLost("server closed the connection".into())),
            Input::Backend(Err(e)) => Err(End::BackendLost(format!("read failed: {e}"))),
            Input::Backend(Ok(_)) | Input::Phase | Input::Idle => Ok(()),
        }
    }
}

impl Session<'_> {
    /// After a transaction on the primary: reads the primary's WAL position on the same session
    /// before it returns to the pool, without delaying the client (its reply is already on its
    /// way). The client's next read waits for it only if it comes within that round trip.
    fn learn_write_position(&mut self, mut b: Attached) {
        let (tx, rx) = oneshot::channel();
        self.pending_lsn = Some(rx);
        let in_flight = self.cancel_slot.clear();
        let slot = self.cancel_slot.clone();
        let shared = self.shared.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            if in_flight {
                slot.wait_idle().await;
            }
            match current_wal_lsn(&mut b.checkout.backend, "primary").await {
                Ok(lsn) => {
                    if shared.router.settings.read_your_writes == WriteScope::Identity {
                        shared.router.by_identity.record(identity, lsn);
                    }
                    let _ = tx.send(lsn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the primary's WAL position");
                    b.checkout.broken = true;
                }
            }
        });
    }
}

/// What woke a waiting session.
enum Input {
    Client(std::io::Result<usize>),
    Backend(std::io::Result<usize>),
    Phase,
    Idle,
}

/// How long a terminating client's last statements may take to complete before the backend
/// session is closed instead (which rolls back whatever is still open).
const TERMINATE_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes stand-in answers due now, and forgets statements whose Parse did not happen.
fn emit_effects(effects: &mut Effects, out: &mut BytesMut, b: &mut Attached) {
    for tag in effects.synthesized.drain(..) {
        out.put_slice(&empty_message(tag));
    }
    for name in effects.failed_prepares.drain(..) {
        b.checkout.prepared.remove(&name);
    }
}

/// After a committed transaction: the tracked parameters it set (or reset) become the client's
/// desired values. Reported parameters also arrive as ParameterStatus; the unreported ones
/// (`extra_float_digits`, `search_path`) are known only from here, and the backend now holds
/// them too.
fn apply_settings(
    desired: &mut BTreeMap<String, String>,
    b: &mut Attached,
    defaults: Option<&crate::params::ServerDefaults>,
    reset_all: bool,
    sets: Vec<(String, Option<String>)>,
) {
    let default_of = |name: &str| defaults.and_then(|d| d.params.get(name).cloned());
    if reset_all {
        for name in UNREPORTED {
            if let Some(value) = default_of(name) {
                desired.insert(name.to_string(), value.clone());
                b.checkout.params.insert(name.to_string(), value);
            }
        }
    }
    for (name, value) in sets {
        let Some(tracked) = tracked_name(&name) else {
            continue;
        };
        if !UNREPORTED.contains(&tracked) {
            continue;
        }
        let Some(value) = value.or_else(|| default_of(tracked)) else {
            continue;
        };
        desired.insert(tracked.to_string(), value.clone());
        b.checkout.params.insert(tracked.to_string(), value);
    }
}

/// The canonical client_encoding of a ParameterStatus body, if it is one pgcordon refuses.
fn unsafe_encoding_reported(body: &[u8]) -> Option<String> {
    let mut parts = body.split(|b| *b == 0);
    if parts.next()? != b"client_encoding" {
        return None;
    }
    let raw = String::from_utf8_lossy(parts.next()?);
    let value = canonical_value("client_encoding", &raw);
    is_unsafe_encoding(&value).then(|| value.into_owned())
}

/// Records a ParameterStatus for a tracked parameter as this client's desired value.
fn record_desired(desired: &mut BTreeMap<String, String>, body: &[u8]) {
    let mut parts = body.split(|b| *b == 0);
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    let name = String::from_utf8_lossy(name);
    if let Some(tracked) = tracked_name(&name) {
        let value = canonical_value(tracked, &String::from_utf8_lossy(value)).into_owned();
        desired.insert(tracked.to_string(), value);
    }
}
