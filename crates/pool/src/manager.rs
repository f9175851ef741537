//! The deadpool manager: how a pooled session is opened and checked before reuse.

use std::time::Duration;

use bytes::BytesMut;
use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use futures_util::FutureExt;
use pgcordon_upstream::{connect, UpstreamError, UpstreamSettings};
use tokio::io::AsyncReadExt;

use crate::{PoolSettings, PooledBackend};

/// Opens sessions with the upstream settings and vets idle ones before reuse.
pub struct BackendManager {
    upstream: UpstreamSettings,
    server_lifetime: Duration,
}

impl BackendManager {
    pub(crate) fn new(upstream: UpstreamSettings, settings: &PoolSettings) -> BackendManager {
        BackendManager {
            upstream,
            server_lifetime: settings.server_lifetime,
        }
    }

    pub fn upstream(&self) -> &UpstreamSettings {
        &self.upstream
    }
}

impl Manager for BackendManager {
    type Type = PooledBackend;
    type Error = UpstreamError;

    async fn create(&self) -> Result<PooledBackend, UpstreamError> {
        let backend = connect(&self.upstream).await?;
        tracing::debug!(
            upstream = %backend.addr,
            pid = backend.process_id,
            channel_binding = backend.channel_bound,
            "upstream session opened"
        );
        Ok(PooledBackend::new(backend))
    }

    async fn recycle(
        &self,
        obj: &mut PooledBackend,
        metrics: &Metrics,
    ) -> RecycleResult<Self::Error> {
        if obj.broken {
            return Err(RecycleError::message("session marked broken"));
        }
        if metrics.age() > self.server_lifetime {
            return Err(RecycleError::message("session past its lifetime"));
        }
        if !obj.backend.read_buf.is_empty() {
            return Err(RecycleError::message("session has unread server data"));
        }
        // An idle session has nothing to say. Data or end-of-stream now means the server is
        // closing it (restart, pg_terminate_backend, idle_session_timeout).
        let mut probe = BytesMut::with_capacity(64);
        match obj.backend.stream.read_buf(&mut probe).now_or_never() {
            None => Ok(()),
            Some(Ok(0)) => Err(RecycleError::message("server closed the session")),
            Some(Ok(_)) => Err(RecycleError::message("server sent data to an idle session")),
            Some(Err(e)) => Err(RecycleError::message(format!("session I/O error: {e}"))),
        }
    }
}
