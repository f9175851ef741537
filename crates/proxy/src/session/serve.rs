//! From an accepted TCP connection to a running session: the handshake, startup, the accounting
//! of each attempt (metrics and audit), and the closing record.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use pgcordon_audit::{ConnectionAccepted, ConnectionClosed, ConnectionRefused};
use pgcordon_metrics::{Attempt, ClientState, Limit, StatementRefusal, TlsFailure};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{ConnStats, Session};
use crate::errors::ClientError;
use crate::handshake::{establish, Established, HandshakeError, Opening};
use crate::listener::Shared;
use crate::observe::{handshake_attempt, identity_attempt, startup_refusal_reason};
use crate::prepared::ClientStatements;
use crate::startup::accept_client;

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(tcp: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, conn_id: u64) {
    let settings = &shared.settings;
    let metrics = &shared.obs.metrics;
    let mut gauge = metrics.client_connection();
    gauge.set(ClientState::Handshake);
    let started = Instant::now();

    let acceptor = TlsAcceptor::from(shared.tls.load_full());
    let handshake = tokio::time::timeout(settings.handshake_timeout, establish(tcp, &acceptor));
    // The histogram times every connection attempt's handshake, refused ones included; a
    // cancel request and a peer that closes before sending anything are not attempts.
    let observe_handshake = || {
        metrics
            .tls_handshake_seconds
            .observe(started.elapsed().as_secs_f64())
    };
    let established = match handshake.await {
        Ok(Ok(Opening::Client(established))) => *established,
        Ok(Ok(Opening::Cancel(request))) => return crate::cancel::answer(shared, request).await,
        Ok(Err(e)) => {
            if refused_in_handshake(shared, conn_id, peer, &e) {
                observe_handshake();
            }
            return;
        }
        Err(_) => {
            tracing::warn!(client.addr = %peer, reason = "timeout", "TLS handshake timed out");
            metrics.limit_reached(Limit::HandshakeTimeout);
            observe_handshake();
            metrics.attempt(Attempt::TlsFailure(TlsFailure::Timeout));
            audit_refused(shared, conn_id, peer, None, "timeout");
            return;
        }
    };
    observe_handshake();
    gauge.set(ClientState::Startup);
    let Established {
        mut stream,
        minor,
        params,
        leftover,
    } = established;

    let tls = stream.get_ref().1;
    let leaf = tls
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.to_vec());
    let tls_version = tls
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let cipher = tls
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    let mut out = BytesMut::with_capacity(1024);
    let accepted = tokio::time::timeout(
        settings.startup_timeout,
        accept_client(shared, minor, &params, leaf.as_deref(), &mut out),
    )
    .await;
    let ctx = match accepted {
        Ok(Ok(ctx)) => ctx,
        Err(_) => {
            tracing::warn!(client.addr = %peer, "client refused: startup timed out");
            metrics.limit_reached(Limit::StartupTimeout);
            audit_refused(shared, conn_id, peer, None, "startup_timeout");
            out.clear();
            ClientError::Protocol("startup timed out".into()).write_fatal(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
        Ok(Err(err)) => {
            tracing::warn!(client.addr = %peer, code = err.sqlstate(), reason = %err.message(),
                "client refused at startup");
            match &err {
                ClientError::NoIdentity(_, reason) => metrics.attempt(identity_attempt(reason)),
                ClientError::CertificateExpired => metrics.attempt(Attempt::CertificateRefused(
                    pgcordon_metrics::CertificateRefusal::Expired,
                )),
                ClientError::ProtectedStartupOption(_) => {
                    metrics.statement_refused(StatementRefusal::StartupOption)
                }
                _ => {}
            }
            audit_refused(shared, conn_id, peer, None, startup_refusal_reason(&err));
            out.clear();
            err.write_fatal(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let _claim = match crate::listener::claim_identity(shared, &ctx.identity) {
        Ok(claim) => claim,
        Err(err) => {
            tracing::warn!(client.addr = %peer, identity = %ctx.identity,
                "client refused: too many sessions for this identity");
            metrics.limit_reached(Limit::ConnectionsPerIdentity);
            let identity = Some(ctx.identity.clone());
            audit_refused(shared, conn_id, peer, identity, "identity_limit");
            shared.cancels.unregister(ctx.cancel_key);
            out.clear();
            err.write_fatal(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    metrics.attempt(Attempt::Accepted);
    shared.obs.audit.connection_accepted(ConnectionAccepted {
        conn: conn_id,
        client_addr: peer,
        identity: ctx.identity.clone(),
        serial: ctx.serial.clone(),
        fingerprint_sha256: ctx.fingerprint.clone(),
        tls_version: Cow::Owned(tls_version),
        cipher: Cow::Owned(cipher),
    });
    tracing::Span::current().record("identity", &*ctx.identity);
    tracing::Span::current().record("db", settings.client_database.as_str());
    tracing::debug!("client authenticated");
    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    gauge.set(ClientState::Idle);

    let identity = ctx.identity.clone();
    let mut session = Session {
        shared,
        conn_id,
        client: stream,
        client_in: leftover,
        client_out: BytesMut::with_capacity(16 * 1024),
        identity: ctx.identity,
        desired: ctx.desired,
        backend: None,
        skip_until_sync: false,
        statements: ClientStatements::default(),
        resets_identity: false,
        cancel_slot: ctx.cancel_slot,
        gauge,
        phase: shared.phase.subscribe(),
        stats: ConnStats::default(),
        acquire_wait: std::time::Duration::ZERO,
        ended_tx: None,
        replay: BytesMut::new(),
        replay_ok: true,
        force_primary: false,
        write_lsn: None,
        pending_lsn: None,
        pinned: None,
        pending_sets: Vec::new(),
        pending_reset_all: false,
    };
    let end = session.run().await;
    let stats = session.finish(end).await;
    shared.cancels.unregister(ctx.cancel_key);
    shared.obs.audit.connection_closed(ConnectionClosed {
        conn: conn_id,
        client_addr: peer,
        identity,
        duration: started.elapsed(),
        transactions: stats.transactions,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
    });
}

/// Accounts for a connection that ended in its handshake; returns whether it counted as a
/// connection attempt.
fn refused_in_handshake(
    shared: &Shared,
    conn_id: u64,
    peer: SocketAddr,
    e: &HandshakeError,
) -> bool {
    let Some(attempt) = handshake_attempt(e) else {
        tracing::debug!(client.addr = %peer, reason = e.reason(), "closed before TLS");
        return false;
    };
    tracing::warn!(client.addr = %peer, reason = e.reason(), error = %e, "connection refused");
    shared.obs.metrics.attempt(attempt);
    audit_refused(shared, conn_id, peer, None, e.reason());
    true
}

fn audit_refused(
    shared: &Shared,
    conn_id: u64,
    peer: SocketAddr,
    identity: Option<Arc<str>>,
    reason: &'static str,
) {
    shared.obs.audit.connection_refused(ConnectionRefused {
        conn: conn_id,
        client_addr: peer,
        reason: Cow::Borrowed(reason),
        identity,
    });
}
