//! The admin listener: accept loop, connection limit and shutdown.
//!
//! Owns [`AdminServer`]. Connections are served with hyper's HTTP/1.1 server under a header
//! read timeout and a cap on concurrent connections, so a slow or hostile peer on the admin
//! network can hold at most a few sockets and never delays the data path (the admin server
//! runs on its own tasks and shares only atomics with it). It does not choose the address.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pgcordon_metrics::Metrics;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::AdminError;
use crate::readiness::ReadinessCheck;
use crate::routes::{respond, AdminState};

/// Concurrent admin connections: a kubelet's two probes and a Prometheus or two need a handful;
/// the cap keeps a flood from costing more than a few sockets.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client has to send a request's headers; probes and scrapes send them at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Read buffer per connection: admin requests are a request line and a few headers.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// The bound admin listener, ready to [`AdminServer::serve`].
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AdminState>,
    max_connections: usize,
}

impl AdminServer {
    /// Binds `address` (port 0 picks a free port; see [`AdminServer::local_addr`]).
    ///
    /// # Errors
    /// [`AdminError::Bind`] if the address cannot be bound, [`AdminError::LocalAddr`] if the
    /// bound socket cannot report its address.
    pub async fn bind(
        address: SocketAddr,
        metrics: Arc<Metrics>,
        readiness: Arc<dyn ReadinessCheck>,
    ) -> Result<AdminServer, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind { address, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| AdminError::LocalAddr { address, source })?;
        Ok(AdminServer {
            listener,
            local_addr,
            state: Arc::new(AdminState { metrics, readiness }),
            max_connections: MAX_CONNECTIONS,
        })
    }

    /// Lowers or raises the connection cap (default [`MAX_CONNECTIONS`], at least 1);
    /// connections over it are closed at once.
    pub fn with_max_connections(mut self, max: usize) -> AdminServer {
        self.max_connections = max.max(1);
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting, ends open admin connections
    /// and closes the socket. Keep it running while draining, so that `/readyz` can say so.
    pub async fn serve<F>(self, shutdown: F)
    where
        F: Future<Output = ()>,
    {
        tracing::info!(address = %self.local_addr, "admin listener serving /metrics, /healthz, /readyz");
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
                // Reap finished connection tasks so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "admin listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "admin connection refused: too many open");
                continue;
            };
            let state = self.state.clone();
            connections.spawn(async move {
                serve_connection(stream, state).await;
                drop(permit);
            });
        }
        connections.shutdown().await;
        tracing::info!(address = %self.local_addr, "admin listener stopped");
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<AdminState>) {
    let service = service_fn(move |request| {
        let response = respond(&state, &request);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}
