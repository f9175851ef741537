//! How a client session ends: the error the client is told, what becomes of the backend
//! session it held, and the statements it queued before Terminate.

use pgcordon_audit::TransactionOutcome;
use pgcordon_metrics::Limit;
use pgcordon_pool::BackendPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::attached::Attached;
use super::{ConnStats, End, Session, TERMINATE_DRAIN};
use crate::backend_io::simple_query;
use crate::errors::ClientError;
use crate::params::UNREPORTED;
use crate::settings::PoolMode;

impl Session<'_> {
    /// Closes the attached backend session (its transaction, if any, was interrupted).
    fn discard_backend(&mut self) {
        if let Some(mut b) = self.backend.take() {
            if let Some(tx) = b.tx.take() {
                self.record_transaction(tx, Some(TransactionOutcome::Interrupted));
            }
            BackendPool::discard(b.checkout);
        }
    }

    pub(super) async fn finish(mut self, end: End) -> ConnStats {
        let error = match end {
            End::ClientGone => None,
            End::Terminated => {
                self.complete_before_terminate().await;
                None
            }
            End::Fatal(err) => {
                if let Some(limit) = limit_of(&err) {
                    self.shared.obs.metrics.limit_reached(limit);
                }
                if matches!(
                    err,
                    ClientError::Protocol(_) | ClientError::FrameTooLarge(_)
                ) {
                    tracing::warn!(code = err.sqlstate(), reason = %err.message(),
                        "client broke the protocol; session closed");
                }
                Some(err)
            }
            End::BackendLost(detail) => {
                tracing::warn!(detail = %detail, "backend session lost while serving the client");
                self.discard_backend();
                Some(ClientError::UpstreamLost(detail))
            }
            End::UnsafeEncoding(encoding) => {
                self.discard_backend();
                Some(ClientError::EncodingChanged(encoding))
            }
        };
        if let Some(tx) = self.backend.as_mut().and_then(|b| b.tx.take()) {
            self.record_transaction(tx, Some(TransactionOutcome::Interrupted));
        }
        if let Some(b) = self.backend.take() {
            self.cancel_slot.clear();
            let slot = self.cancel_slot.clone();
            let shared_mode = self.shared.settings.pool_mode;
            tokio::spawn(async move {
                slot.wait_idle().await;
                release_at_end(shared_mode, b).await;
            });
        }
        if let Some(err) = error {
            // Whatever the backend already answered goes first, then the error.
            err.write(&mut self.client_out);
            let _ = self.client.write_all(&self.client_out).await;
        }
        let _ = self.client.shutdown().await;
        tracing::debug!("client session closed");
        self.stats
    }

    /// Sends what the client queued before Terminate and waits for the server to answer it, as
    /// the server would have processed it; the answers have nowhere to go and are dropped.
    async fn complete_before_terminate(&mut self) {
        let Some(b) = self.backend.as_ref() else {
            return;
        };
        if b.to_backend.is_empty() && b.queue.is_empty() {
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
                if b.queue.is_empty() {
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

/// The limit a session-ending error enforces, if it is one.
fn limit_of(err: &ClientError) -> Option<Limit> {
    match err {
        ClientError::FrameTooLarge(_) => Some(Limit::MaxFrameBytes),
        ClientError::IdleSessionTimeout => Some(Limit::ClientIdleTimeout),
        ClientError::IdleInTransactionTimeout => Some(Limit::IdleInTransactionTimeout),
        _ => None,
    }
}

/// A backend still attached when its client leaves: back to the pool when that is safe,
/// otherwise closed (which rolls back any open transaction).
async fn release_at_end(mode: PoolMode, mut b: Attached) {
    if !b.is_quiescent() {
        BackendPool::discard(b.checkout);
        return;
    }
    if mode == PoolMode::Transaction {
        return; // dropping the checkout returns it to the pool
    }
    // Session pooling: clear everything the client left behind (prepared statements, temporary
    // tables, settings, the identity) before another client gets this session.
    match simple_query(&mut b.checkout, "DISCARD ALL").await {
        Ok(_) => {
            b.checkout.identity = None;
            b.checkout.prepared.clear();
            for name in UNREPORTED {
                b.checkout.params.remove(*name);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not reset a session; closing it");
            BackendPool::discard(b.checkout);
        }
    }
}
