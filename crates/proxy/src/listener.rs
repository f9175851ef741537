//! Binding the client listeners and accepting connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgcordon_pool::BackendPool;
use pgcordon_sql::Guard;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OnceCell, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::backend_io::simple_query;
use crate::params::{ServerDefaults, UNREPORTED};
use crate::session;
use crate::settings::{ProxySettings, SettingsError};
use crate::ClientError;

/// State shared by every client session of one proxy.
pub(crate) struct Shared {
    pub(crate) settings: ProxySettings,
    pub(crate) pool: BackendPool,
    pub(crate) guard: Guard,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) cancels: crate::cancel::CancelRegistry,
    defaults: OnceCell<Arc<ServerDefaults>>,
    next_conn_id: AtomicU64,
}

impl Shared {
    /// What a fresh backend session reports, learned once from a pooled session.
    pub(crate) async fn defaults(&self) -> Result<Arc<ServerDefaults>, ClientError> {
        self.defaults
            .get_or_try_init(|| async {
                let mut checkout = self.pool.acquire().await.map_err(|e| {
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
    /// Builds the pool and the guard from `settings`.
    ///
    /// # Errors
    /// Invalid pool or guard settings.
    pub fn new(settings: ProxySettings) -> Result<Proxy, SettingsError> {
        let pool = BackendPool::new(settings.upstream.clone(), settings.pool.clone())
            .map_err(|e| SettingsError::Pool(e.to_string()))?;
        let guard = Guard::new(&settings.protected_settings)
            .map_err(|e| SettingsError::Guard(e.to_string()))?;
        let acceptor = TlsAcceptor::from(settings.tls.clone());
        let shared = Shared {
            settings,
            pool,
            guard,
            acceptor,
            cancels: Default::default(),
            defaults: OnceCell::new(),
            next_conn_id: AtomicU64::new(1),
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }

    /// The backend pool, for warm-up and status.
    pub fn pool(&self) -> &BackendPool {
        &self.shared.pool
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

    pub fn pool(&self) -> &BackendPool {
        &self.shared.pool
    }

    /// Accepts clients until `shutdown` completes, then stops accepting. Sessions already running
    /// continue on their own tasks.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.shared.settings.max_client_connections));
        let maintenance = self
            .shared
            .pool
            .spawn_maintenance(maintenance_period(&self.shared));
        let mut accepts = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let shared = self.shared.clone();
            let limit = limit.clone();
            accepts.spawn(accept_loop(listener, shared, limit));
        }
        for addr in &self.shared.settings.listen {
            tracing::info!(%addr, "listening");
        }
        shutdown.await;
        accepts.abort_all();
        maintenance.abort();
        tracing::info!("stopped accepting connections");
    }
}

fn maintenance_period(shared: &Shared) -> std::time::Duration {
    let idle = shared.settings.pool.idle_timeout / 4;
    idle.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    )
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
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
            tracing::warn!(client.addr = %peer, "connection refused: max_client_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", conn.id = conn_id, client.addr = %peer,
            identity = tracing::field::Empty, db = tracing::field::Empty);
        let shared = shared.clone();
        tokio::spawn(
            async move {
                serve(tcp, peer, shared).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    session::serve(tcp, peer, &shared).await;
}
