//! A warm pool of authenticated upstream sessions, built on deadpool.
//!
//! deadpool brings the bounded slot accounting, the wait queue and the acquire timeout; this
//! crate adds what a database pooler needs on top: a minimum of warm idle sessions opened at start
//! and kept, a server lifetime and an idle timeout enforced by a maintenance task, and a liveness
//! probe at checkout so that sessions the server closed while idle (a restart, an administrator's
//! `pg_terminate_backend`) are replaced instead of handed out. Each pooled session carries the
//! state the proxy needs to reuse it safely: the identity its settings hold and the values of the
//! parameters the server reported.
//!
//! It does not forward messages or decide transaction boundaries; the proxy does.

mod manager;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Object, PoolError, QueueMode, Timeouts};
use pgcordon_upstream::{Backend, UpstreamError, UpstreamSettings};

pub use manager::{BackendManager, OpenObserver};

/// Pool sizing and lifetimes.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub min_idle: usize,
    pub acquire_timeout: Duration,
    pub server_lifetime: Duration,
    pub idle_timeout: Duration,
}

/// One pooled upstream session and what the proxy knows about its state.
#[derive(Debug)]
pub struct PooledBackend {
    pub backend: Backend,
    /// The identity its protected settings hold; `None` is the neutral (unset) value.
    pub identity: Option<Arc<str>>,
    /// Current values of server-reported parameters (ParameterStatus).
    pub params: BTreeMap<String, String>,
    /// Statements prepared on this session by pgcordon (backend name to last-use tick), for the
    /// proxy's per-session statement cache.
    pub prepared: std::collections::HashMap<String, u64>,
    /// Set when the session can no longer be trusted (I/O error, protocol error, unknown state);
    /// a broken session is never handed out again.
    pub broken: bool,
}

impl PooledBackend {
    fn new(backend: Backend) -> PooledBackend {
        let params = backend.params.iter().cloned().collect();
        PooledBackend {
            backend,
            identity: None,
            params,
            prepared: Default::default(),
            broken: false,
        }
    }
}

/// A checked-out session; dropping it returns it to the pool (or discards it if broken).
pub type Checkout = Object<BackendManager>;

/// Why no session could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("no upstream session became free within {0:?}")]
    Timeout(Duration),
    #[error("opening an upstream session failed: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("the pool is closed")]
    Closed,
}

/// Counts for metrics and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// The pool of one upstream target.
#[derive(Clone)]
pub struct BackendPool {
    inner: managed::Pool<BackendManager>,
    settings: Arc<PoolSettings>,
}

impl BackendPool {
    /// Builds the pool; opens nothing yet (see [`BackendPool::warm_up`]).
    ///
    /// # Errors
    /// A size of zero.
    pub fn new(
        upstream: UpstreamSettings,
        settings: PoolSettings,
    ) -> Result<BackendPool, managed::BuildError> {
        let manager = BackendManager::new(upstream, &settings);
        let inner = managed::Pool::builder(manager)
            .max_size(settings.size)
            // Most recently used first: keeps a few sessions hot instead of cycling all of them,
            // and lets idle ones age out.
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .build()?;
        Ok(BackendPool {
            inner,
            settings: Arc::new(settings),
        })
    }

    /// Takes a session, waiting at most the configured acquire timeout.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] when every session stayed busy, [`AcquireError::Upstream`] when
    /// a new one could not be opened.
    pub async fn acquire(&self) -> Result<Checkout, AcquireError> {
        // The acquire timeout bounds waiting for a free slot. Opening a new session is bounded
        // by the upstream connect timeout instead (the connector applies it): cutting a TLS and
        // SCRAM exchange short at the acquire timeout would throw away the session half made,
        // and a pool whose sessions take longer to open than that would never get one.
        let wait = self.settings.acquire_timeout;
        let timeouts = Timeouts {
            wait: Some(wait),
            create: None,
            recycle: Some(wait),
        };
        match self.inner.timeout_get(&timeouts).await {
            Ok(checkout) => Ok(checkout),
            Err(PoolError::Backend(e)) => Err(AcquireError::Upstream(e)),
            Err(PoolError::Closed) => Err(AcquireError::Closed),
            Err(_) => Err(AcquireError::Timeout(wait)),
        }
    }

    /// Removes a session from the pool for good (it is closed when dropped).
    pub fn discard(checkout: Checkout) {
        drop(Object::take(checkout));
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.inner.status();
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    /// The upstream settings new sessions are opened with.
    pub fn upstream(&self) -> Arc<UpstreamSettings> {
        self.inner.manager().upstream()
    }

    /// Replaces the upstream settings (TLS material) for sessions opened from now on.
    pub fn set_upstream(&self, upstream: UpstreamSettings) {
        self.inner.manager().set_upstream(upstream);
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Reports every attempt to open a session, and every idle session the maintenance task
    /// finds alive, to `observer` (metrics, readiness). Returns `false`, and changes nothing,
    /// if an observer is already installed.
    pub fn observe_opens(&self, observer: OpenObserver) -> bool {
        self.inner.manager().observe(observer)
    }

    /// Opens sessions until `min_idle` are idle (bounded by the pool size).
    ///
    /// # Errors
    /// The first upstream error; sessions opened before it stay in the pool.
    pub async fn warm_up(&self) -> Result<usize, AcquireError> {
        let status = self.status();
        let missing = self.settings.min_idle.saturating_sub(status.idle);
        let room = status.max_size.saturating_sub(status.size);
        let want = missing.min(room);
        if want == 0 {
            return Ok(0);
        }
        // Hold them all at once, so each get opens a new session instead of reusing the last.
        let gets = (0..want).map(|_| self.acquire());
        let results = futures_util::future::join_all(gets).await;
        let mut opened = 0;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(_) => opened += 1,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) if opened == 0 => Err(e),
            _ => Ok(opened),
        }
    }

    /// Drops idle sessions past their lifetime or idle timeout (keeping `min_idle`), warms the
    /// pool back up, then probes the upstream (see [`BackendPool::probe`]). Called
    /// periodically by [`BackendPool::spawn_maintenance`].
    pub async fn maintain(&self) {
        let lifetime = self.settings.server_lifetime;
        let idle_timeout = self.settings.idle_timeout;
        let keep_at_least = self.settings.min_idle;
        let kept = std::sync::atomic::AtomicUsize::new(0);
        self.inner.retain(|backend, metrics| {
            let expired = metrics.age() > lifetime || backend.broken;
            let idle_too_long = metrics.last_used() > idle_timeout;
            let keep = !expired
                && (!idle_too_long
                    || kept.load(std::sync::atomic::Ordering::Relaxed) < keep_at_least);
            if keep {
                kept.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            keep
        });
        match self.warm_up().await {
            Ok(0) => self.probe().await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not re-open idle upstream sessions"),
        }
    }

    /// Checks that the upstream still serves this pool, without waiting for a busy slot: takes
    /// an idle session (the checkout's liveness check drops the ones the server closed, and
    /// opens a new one when none is left) and returns it at once. With no idle session, it
    /// opens one only if the latest opening failed, so that a pool that could not log in finds
    /// out when the server takes logins again, without client traffic. The outcome reaches the
    /// observer.
    pub async fn probe(&self) {
        let status = self.status();
        if status.idle == 0 && !self.inner.manager().failing() {
            return;
        }
        let timeouts = Timeouts {
            wait: Some(Duration::ZERO),
            create: None,
            recycle: Some(self.settings.acquire_timeout),
        };
        match self.inner.timeout_get(&timeouts).await {
            // Opening a new session was reported already; a reused one is reported here.
            Ok(checkout) => {
                if status.idle > 0 {
                    self.inner.manager().report(Ok(()));
                }
                drop(checkout);
            }
            Err(PoolError::Backend(e)) => {
                tracing::warn!(error = %e, "upstream probe: cannot open a session");
            }
            Err(_) => {}
        }
    }

    /// Runs [`BackendPool::maintain`] every `every` until the pool is closed.
    pub fn spawn_maintenance(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let pool = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !pool.inner.is_closed() {
                tick.tick().await;
                pool.maintain().await;
            }
        })
    }

    /// Stops handing out sessions and closes the idle ones.
    pub fn close(&self) {
        self.inner.close();
    }
}
