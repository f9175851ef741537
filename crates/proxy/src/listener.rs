//! Binding the client listeners and accepting connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pgcordon_admin::ReadinessFlags;
use pgcordon_metrics::{Limit, PoolStats, TargetMetrics, TargetRole};
use pgcordon_pool::BackendPool;
use pgcordon_sql::Guard;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument;

use crate::backend_io::simple_query;
use crate::handshake::Opening;
use crate::observe::{upstream_failure, Observability};
use crate::params::{ServerDefaults, UNREPORTED};
use crate::route::Router;
use crate::session;
use crate::settings::{ProxySettings, SettingsError};
use crate::ClientError;
use pgcordon_routing::{TargetSpec, Targets};

/// Where a running proxy is in its life: sessions watch this to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stop accepting; sessions end between transactions.
    Draining,
    /// The drain timeout passed: sessions end now, open transactions roll back.
    Closing,
}

/// State shared by every client session of one proxy.
pub(crate) struct Shared {
    pub(crate) settings: ProxySettings,
    /// The primary and replicas, their pools and health, and the routing decision.
    pub(crate) router: Router,
    /// Metrics of each target, by target index (0 is the primary).
    pub(crate) target_metrics: Vec<Arc<TargetMetrics>>,
    pub(crate) guard: Guard,
    /// The server TLS configuration; replaced on reload, each handshake takes the current one.
    pub(crate) tls: ArcSwap<rustls::ServerConfig>,
    pub(crate) obs: Observability,
    /// Target names for the audit trail, by target index.
    pub(crate) target_names: Vec<Arc<str>>,
    pub(crate) phase: watch::Sender<Phase>,
    /// Open sessions per identity, for `limits.max_connections_per_identity`.
    per_identity: std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>,
    pub(crate) cancels: crate::cancel::CancelRegistry,
    defaults: OnceCell<Arc<ServerDefaults>>,
    next_conn_id: AtomicU64,
}

/// A client's claim on its identity's connection budget; released on drop.
pub(crate) struct IdentityClaim {
    shared: Arc<Shared>,
    identity: Arc<str>,
}

impl Drop for IdentityClaim {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.shared.per_identity.lock() {
            if let Some(n) = counts.get_mut(&self.identity) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.identity);
                }
            }
        }
    }
}

/// Claims one session of `identity` within `limits.max_connections_per_identity`.
pub(crate) fn claim_identity(
    shared: &Arc<Shared>,
    identity: &Arc<str>,
) -> Result<Option<IdentityClaim>, ClientError> {
    let Some(max) = shared.settings.limits.max_connections_per_identity else {
        return Ok(None);
    };
    let mut counts = shared
        .per_identity
        .lock()
        .map_err(|_| ClientError::TooManyForIdentity)?;
    let n = counts.entry(identity.clone()).or_insert(0);
    if *n >= max {
        return Err(ClientError::TooManyForIdentity);
    }
    *n += 1;
    Ok(Some(IdentityClaim {
        shared: shared.clone(),
        identity: identity.clone(),
    }))
}

impl Shared {
    /// The server defaults, once learned (at the first client's startup).
    pub(crate) fn defaults_now(&self) -> Option<Arc<ServerDefaults>> {
        self.defaults.get().cloned()
    }

    /// The primary's pool.
    pub(crate) fn pool(&self) -> &BackendPool {
        self.router.targets.primary().pool()
    }

    /// The pool of target `index` (0 is the primary).
    pub(crate) fn target_pool(&self, index: usize) -> &BackendPool {
        match index
            .checked_sub(1)
            .and_then(|i| self.router.targets.replicas().get(i))
        {
            Some(replica) => replica.pool(),
            None => self.pool(),
        }
    }

    /// What a fresh backend session reports, learned once from a pooled session.
    pub(crate) async fn defaults(&self) -> Result<Arc<ServerDefaults>, ClientError> {
        self.defaults
            .get_or_try_init(|| async {
                let mut checkout = self.pool().acquire().await.map_err(|e| {
                    tracing::error!(error = %e, "cannot reach the upstream database");
                    ClientError::UpstreamUnavailable
                })?;
                let mut params = checkout.params.clone();
                let sql = "SELECT pg_catalog.current_setting('extra_float_digits'), \
                           pg_catalog.current_setting('search_path')";
                match simple_query(&mut checkout, sql).await {
                    Ok(row) => {
                        for (name, value) in UNREPORTED.iter().zip(row) {
                            params.insert(name.to_string(), value.unwrap_or_default());
                        }
                        checkout.params = params.clone();
                    }
                    Err(e) => {
                        checkout.broken = true;
                        tracing::error!(error = %e, "cannot read upstream defaults");
                        return Err(ClientError::UpstreamUnavailable);
                    }
                }
                Ok(Arc::new(ServerDefaults { params }))
            })
            .await
            .cloned()
    }
}

/// A configured proxy, not yet listening.
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Builds the pool and the guard from `settings`; reports through `obs`.
    ///
    /// # Errors
    /// Invalid pool or guard settings.
    pub fn new(settings: ProxySettings, obs: Observability) -> Result<Proxy, SettingsError> {
        let guard = Guard::with_policy(&settings.protected_settings, settings.guard_policy)
            .map_err(|e| SettingsError::Guard(e.to_string()))?;
        let primary = TargetSpec {
            name: "primary".into(),
            upstream: settings.upstream.clone(),
            pool: settings.pool.clone(),
        };
        let replicas = settings
            .replicas
            .iter()
            .map(|r| TargetSpec {
                name: r.name.clone(),
                upstream: r.upstream.clone(),
                pool: settings.pool.clone(),
            })
            .collect();
        let targets = Targets::new(primary, replicas, settings.routing_checks.clone())
            .map_err(|e| SettingsError::Pool(e.to_string()))?;
        let mut target_metrics = Vec::new();
        for (i, t) in std::iter::once(targets.primary())
            .chain(targets.replicas())
            .enumerate()
        {
            let role = if i == 0 {
                TargetRole::Primary
            } else {
                TargetRole::Replica
            };
            let m = obs
                .metrics
                .target(t.name(), role)
                .map_err(|e| SettingsError::Pool(e.to_string()))?;
            let status_pool = t.pool().clone();
            obs.metrics.set_pool_source(&m, move || {
                let s = status_pool.status();
                PoolStats {
                    idle: s.idle as u64,
                    active: s.size.saturating_sub(s.idle) as u64,
                    max: s.max_size as u64,
                    waiting: s.waiting as u64,
                }
            });
            t.pool()
                .observe_opens(open_observer(&m, (i == 0).then(|| obs.readiness.clone())));
            target_metrics.push(m);
        }
        let target_names = std::iter::once(targets.primary())
            .chain(targets.replicas())
            .map(|t| Arc::from(t.name()))
            .collect();
        let router = Router::new(targets, settings.routing.clone());
        let tls = ArcSwap::new(settings.tls.clone());
        let shared = Shared {
            settings,
            router,
            target_metrics,
            guard,
            tls,
            obs,
            target_names,
            phase: watch::Sender::new(Phase::Running),
            per_identity: Default::default(),
            cancels: Default::default(),
            defaults: OnceCell::new(),
            next_conn_id: AtomicU64::new(1),
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }

    /// The primary's backend pool, for warm-up and status.
    pub fn pool(&self) -> &BackendPool {
        self.shared.pool()
    }

    /// Binds every configured address.
    ///
    /// # Errors
    /// The first address that cannot be bound.
    pub async fn bind(self) -> Result<BoundProxy, SettingsError> {
        let mut listeners = Vec::new();
        for addr in &self.shared.settings.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SettingsError::Bind {
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        Ok(BoundProxy {
            shared: self.shared,
            listeners,
        })
    }
}

/// A proxy with its listeners bound.
pub struct BoundProxy {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
}

impl BoundProxy {
    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The primary's backend pool.
    pub fn pool(&self) -> &BackendPool {
        self.shared.pool()
    }

    /// A handle that reloads TLS material while the proxy runs.
    pub fn reloader(&self) -> crate::reload::Reloader {
        crate::reload::Reloader::new(self.shared.clone())
    }

    /// Accepts clients until `shutdown` completes, then drains: no new connections, readiness
    /// off, sessions end between transactions; after `drain_timeout` the remaining sessions are
    /// ended (their open transactions roll back). Returns when every session has ended.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let max = self.shared.settings.max_client_connections;
        let limit = Arc::new(Semaphore::new(max));
        let period = maintenance_period(&self.shared);
        let targets = &self.shared.router.targets;
        let mut background: Vec<_> = std::iter::once(targets.primary())
            .chain(targets.replicas())
            .map(|t| t.pool().spawn_maintenance(period))
            .collect();
        if !targets.replicas().is_empty() {
            background.push(targets.spawn_health_checks());
            background.push(spawn_health_metrics(self.shared.clone()));
        }
        let mut accepts = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let shared = self.shared.clone();
            let limit = limit.clone();
            accepts.spawn(accept_loop(listener, shared, limit));
        }
        for addr in &self.shared.settings.listen {
            tracing::info!(%addr, "listening");
        }
        self.shared.obs.readiness.set_listeners_bound(true);
        shutdown.await;

        accepts.abort_all();
        self.shared.obs.readiness.start_draining();
        let _ = self.shared.phase.send(Phase::Draining);
        let sessions = |l: &Semaphore| max - l.available_permits();
        tracing::info!(sessions = sessions(&limit), "draining: no new connections");
        let drain = self.shared.settings.drain_timeout;
        let drained = tokio::time::timeout(drain, wait_for_sessions(&limit, max)).await;
        if drained.is_err() {
            tracing::warn!(
                sessions = sessions(&limit),
                ?drain,
                "drain timeout passed; ending the remaining sessions"
            );
            let _ = self.shared.phase.send(Phase::Closing);
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                wait_for_sessions(&limit, max),
            )
            .await;
        }
        for task in background {
            task.abort();
        }
        self.shared.router.targets.close();
        tracing::info!("stopped");
    }
}

/// Copies each replica's health into its gauges after every check period.
fn spawn_health_metrics(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(shared.router.targets.settings().check_interval);
        loop {
            tick.tick().await;
            for (i, replica) in shared.router.targets.replicas().iter().enumerate() {
                let health = replica.health();
                let m = &shared.target_metrics[i + 1];
                m.set_healthy(health.is_healthy());
                m.set_lag(
                    health.lag_bytes.unwrap_or(0),
                    health.lag_seconds.unwrap_or(0.0),
                );
            }
        }
    })
}

async fn wait_for_sessions(limit: &Semaphore, max: usize) {
    while limit.available_permits() < max {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Counts every failed backend login of a target, whatever it was for (a client transaction,
/// a client's startup, a warm-up, the maintenance task); for the primary, also keeps the
/// readiness flag in step with the latest outcome.
fn open_observer(
    target: &Arc<TargetMetrics>,
    primary: Option<Arc<ReadinessFlags>>,
) -> pgcordon_pool::OpenObserver {
    let target = target.clone();
    Arc::new(move |outcome| {
        if let Err(e) = outcome {
            upstream_failure(&target, e);
        }
        if let Some(readiness) = &primary {
            readiness.set_primary_reachable(outcome.is_ok());
        }
    })
}

fn maintenance_period(shared: &Shared) -> std::time::Duration {
    let idle = shared.settings.pool.idle_timeout / 4;
    idle.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    )
}

/// Connections refused for being over the limit are still told why (after TLS, as the server
/// does), but only this many at once; beyond that they are closed without a word.
const MAX_CONCURRENT_REFUSALS: usize = 64;

fn refuse_over_limit(tcp: tokio::net::TcpStream, shared: &Arc<Shared>, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        shared
            .obs
            .metrics
            .limit_reached(Limit::MaxClientConnections);
        tracing::debug!("over the connection limit and too many refusals under way: closed");
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.load_full());
        let timeout = shared.settings.handshake_timeout;
        let established =
            tokio::time::timeout(timeout, crate::handshake::establish(tcp, &acceptor));
        match established.await {
            Ok(Ok(Opening::Client(mut e))) => {
                shared
                    .obs
                    .metrics
                    .limit_reached(Limit::MaxClientConnections);
                let mut out = bytes::BytesMut::new();
                ClientError::TooManyConnections.write_fatal(&mut out);
                let _ = tokio::io::AsyncWriteExt::write_all(&mut e.stream, &out).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut e.stream).await;
            }
            // A cancel takes no client slot: serve it even when the sessions are full.
            Ok(Ok(Opening::Cancel(request))) => crate::cancel::answer(&shared, request).await,
            _ => {}
        }
        drop(permit);
    });
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    let refusals = Arc::new(Semaphore::new(MAX_CONCURRENT_REFUSALS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(client.addr = %peer,
                "connection refused: max_client_connections reached");
            refuse_over_limit(tcp, &shared, &refusals);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", conn.id = conn_id, client.addr = %peer,
            identity = tracing::field::Empty, db = tracing::field::Empty);
        let shared = shared.clone();
        tokio::spawn(
            async move {
                session::serve(tcp, peer, &shared, conn_id).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}
