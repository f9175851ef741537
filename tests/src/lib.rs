//! Shared harness for pgcordon's end-to-end tests: a real PostgreSQL 15 primary with TLS and
//! SCRAM (the devkit stack), pgcordon started in-process from a real YAML configuration, and
//! real clients (tokio-postgres over rustls, psql).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pgcordon_devkit::stack::{Stack, TENANT_A, TENANT_B};
use tokio::sync::oneshot;

pub mod drivers_kit;
pub mod fake_upstream;
pub mod hostile;
pub mod ops_kit;
pub mod raw;
pub mod routing_kit;
pub mod tenants;

/// Transaction pooling with a small pool, the default for tests.
pub const POOL_TX: &str = "  mode: transaction\n  size: 5\n  min_idle: 1\n  acquire_timeout: 2s";

/// Which client certificate a test connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
    A,
    B,
}

impl Tenant {
    pub fn id(self) -> &'static str {
        match self {
            Tenant::A => TENANT_A,
            Tenant::B => TENANT_B,
        }
    }
}

/// A running stack and proxy. Dropping it stops both.
pub struct Harness {
    pub stack: Stack,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    /// The proxy's metrics (see [`metric`]) and audit handles.
    pub obs: pgcordon_proxy::Observability,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a stack and pgcordon with the given `pool:` section body.
    pub async fn start(pool_yaml: &str) -> Harness {
        Harness::start_with(pool_yaml, "").await
    }

    /// Starts a stack and pgcordon; `extra` is appended to the configuration.
    pub async fn start_with(pool_yaml: &str, extra: &str) -> Harness {
        init_logging();
        let (dir, stack) = start_stack("pgcordon-e2e").await;
        let listen = Stack::free_listen_addr().expect("free port");
        let config_path = stack
            .write_config(&listen, pool_yaml, extra)
            .expect("write config");
        let running = launch(&config_path).await;
        Harness {
            stack,
            addr: running.addr,
            config_path,
            obs: running.obs,
            shutdown: Some(running.shutdown),
            _dir: dir,
        }
    }

    /// A rustls client configuration presenting `cert`, trusting the stack's CA.
    pub fn client_tls(&self, cert: &(PathBuf, PathBuf)) -> rustls::ClientConfig {
        client_tls(&self.stack.files.ca, Some(cert))
    }

    pub fn tenant_files(&self, tenant: Tenant) -> &(PathBuf, PathBuf) {
        match tenant {
            Tenant::A => &self.stack.files.tenant_a,
            Tenant::B => &self.stack.files.tenant_b,
        }
    }

    /// Connects as `tenant` with tokio-postgres over mTLS.
    pub async fn connect(&self, tenant: Tenant) -> tokio_postgres::Client {
        self.try_connect_with(self.client_tls(self.tenant_files(tenant)), "app")
            .await
            .expect("connect through pgcordon")
    }

    /// Connects with an arbitrary TLS configuration and database name.
    pub async fn try_connect_with(
        &self,
        tls: rustls::ClientConfig,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect_proxy(self.addr, tls, dbname).await
    }

    /// Connects as `tenant` and delivers the server's notifications (LISTEN/NOTIFY) on a channel.
    pub async fn connect_listening(
        &self,
        tenant: Tenant,
    ) -> (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    ) {
        let mut config = tokio_postgres::Config::new();
        config
            .host("localhost")
            .port(self.addr.port())
            .user("api")
            .dbname("app")
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            self.client_tls(self.tenant_files(tenant)),
        );
        let (client, mut connection) = config.connect(tls).await.expect("connect through pgcordon");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        (client, rx)
    }

    /// A libpq connection string for psql as `tenant`, with verify-full.
    pub fn conninfo(&self, tenant: Tenant) -> String {
        let (cert, key) = self.tenant_files(tenant);
        format!(
            "host=localhost port={} dbname=app user=api sslmode=verify-full sslrootcert={} \
             sslcert={} sslkey={}",
            self.addr.port(),
            self.stack.files.ca.display(),
            cert.display(),
            key.display()
        )
    }

    /// Runs SQL as the PostgreSQL superuser directly (not through pgcordon).
    pub fn admin(&self, sql: &str) -> String {
        self.stack.cluster.psql("app", sql).expect("admin SQL")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A pgcordon started in-process, with the handles tests observe it through.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub obs: pgcordon_proxy::Observability,
    pub reloader: pgcordon_proxy::Reloader,
    /// Fire to begin the graceful shutdown (what SIGTERM does in the binary).
    pub shutdown: oneshot::Sender<()>,
    /// Ends when the proxy has drained and stopped.
    pub stopped: tokio::task::JoinHandle<()>,
}

/// Loads `config_path` the way `pgcordon run` does and serves it until shut down.
pub async fn launch(config_path: &std::path::Path) -> RunningProxy {
    let config = pgcordon_config::load(config_path).expect("valid configuration");
    let settings = pgcordon_proxy::ProxySettings::from_config(&config).expect("load settings");
    let obs = pgcordon_proxy::Observability::detached();
    let proxy = pgcordon_proxy::Proxy::new(settings, obs.clone()).expect("build proxy");
    let bound = proxy.bind().await.expect("bind");
    let addr = bound.local_addrs()[0];
    let _ = bound.pool().warm_up().await;
    let reloader = bound.reloader();
    reloader.record_expiry();
    let (tx, rx) = oneshot::channel::<()>();
    let stopped = tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    RunningProxy {
        addr,
        obs,
        reloader,
        shutdown: tx,
        stopped,
    }
}

/// Like [`launch`], keeping only the address and the shutdown trigger.
pub async fn start_proxy(config_path: &std::path::Path) -> (SocketAddr, oneshot::Sender<()>) {
    let running = launch(config_path).await;
    (running.addr, running.shutdown)
}

/// Starts the devkit stack (PostgreSQL 15 with TLS and SCRAM, the CA, tenant certificates) in
/// a new temporary directory named with `prefix`; the directory goes when it is dropped.
pub async fn start_stack(prefix: &str) -> (tempfile::TempDir, Stack) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let root = dir.path().to_path_buf();
    let stack = tokio::task::spawn_blocking(move || Stack::start(&root))
        .await
        .expect("stack task")
        .expect("start the PostgreSQL stack");
    (dir, stack)
}

/// Connects to pgcordon at `addr` with tokio-postgres over `tls` (the connection task runs
/// in the background).
pub async fn connect_proxy(
    addr: SocketAddr,
    tls: rustls::ClientConfig,
    dbname: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(addr.port())
        .user("api")
        .dbname(dbname)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A rustls client configuration (ring provider) trusting `ca`, optionally presenting a cert.
pub fn client_tls(ca: &std::path::Path, cert: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pgcordon_tls::load_certs(ca).expect("CA") {
        roots.add(c).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                pgcordon_tls::load_certs(cert).expect("cert"),
                pgcordon_tls::load_private_key(key).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    }
}

/// The sum of the samples of metric `name` whose labels include `labels`, from the proxy's
/// own Prometheus rendering parsed by a real text-format parser.
pub fn metric(obs: &pgcordon_proxy::Observability, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = obs.metrics.render();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected sample kind {other:?}"),
        })
        .sum()
}

/// The SQLSTATE of a tokio-postgres error, if the server (or pgcordon) sent one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<String> {
    err.as_db_error().map(|e| e.code().code().to_owned())
}

/// Logs to the test's output at the level PGCORDON_TEST_LOG names (warn by default); later
/// calls in the same process change nothing.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGCORDON_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
