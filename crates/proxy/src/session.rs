//! One client session: forwarding between the client and a pooled backend session, deciding
//! transaction boundaries, and applying the statement guard.
//!
//! Transaction pooling: a backend is attached at the first message that needs one and released at
//! the ReadyForQuery with status idle that answers the client's last Sync or Query, once nothing
//! else is outstanding. Session pooling: the backend stays until the client leaves, then is reset
//! with DISCARD ALL before it returns to the pool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgcordon_pool::{AcquireError, BackendPool, Checkout};
use pgcordon_sql::Verdict;
use pgcordon_wire::server::{self, TxStatus};
use pgcordon_wire::{decode_frame, inspect, FrameError, RawMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::backend_io::{record_parameter, simple_query, write_draining, MAX_BACKEND_MESSAGE};
use crate::errors::ClientError;
use crate::handshake::{establish, Established, HandshakeError};
use crate::inject::{raising_sql, write_injection, InjectionTracker, Step};
use crate::listener::Shared;
use crate::params::{canonical_value, tracked_name, UNREPORTED};
use crate::settings::PoolMode;
use crate::startup::accept_client;

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(tcp: TcpStream, peer: SocketAddr, shared: &Shared) {
    let settings = &shared.settings;
    let handshake =
        tokio::time::timeout(settings.handshake_timeout, establish(tcp, &shared.acceptor));
    let established = match handshake.await {
        Ok(Ok(established)) => established,
        Ok(Err(e)) => return log_handshake_failure(peer, &e),
        Err(_) => {
            tracing::warn!(client.addr = %peer, reason = "timeout", "TLS handshake timed out");
            return;
        }
    };
    let Established {
        mut stream,
        minor,
        params,
        leftover,
        ..
    } = established;

    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.as_ref().to_vec());
    let mut out = BytesMut::with_capacity(1024);
    let accepted = tokio::time::timeout(
        settings.startup_timeout,
        accept_client(shared, minor, &params, leaf.as_deref(), &mut out),
    )
    .await
    .unwrap_or(Err(ClientError::Protocol("startup timed out".into())));
    let ctx = match accepted {
        Ok(ctx) => ctx,
        Err(err) => {
            tracing::warn!(client.addr = %peer, code = err.sqlstate(), reason = %err.message(),
                "client refused at startup");
            out.clear();
            err.write(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    tracing::Span::current().record("identity", &*ctx.identity);
    tracing::Span::current().record("db", settings.client_database.as_str());
    tracing::debug!("client authenticated");
    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
        return;
    }

    let mut session = Session {
        shared,
        client: stream,
        client_in: leftover,
        client_out: BytesMut::with_capacity(16 * 1024),
        identity: ctx.identity,
        desired: ctx.desired,
        backend: None,
        skip_until_sync: false,
    };
    let end = session.run().await;
    session.finish(end).await;
}

fn log_handshake_failure(peer: SocketAddr, e: &HandshakeError) {
    match e {
        HandshakeError::Closed => tracing::debug!(client.addr = %peer, "closed before TLS"),
        HandshakeError::Cancel { .. } => {
            tracing::debug!(client.addr = %peer, "cancel request dropped (not forwarded yet)")
        }
        _ => tracing::warn!(client.addr = %peer, reason = e.reason(), error = %e,
            "connection refused"),
    }
}

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
}

/// A backend session attached to this client, and the protocol state pgcordon tracks on it.
struct Attached {
    checkout: Checkout,
    /// Messages waiting to be written to the backend.
    to_backend: BytesMut,
    /// Responses of the identity injection still to be consumed.
    injection: Option<InjectionTracker>,
    /// Sync and Query messages sent whose ReadyForQuery has not arrived.
    pending_syncs: usize,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Transaction status of the last ReadyForQuery.
    status: u8,
}

impl Attached {
    fn push(&mut self, tag: u8, bytes: &[u8]) {
        self.to_backend.extend_from_slice(bytes);
        match tag {
            b'Q' | b'S' | b'F' => {
                self.pending_syncs += 1;
                self.unsynced = false;
            }
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.unsynced = true,
            _ => {}
        }
    }

    /// Between transactions: nothing queued or outstanding, so an injection may go first.
    fn at_transaction_start(&self) -> bool {
        self.injection.is_none()
            && self.pending_syncs == 0
            && !self.unsynced
            && self.status == b'I'
            && self.to_backend.is_empty()
    }

    /// Idle, nothing outstanding: the session can serve another client.
    fn is_quiescent(&self) -> bool {
        self.injection.is_none()
            && self.pending_syncs == 0
            && !self.unsynced
            && self.status == b'I'
            && self.checkout.backend.read_buf.is_empty()
    }
}

struct Session<'a> {
    shared: &'a Shared,
    client: TlsStream<TcpStream>,
    client_in: BytesMut,
    client_out: BytesMut,
    identity: Arc<str>,
    /// Tracked parameters as this client's sessions must have them.
    desired: BTreeMap<String, String>,
    backend: Option<Attached>,
    /// After a locally reported error in an extended-protocol batch: drop messages until Sync.
    skip_until_sync: bool,
}

impl Session<'_> {
    async fn run(&mut self) -> End {
        loop {
            if let Err(end) = self.handle_client_messages().await {
                return end;
            }
            if let Err(end) = self.flush_backend().await {
                return end;
            }
            if let Err(end) = self.handle_backend_messages() {
                return end;
            }
            if let Err(end) = self.flush_client().await {
                return end;
            }
            if let Err(end) = self.wait_for_input().await {
                return end;
            }
        }
    }

    // ---- client to backend ------------------------------------------------------------------

    async fn handle_client_messages(&mut self) -> Result<(), End> {
        let max = self.shared.settings.max_frame_bytes;
        loop {
            let msg = match decode_frame(&mut self.client_in, max) {
                Ok(Some(msg)) => msg,
                Ok(None) => return Ok(()),
                Err(e @ FrameError::TooLarge { .. }) => {
                    return Err(End::Fatal(ClientError::FrameTooLarge(e.to_string())))
                }
                Err(e) => return Err(End::Fatal(ClientError::Protocol(e.to_string()))),
            };
            if self.skip_until_sync {
                if msg.tag == b'S' {
                    self.skip_until_sync = false;
                    self.sync_or_ready(msg).await?;
                }
                continue;
            }
            match msg.tag {
                b'X' => return Err(End::Terminated),
                b'Q' => self.on_query(msg).await?,
                b'P' => self.on_parse(msg).await?,
                b'F' => {
                    let err = ClientError::NotSupported(
                        "pgcordon: the FunctionCall protocol message is not supported; call the \
                         function with SELECT"
                            .into(),
                    );
                    self.refuse(msg, err).await?
                }
                b'S' => self.sync_or_ready(msg).await?,
                b'H' | b'd' | b'c' | b'f' if self.backend.is_none() => {}
                b'B' | b'E' | b'D' | b'C' | b'H' | b'd' | b'c' | b'f' => self.forward(msg).await?,
                other => {
                    let detail = format!("unexpected message type {:?}", other as char);
                    return Err(End::Fatal(ClientError::Protocol(detail)));
                }
            }
        }
    }

    /// A Sync with nothing attached is answered here, as the server would answer it.
    async fn sync_or_ready(&mut self, msg: RawMessage) -> Result<(), End> {
        if self.backend.is_none() {
            server::ready_for_query(&mut self.client_out, TxStatus::Idle);
            return Ok(());
        }
        self.forward(msg).await
    }

    async fn on_query(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some(text) = inspect::query_text(msg.body()) else {
            return Err(End::Fatal(ClientError::Protocol(
                "malformed Query message".into(),
            )));
        };
        self.guarded(msg.clone(), text).await
    }

    async fn on_parse(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some((name, text)) = inspect::parse_head(msg.body()) else {
            return Err(End::Fatal(ClientError::Protocol(
                "malformed Parse message".into(),
            )));
        };
        if !name.is_empty() && self.shared.settings.pool_mode == PoolMode::Transaction {
            let err = ClientError::NotSupported(
                "pgcordon: named prepared statements are not supported in transaction pooling \
                 yet; use unnamed statements or session pooling"
                    .into(),
            );
            return self.refuse(msg, err).await;
        }
        self.guarded(msg.clone(), text).await
    }

    /// Applies the statement guard to `text`, then forwards or refuses `msg`.
    async fn guarded(&mut self, msg: RawMessage, text: &[u8]) -> Result<(), End> {
        let sql = String::from_utf8_lossy(text);
        match self.shared.guard.check(&sql) {
            Verdict::Allow => self.forward(msg).await,
            Verdict::AllowResetsIdentity => {
                self.forward(msg).await?;
                // The statement sends the identity back to neutral; set it again next time.
                if let Some(b) = self.backend.as_mut() {
                    b.checkout.identity = None;
                    for name in UNREPORTED {
                        b.checkout.params.remove(*name);
                    }
                }
                Ok(())
            }
            Verdict::Refuse(refusal) => {
                tracing::warn!(
                    reason = refusal.reason.as_str(),
                    "statement refused by the guard"
                );
                self.refuse(msg, ClientError::Guard(refusal.message)).await
            }
        }
    }

    /// Reports `err` for `msg` without running it, with the transaction semantics the server
    /// would have applied to an error at this point.
    async fn refuse(&mut self, msg: RawMessage, err: ClientError) -> Result<(), End> {
        let Some(backend) = self.backend.as_mut() else {
            // Nothing outstanding: answer here, exactly as the server answers an error.
            err.write(&mut self.client_out);
            match msg.tag {
                b'Q' | b'F' => server::ready_for_query(&mut self.client_out, TxStatus::Idle),
                _ => self.skip_until_sync = true,
            }
            return Ok(());
        };
        match msg.tag {
            // Raise the error on the server: it aborts the transaction as any error would, and
            // the client gets ErrorResponse then ReadyForQuery, the same shape as for its query.
            b'Q' | b'F' => {
                let mut replacement = BytesMut::new();
                let sql = raising_sql(err.sqlstate(), &err.message());
                // Our own SQL has no NUL; serialisation cannot fail.
                let _ = postgres_protocol::message::frontend::query(&sql, &mut replacement);
                backend.push(b'Q', &replacement);
                Ok(())
            }
            // Inside a transaction a Parse cannot be failed in place without reordering replies;
            // end the session so the transaction rolls back with the backend.
            _ => Err(End::Fatal(err)),
        }
    }

    /// Sends `msg` to the attached backend, attaching one first if needed. At the start of each
    /// transaction the backend's identity and parameters are checked and, if they differ from
    /// this client's, the injection is queued ahead of the message.
    async fn forward(&mut self, msg: RawMessage) -> Result<(), End> {
        if self.backend.is_none() {
            if let Err(err) = self.attach().await {
                return self.refuse(msg, err).await;
            }
        }
        let Some(backend) = self.backend.as_mut() else {
            return Ok(());
        };
        if backend.at_transaction_start() {
            apply_identity(backend, &self.identity, &self.desired, self.shared);
        }
        backend.push(msg.tag, &msg.bytes);
        Ok(())
    }

    /// Takes a backend session from the pool.
    async fn attach(&mut self) -> Result<(), ClientError> {
        let checkout = self.shared.pool.acquire().await.map_err(|e| match e {
            AcquireError::Timeout(after) => {
                tracing::warn!(?after, "pool exhausted: no backend became free in time");
                ClientError::PoolTimeout
            }
            AcquireError::Upstream(e) => {
                tracing::error!(error = %e, "cannot open an upstream session");
                ClientError::UpstreamUnavailable
            }
            AcquireError::Closed => ClientError::Shutdown,
        })?;

        self.backend = Some(Attached {
            checkout,
            to_backend: BytesMut::with_capacity(4096),
            injection: None,
            pending_syncs: 0,
            unsynced: false,
            status: b'I',
        });
        Ok(())
    }

    async fn flush_backend(&mut self) -> Result<(), End> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(());
        };
        if b.to_backend.is_empty() {
            return Ok(());
        }
        let backend = &mut b.checkout.backend;
        if let Err(e) =
            write_draining(&mut backend.stream, &b.to_backend, &mut backend.read_buf).await
        {
            return Err(End::BackendLost(format!("write failed: {e}")));
        }
        b.to_backend.clear();
        Ok(())
    }

    // ---- backend to client ------------------------------------------------------------------

    fn handle_backend_messages(&mut self) -> Result<(), End> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(());
        };
        loop {
            let msg = match decode_frame(&mut b.checkout.backend.read_buf, MAX_BACKEND_MESSAGE) {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => return Err(End::BackendLost(format!("malformed server message: {e}"))),
            };
            if let Some(tracker) = b.injection.as_mut() {
                match tracker.step(msg.tag) {
                    Step::Swallow => continue,
                    Step::Done => {
                        b.injection = None;
                        continue;
                    }
                    Step::PassThrough => {}
                    Step::Failed => {
                        let f = inspect::error_fields(msg.body());
                        tracing::error!(code = ?f.code, message = ?f.message, tag = %(msg.tag as char),
                            "identity injection failed; dropping the backend session");
                        return Err(End::BackendLost(
                            "could not apply the client identity".into(),
                        ));
                    }
                }
            }
            match msg.tag {
                b'Z' => {
                    b.pending_syncs = b.pending_syncs.saturating_sub(1);
                    b.status = inspect::ready_status(msg.body()).unwrap_or(b'E');
                }
                b'S' => {
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
                }
                _ => {}
            }
            self.client_out.put_slice(&msg.bytes);
        }
        if self.shared.settings.pool_mode == PoolMode::Transaction && b.is_quiescent() {
            self.backend = None;
        }
        Ok(())
    }

    async fn flush_client(&mut self) -> Result<(), End> {
        if self.client_out.is_empty() {
            return Ok(());
        }
        let written = self.client.write_all(&self.client_out).await;
        if written.is_err() || self.client.flush().await.is_err() {
            return Err(End::ClientGone);
        }
        self.client_out.clear();
        Ok(())
    }

    async fn wait_for_input(&mut self) -> Result<(), End> {
        let Session {
            client,
            client_in,
            backend,
            ..
        } = self;
        let Some(b) = backend.as_mut() else {
            return match client.read_buf(client_in).await {
                Ok(0) | Err(_) => Err(End::ClientGone),
                Ok(_) => Ok(()),
            };
        };
        let backend = &mut b.checkout.backend;
        tokio::select! {
            read = client.read_buf(client_in) => match read {
                Ok(0) | Err(_) => Err(End::ClientGone),
                Ok(_) => Ok(()),
            },
            read = backend.stream.read_buf(&mut backend.read_buf) => match read {
                Ok(0) => Err(End::BackendLost("server closed the connection".into())),
                Err(e) => Err(End::BackendLost(format!("read failed: {e}"))),
                Ok(_) => Ok(()),
            },
        }
    }

    // ---- the end ----------------------------------------------------------------------------

    async fn finish(mut self, end: End) {
        let error = match end {
            End::ClientGone => None,
            End::Terminated => {
                self.complete_before_terminate().await;
                None
            }
            End::Fatal(err) => Some(err),
            End::BackendLost(detail) => {
                tracing::warn!(detail = %detail, "backend session lost while serving the client");
                if let Some(b) = self.backend.take() {
                    BackendPool::discard(b.checkout);
                }
                Some(ClientError::UpstreamLost(detail))
            }
        };
        if let Some(b) = self.backend.take() {
            release_at_end(self.shared, b);
        }
        if let Some(err) = error {
            // Whatever the backend already answered goes first, then the error.
            err.write(&mut self.client_out);
            let _ = self.client.write_all(&self.client_out).await;
        }
        let _ = self.client.shutdown().await;
        tracing::debug!("client session closed");
    }
}

/// How long a terminating client's last statements may take to complete before the backend
/// session is closed instead (which rolls back whatever is still open).
const TERMINATE_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

impl Session<'_> {
    /// Sends what the client queued before Terminate and waits for the server to answer it, as
    /// the server would have processed it; the answers have nowhere to go and are dropped.
    async fn complete_before_terminate(&mut self) {
        let Some(b) = self.backend.as_mut() else {
            return;
        };
        if b.to_backend.is_empty() && b.pending_syncs == 0 {
            return;
        }
        let drained = tokio::time::timeout(TERMINATE_DRAIN, async {
            if self.flush_backend().await.is_err() {
                return;
            }
            loop {
                if self.handle_backend_messages().is_err() {
                    return;
                }
                self.client_out.clear();
                let Some(b) = self.backend.as_mut() else {
                    return;
                };
                if b.pending_syncs == 0 && b.injection.is_none() {
                    return;
                }
                let backend = &mut b.checkout.backend;
                match backend.stream.read_buf(&mut backend.read_buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("statements sent before Terminate did not complete in time");
        }
    }
}

/// Queues the identity injection on `b` when its session holds anything other than `identity`
/// and the `desired` parameter values.
fn apply_identity(
    b: &mut Attached,
    identity: &Arc<str>,
    desired: &BTreeMap<String, String>,
    shared: &Shared,
) {
    let mut assignments: Vec<(String, String)> = Vec::new();
    if b.checkout.identity.as_deref() != Some(&**identity) {
        for setting in &shared.settings.protected_settings {
            assignments.push((setting.clone(), identity.to_string()));
        }
    }
    for (name, value) in desired {
        let current = b
            .checkout
            .params
            .get(name)
            .map(|v| canonical_value(name, v));
        if current.as_deref() != Some(value.as_str()) {
            assignments.push((name.clone(), value.clone()));
        }
    }
    if assignments.is_empty() {
        return;
    }
    let pairs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    b.injection = Some(write_injection(&mut b.to_backend, &pairs));
    b.checkout.identity = Some(identity.clone());
    for (name, value) in assignments {
        if tracked_name(&name).is_some() {
            b.checkout.params.insert(name, value);
        }
    }
}

/// Records a ParameterStatus for a tracked parameter as this client's desired value.
fn record_desired(desired: &mut BTreeMap<String, String>, body: &[u8]) {
    let mut parts = body.split(|b| *b == 0);
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    let name = String::from_utf8_lossy(name);
    if let Some(tracked) = tracked_name(&name) {
        let value = canonical_value(tracked, &String::from_utf8_lossy(value));
        desired.insert(tracked.to_string(), value);
    }
}

/// A backend still attached when its client leaves: back to the pool when that is safe,
/// otherwise closed (which rolls back any open transaction).
fn release_at_end(shared: &Shared, mut b: Attached) {
    if !b.is_quiescent() {
        BackendPool::discard(b.checkout);
        return;
    }
    if shared.settings.pool_mode == PoolMode::Transaction {
        return; // dropping the checkout returns it to the pool
    }
    // Session pooling: clear everything the client left behind (prepared statements, temporary
    // tables, settings, the identity) before another client gets this session.
    tokio::spawn(async move {
        match simple_query(&mut b.checkout, "DISCARD ALL").await {
            Ok(_) => {
                b.checkout.identity = None;
                for name in UNREPORTED {
                    b.checkout.params.remove(*name);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reset a session; closing it");
                BackendPool::discard(b.checkout);
            }
        }
    });
}
