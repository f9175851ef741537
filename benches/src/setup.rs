//! Setting up what a benchmark measures: pgcordon in-process on its own runtime, and
//! tokio-postgres clients over rustls, directly to PostgreSQL or through pgcordon.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::oneshot;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Transaction pooling, the mode pgcordon is built for; one client needs one server connection.
pub const POOL_YAML: &str = "  mode: transaction\n  size: 4\n  min_idle: 1\n  acquire_timeout: 2s";

/// pgcordon serving a configuration file on a multi-threaded runtime of its own (as
/// `pgcordon run` does in its own process). Dropping it stops the proxy and its runtime.
pub struct ProxyHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProxyHandle {
    /// Loads `config_path`, builds the proxy, binds, warms the pool and serves; the same steps
    /// as the end-to-end harness and `pgcordon run`.
    ///
    /// # Errors
    /// The configuration, the settings, the bind or the pool warm-up fails.
    pub fn start(config_path: &Path) -> anyhow::Result<ProxyHandle> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("pgcordon")
            .build()
            .context("starting pgcordon's runtime")?;
        let (addr, shutdown) = runtime.block_on(async {
            let config = pgcordon_config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let settings = pgcordon_proxy::ProxySettings::from_config(&config)?;
            let proxy =
                pgcordon_proxy::Proxy::new(settings, pgcordon_proxy::Observability::detached())?;
            let bound = proxy.bind().await?;
            let addr = *bound
                .local_addrs()
                .first()
                .context("pgcordon bound no address")?;
            bound
                .pool()
                .warm_up()
                .await
                .map_err(|e| anyhow::anyhow!("warming up the pool: {e}"))?;
            let (tx, rx) = oneshot::channel::<()>();
            tokio::spawn(bound.run(async move {
                let _ = rx.await;
            }));
            anyhow::Ok((addr, tx))
        })?;
        Ok(ProxyHandle {
            addr,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A rustls client configuration (ring) trusting `ca`, presenting `cert` (certificate and key
/// files) when given.
///
/// # Errors
/// A file cannot be loaded or holds no usable certificate or key.
pub fn client_tls(
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pgcordon_tls::load_certs(ca)? {
        roots.add(c)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match cert {
        Some((cert, key)) => builder.with_client_auth_cert(
            pgcordon_tls::load_certs(cert)?,
            pgcordon_tls::load_private_key(key)?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// Connection settings for 127.0.0.1:`port`, verifying the server as `localhost`.
pub fn pg_config(port: u16, user: &str, dbname: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .port(port)
        .user(user)
        .dbname(dbname)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    config
}

/// Connects and drives the connection on the current runtime.
///
/// # Errors
/// The connection, TLS or authentication fails.
pub async fn connect(
    config: &tokio_postgres::Config,
    tls: rustls::ClientConfig,
) -> anyhow::Result<Client> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection ended: {e}");
        }
    });
    Ok(client)
}

/// Where a round trip goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Straight to PostgreSQL over TLS with SCRAM.
    Direct,
    /// Through pgcordon over mTLS.
    Pgcordon,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Direct, Target::Pgcordon];

    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgcordon => "pgcordon",
        }
    }
}

/// How `SELECT 1` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Simple query protocol: one Query message.
    Simple,
    /// Extended protocol with an unnamed statement: Parse, Bind, Describe, Execute, Sync.
    Typed,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Simple, Mode::Typed];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Simple => "simple_query",
            Mode::Typed => "query_typed",
        }
    }
}

/// Runs `SELECT 1` once; returns its round-trip time in nanoseconds. The answer is checked
/// after the clock stops, so a round trip that did not return the row `1` is an error, not a
/// sample.
///
/// # Errors
/// The query fails or returns something other than one row holding 1.
pub async fn round_trip(client: &Client, mode: Mode) -> anyhow::Result<u64> {
    match mode {
        Mode::Simple => {
            let start = Instant::now();
            let messages = client.simple_query("SELECT 1").await?;
            let elapsed = start.elapsed();
            let values: Vec<Option<&str>> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(row.get(0)),
                    _ => None,
                })
                .collect();
            if values != [Some("1")] {
                bail!("simple_query(SELECT 1) returned {values:?}");
            }
            Ok(nanos(elapsed))
        }
        Mode::Typed => {
            let start = Instant::now();
            let rows = client.query_typed("SELECT 1", &[]).await?;
            let elapsed = start.elapsed();
            let values: Vec<i32> = rows.iter().map(|r| r.get::<_, i32>(0)).collect();
            if values != [1] {
                bail!("query_typed(SELECT 1) returned {values:?}");
            }
            Ok(nanos(elapsed))
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The first column of the first row of a simple query, as text.
///
/// # Errors
/// The query fails or returns no row.
pub async fn scalar(client: &Client, sql: &str) -> anyhow::Result<Option<String>> {
    let messages = client.simple_query(sql).await?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .with_context(|| format!("{sql}: no row"))
}
