//! The deadpool manager: how a pooled session is opened and checked before reuse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use futures_util::FutureExt;
use pgcordon_upstream::{connect, UpstreamError, UpstreamSettings};
use tokio::io::AsyncReadExt;

use crate::{PoolSettings, PooledBackend};

/// Told about every attempt to open a session, whoever asked for it (a client, a warm-up, the
/// maintenance task): `Ok` when the session was opened and authenticated, the error otherwise.
/// The maintenance task also reports `Ok` when it finds an idle session alive.
pub type OpenObserver = Arc<dyn Fn(Result<(), &UpstreamError>) + Send + Sync>;

/// Opens sessions with the upstream settings and vets idle ones before reuse. The settings can
/// be replaced while running (a reloaded CA or client certificate); sessions opened before keep
/// theirs.
pub struct BackendManager {
    upstream: ArcSwap<UpstreamSettings>,
    server_lifetime: Duration,
    observer: OnceLock<OpenObserver>,
    /// Whether the latest attempt to open a session failed.
    failing: AtomicBool,
}

impl BackendManager {
    pub(crate) fn new(upstream: UpstreamSettings, settings: &PoolSettings) -> BackendManager {
        BackendManager {
            upstream: ArcSwap::from_pointee(upstream),
            server_lifetime: settings.server_lifetime,
            observer: OnceLock::new(),
            failing: AtomicBool::new(false),
        }
    }

    /// Installs the observer of session openings; only the first call takes effect.
    pub(crate) fn observe(&self, observer: OpenObserver) -> bool {
        self.observer.set(observer).is_ok()
    }

    pub(crate) fn report(&self, outcome: Result<(), &UpstreamError>) {
        if let Some(observer) = self.observer.get() {
            observer(outcome);
        }
    }

    /// Whether the latest attempt to open a session failed.
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// The settings new sessions are opened with.
    pub fn upstream(&self) -> Arc<UpstreamSettings> {
        self.upstream.load_full()
    }

    /// Replaces the settings for sessions opened from now on.
    pub fn set_upstream(&self, upstream: UpstreamSettings) {
        self.upstream.store(Arc::new(upstream));
    }
}

impl Manager for BackendManager {
    // Boxed: a session with its TLS state is over a kilobyte, and deadpool moves the value on
    // every checkout and return (the profile showed those copies at 1-2% of the proxy's CPU).
    type Type = Box<PooledBackend>;
    type Error = UpstreamError;

    async fn create(&self) -> Result<Box<PooledBackend>, UpstreamError> {
        // Boxed: the connect future (TLS and SCRAM state) is kilobytes, and deadpool's checkout
        // future embeds this one, so unboxed it made every checkout future, and every proxy
        // future awaiting one, 12 KB large, copied and stack-probed on each transaction.
        let opened = Box::pin(connect(&self.upstream.load())).await;
        self.failing.store(opened.is_err(), Ordering::Release);
        self.report(opened.as_ref().map(|_| ()));
        let backend = opened?;
        tracing::debug!(
            upstream = %backend.addr,
            pid = backend.process_id,
            channel_binding = backend.channel_bound,
            "upstream session opened"
        );
        Ok(Box::new(PooledBackend::new(backend)))
    }

    async fn recycle(
        &self,
        obj: &mut Box<PooledBackend>,
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
        let mut probe = [0u8; 64];
        match obj.backend.stream.read(&mut probe).now_or_never() {
            None => Ok(()),
            Some(Ok(0)) => Err(RecycleError::message("server closed the session")),
            Some(Ok(_)) => Err(RecycleError::message("server sent data to an idle session")),
            Some(Err(e)) => Err(RecycleError::message(format!("session I/O error: {e}"))),
        }
    }
}
