//! What the client sends: framing, the statement guard, prepared statement names, refusals, and
//! attaching a backend session when a transaction starts.

use std::borrow::Cow;
use std::time::Instant;

use pgcordon_audit::StatementRefused;
use pgcordon_metrics::ClientState;
use pgcordon_pool::{AcquireError, Checkout};
use pgcordon_sql::Verdict;
use pgcordon_wire::server::{self, TxStatus};
use pgcordon_wire::{decode_frame, inspect, FrameError, RawMessage};

use super::attached::{may_deallocate, named_statement, Attached};
use super::{End, Session, TxStats};
use crate::errors::ClientError;
use crate::inject::raising_sql;
use crate::observe::statement_refusal;
use crate::params::{canonical_value, is_unsafe_encoding, UNREPORTED};
use crate::prepared::{self, empty_message};
use crate::responses::Request;
use crate::route::{Intent, RouteKind, Routed, WriteScope};
use crate::settings::PoolMode;

impl Session<'_> {
    pub(super) async fn handle_client_messages(&mut self) -> Result<(), End> {
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
            self.remember_for_retry(&msg);
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
                b'B' => self.on_bind(msg).await?,
                b'D' => self.on_describe(msg).await?,
                b'C' => self.on_close(msg).await?,
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
                b'E' | b'H' | b'd' | b'c' | b'f' => self.forward(msg).await?,
                other => {
                    let detail = format!("unexpected message type {:?}", other as char);
                    return Err(End::Fatal(ClientError::Protocol(detail)));
                }
            }
        }
    }

    fn prepared_by_proxy(&self) -> bool {
        self.shared.settings.pool_mode == PoolMode::Transaction
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
        // Shares the message's buffer: the message itself moves on when it is forwarded.
        let text = msg.bytes.slice_ref(text);
        if !self.guard_allows(&msg, &text).await? {
            return Ok(());
        }
        if !self.session_state_allows(&msg, &text).await? {
            return Ok(());
        }
        self.forward_with(msg, Intent::Sql(&text)).await?;
        self.after_statement(&text);
        Ok(())
    }

    async fn on_parse(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some((name, text)) = inspect::parse_head(msg.body()) else {
            return Err(End::Fatal(ClientError::Protocol(
                "malformed Parse message".into(),
            )));
        };
        let (name, text) = (msg.bytes.slice_ref(name), msg.bytes.slice_ref(text));
        if !self.guard_allows(&msg, &text).await? {
            return Ok(());
        }
        if !self.session_state_allows(&msg, &text).await? {
            return Ok(());
        }
        if name.is_empty() || !self.prepared_by_proxy() {
            self.forward_with(msg, Intent::Sql(&text)).await?;
            self.after_statement(&text);
            return Ok(());
        }
        // A prepared statement may be bound in a later transaction on another target: a
        // replica retry could not repeat this Parse.
        self.replay_ok = false;

        let display = String::from_utf8_lossy(&name).into_owned();
        if self.statements.contains(&name) {
            let err = ClientError::DuplicateStatement(display);
            return self.refuse(msg, err).await;
        }
        let rest = msg.bytes.slice(5 + name.len() + 1..);
        let statement = self.statements.insert(&name, rest);
        match self.backend_for_transaction(Intent::Sql(&text)).await {
            Ok(b) => b.prepare(&statement, true),
            Err(err) => {
                self.statements.remove(&name);
                self.refuse_locally(&msg, err);
            }
        }
        Ok(())
    }

    async fn on_bind(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some((_, name)) = inspect::bind_head(msg.body()) else {
            return Err(End::Fatal(ClientError::Protocol(
                "malformed Bind message".into(),
            )));
        };
        if name.is_empty() || !self.prepared_by_proxy() {
            return self.forward(msg).await;
        }
        let Some(statement) = self.statements.get(name) else {
            let err = ClientError::UnknownStatement(String::from_utf8_lossy(name).into_owned());
            return self.refuse(msg, err).await;
        };
        let Some(rewritten) = prepared::rewrite_bind(msg.body(), &statement.backend_name) else {
            return Err(End::Fatal(ClientError::Protocol(
                "malformed Bind message".into(),
            )));
        };
        let sql = statement.sql().to_vec();
        match self.backend_for_transaction(Intent::Sql(&sql)).await {
            Ok(b) => {
                b.prepare(&statement, false);
                b.send_client(&RawMessage {
                    tag: b'B',
                    bytes: rewritten,
                });
            }
            Err(err) => self.refuse_locally(&msg, err),
        }
        Ok(())
    }

    async fn on_describe(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some(name) = named_statement(msg.body()).filter(|_| self.prepared_by_proxy()) else {
            return self.forward(msg).await;
        };
        let Some(statement) = self.statements.get(name) else {
            let err = ClientError::UnknownStatement(String::from_utf8_lossy(name).into_owned());
            return self.refuse(msg, err).await;
        };
        match self.backend_for_transaction(Intent::Unknown).await {
            Ok(b) => {
                b.prepare(&statement, false);
                let describe = prepared::describe_statement(&statement.backend_name);
                b.send_client(&RawMessage {
                    tag: b'D',
                    bytes: describe,
                });
            }
            Err(err) => self.refuse_locally(&msg, err),
        }
        Ok(())
    }

    /// Closing a named statement forgets the client's name; the backend statement stays cached
    /// for other clients. The client gets its CloseComplete in order.
    async fn on_close(&mut self, msg: RawMessage) -> Result<(), End> {
        let Some(name) = named_statement(msg.body()).filter(|_| self.prepared_by_proxy()) else {
            return self.forward(msg).await;
        };
        self.statements.remove(name);
        match self.backend.as_mut() {
            Some(b) => b.synthesize(Request::Close, b'3'),
            None => self.client_out.extend_from_slice(&empty_message(b'3')),
        }
        Ok(())
    }

    /// Applies the statement guard; a refused statement is answered and `false` returned.
    async fn guard_allows(&mut self, msg: &RawMessage, text: &[u8]) -> Result<bool, End> {
        let audit = &self.shared.obs.audit;
        if audit.statements_enabled() {
            audit.statement(self.conn_id, &self.identity, text);
        }
        let sql = String::from_utf8_lossy(text);
        match self.shared.guard.check(&sql) {
            Verdict::Allow => Ok(true),
            Verdict::AllowResetsIdentity => {
                self.resets_identity = true;
                Ok(true)
            }
            Verdict::Refuse(refusal) => {
                tracing::warn!(
                    reason = refusal.reason.as_str(),
                    "statement refused by the guard"
                );
                self.shared
                    .obs
                    .metrics
                    .statement_refused(statement_refusal(refusal.reason));
                self.shared.obs.audit.statement_refused(StatementRefused {
                    conn: self.conn_id,
                    identity: self.identity.clone(),
                    reason: Cow::Borrowed(refusal.reason.as_str()),
                });
                self.refuse(msg.clone(), ClientError::Guard(refusal.message))
                    .await?;
                Ok(false)
            }
        }
    }

    /// What a statement leaves on its backend session. Under transaction pooling, session state
    /// the proxy cannot carry to other sessions (LISTEN, temporary tables, WITH HOLD cursors,
    /// advisory locks, other session settings) pins the client to its backend for good; settings
    /// of tracked parameters are remembered and replayed once their transaction commits. Returns
    /// `false` when the statement was refused.
    async fn session_state_allows(&mut self, msg: &RawMessage, text: &[u8]) -> Result<bool, End> {
        let sql = String::from_utf8_lossy(text);
        let effects = self.shared.router.classifier().session_effects(&sql);
        if effects.is_empty() {
            return Ok(true);
        }
        // Session-level or for one transaction: pgcordon reads every later statement as UTF-8,
        // so the server must never read them in an encoding that can hide quote bytes.
        let refusal = effects.encodings.iter().find_map(|value| match value {
            Some(value) => {
                let value = canonical_value("client_encoding", value).into_owned();
                is_unsafe_encoding(&value).then_some(ClientError::UnsupportedEncoding(value))
            }
            None => Some(ClientError::NotSupported(
                "client_encoding can only be set to a constant through pgcordon, which must \
                 refuse encodings whose characters can hide quote and backslash bytes"
                    .into(),
            )),
        });
        if let Some(err) = refusal {
            self.refuse(msg.clone(), err).await?;
            return Ok(false);
        }
        if let Some(reason) = &effects.pins {
            let transaction_pooling = self.shared.settings.pool_mode == PoolMode::Transaction;
            if transaction_pooling && self.pinned.is_none() {
                tracing::debug!(reason = reason.as_str(), "session pinned to its backend");
                self.shared.obs.metrics.pinned(reason.as_str());
                self.pinned = Some(reason.as_str());
            }
        }
        if effects.resets_all {
            self.pending_sets.clear();
            self.pending_reset_all = true;
        }
        self.pending_sets.extend(effects.sets);
        Ok(true)
    }

    /// Bookkeeping after a statement that may reset settings or drop prepared statements.
    fn after_statement(&mut self, text: &[u8]) {
        let resets = std::mem::take(&mut self.resets_identity);
        let Some(b) = self.backend.as_mut() else {
            return;
        };
        if resets {
            // The identity is back to neutral; it is applied again at the next transaction.
            b.checkout.identity = None;
            for name in UNREPORTED {
                b.checkout.params.remove(*name);
            }
        }
        if may_deallocate(text) {
            b.forget_prepared();
        }
    }

    /// Reports `err` for `msg` without running it, with the transaction semantics the server
    /// would have applied to an error at this point.
    pub(super) async fn refuse(&mut self, msg: RawMessage, err: ClientError) -> Result<(), End> {
        let Some(b) = self.backend.as_mut() else {
            self.refuse_locally(&msg, err);
            return Ok(());
        };
        let code = err.sqlstate();
        let message = err.message();
        match msg.tag {
            // The server raises it: it aborts the transaction as any error would, and the client
            // gets ErrorResponse then ReadyForQuery, the shape it expects for its query.
            b'Q' | b'F' => {
                let mut replacement = bytes::BytesMut::new();
                // Our own SQL has no NUL; serialisation cannot fail.
                let sql = raising_sql(code, &message);
                let _ = postgres_protocol::message::frontend::query(&sql, &mut replacement);
                b.send_client(&RawMessage {
                    tag: b'Q',
                    bytes: replacement.freeze(),
                });
            }
            _ => b.raise_in_place(code, &message),
        }
        Ok(())
    }

    /// Answers an error with nothing outstanding on a backend, exactly as the server would.
    fn refuse_locally(&mut self, msg: &RawMessage, err: ClientError) {
        err.write(&mut self.client_out);
        match msg.tag {
            b'Q' | b'F' => server::ready_for_query(&mut self.client_out, TxStatus::Idle),
            _ => self.skip_until_sync = true,
        }
    }

    /// Sends `msg` to the backend serving this transaction.
    pub(super) async fn forward(&mut self, msg: RawMessage) -> Result<(), End> {
        self.forward_with(msg, Intent::Unknown).await
    }

    /// Sends `msg`, whose SQL (if any) says where a transaction it starts should run.
    async fn forward_with(&mut self, msg: RawMessage, intent: Intent<'_>) -> Result<(), End> {
        let metrics = &self.shared.target_metrics;
        match self.backend_for_transaction(intent).await {
            Ok(b) => {
                if matches!(msg.tag, b'Q' | b'E') {
                    metrics[b.target].queries.inc();
                }
                b.send_client(&msg)
            }
            Err(err) => self.refuse_locally(&msg, err),
        }
        Ok(())
    }

    /// The attached backend, attaching one first if needed: the target is chosen from the
    /// transaction's first message (`intent`). At the start of each transaction the identity
    /// and parameters are checked and, where they differ, injected first.
    async fn backend_for_transaction(
        &mut self,
        intent: Intent<'_>,
    ) -> Result<&mut Attached, ClientError> {
        if self.backend.is_none() {
            let routed = self.route(&intent).await;
            let targets = &self.shared.router.targets;
            if routed.kind == RouteKind::Write && targets.primary_in_recovery() {
                let name = targets.primary().name().to_owned();
                return Err(ClientError::PrimaryInRecovery(name));
            }
            let checkout = self.acquire(routed.index).await?;
            let key = (
                checkout.backend.process_id,
                checkout.backend.secret_key,
                routed.index,
            );
            self.cancel_slot.set(Some(key));
            let metrics = &self.shared.target_metrics[routed.index];
            match routed.kind {
                RouteKind::Read => metrics.routed_reads.inc(),
                RouteKind::Write => metrics.routed_writes.inc(),
                RouteKind::Fallback => metrics.routing_fallbacks.inc(),
            }
            self.backend = Some(Attached::new(checkout, routed));
        }
        let settings = &self.shared.settings;
        let Some(b) = self.backend.as_mut() else {
            return Err(ClientError::Shutdown);
        };
        if b.at_transaction_start() {
            let proof = settings.proof.as_ref();
            b.apply_identity(
                &self.identity,
                &self.desired,
                &settings.identity_settings,
                proof,
            );
            b.tx = Some(TxStats::new(b.checkout.backend.process_id, b.target));
        }
        Ok(b)
    }

    /// Chooses the target of a transaction starting with `intent`.
    async fn route(&mut self, intent: &Intent<'_>) -> Routed {
        let router = &self.shared.router;
        let force_primary = std::mem::take(&mut self.force_primary);
        if self.shared.settings.pool_mode == PoolMode::Session || !router.routes_reads() {
            return Routed {
                index: 0,
                lease: None,
                kind: RouteKind::Write,
            };
        }
        let mut min_lsn = None;
        if router.settings.read_your_writes != WriteScope::Off {
            if let Some(pending) = self.pending_lsn.take() {
                // The previous write's position is being read from the primary right now.
                if let Ok(Ok(lsn)) = tokio::time::timeout(router.learn_bound(), pending).await {
                    self.write_lsn = self.write_lsn.max(Some(lsn));
                }
            }
            min_lsn = self.write_lsn.max(router.identity_lsn(&self.identity));
        }
        router.choose(intent, min_lsn, force_primary).await
    }

    /// Takes a backend session from the pool, counting the wait.
    async fn acquire(&mut self, index: usize) -> Result<Checkout, ClientError> {
        let target = &self.shared.target_metrics[index];
        let readiness = &self.shared.obs.readiness;
        self.gauge.set(ClientState::Waiting);
        let started = Instant::now();
        let acquired = self.shared.target_pool(index).acquire().await;
        let waited = started.elapsed();
        self.acquire_wait += waited;
        target.acquire_wait_seconds.observe(waited.as_secs_f64());
        match acquired {
            Ok(checkout) => {
                self.gauge.set(ClientState::Active);
                if index == 0 {
                    readiness.set_primary_reachable(true);
                }
                Ok(checkout)
            }
            Err(e) => {
                self.gauge.set(ClientState::Idle);
                Err(match e {
                    AcquireError::Timeout(after) => {
                        tracing::warn!(?after, "pool exhausted: no backend became free in time");
                        ClientError::PoolTimeout
                    }
                    // The pool's observer counted the failure and updated readiness.
                    AcquireError::Upstream(e) => {
                        tracing::error!(error = %e, "cannot open an upstream session");
                        ClientError::UpstreamUnavailable
                    }
                    AcquireError::Closed => ClientError::Shutdown,
                })
            }
        }
    }
}
