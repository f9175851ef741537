//! Test kit for the routing tests: a real PostgreSQL 15 primary with TLS and SCRAM (the devkit
//! stack) and streaming replicas of it, and target specs that reach them as the application role
//! with verify-full TLS, exactly as the proxy's pools do.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use pgcordon_devkit::stack::{Stack, APP_DATABASE, APP_ROLE};
use pgcordon_devkit::Cluster;
use pgcordon_pool::PoolSettings;
use pgcordon_routing::{RoutingSettings, TargetSpec};
use pgcordon_upstream::{ChannelBindingPolicy, PasswordSource, UpstreamSettings};
use tokio::time::Instant;

/// A primary and its replicas. Dropping it stops every server.
pub struct Fixture {
    pub stack: Stack,
    pub replicas: Vec<Cluster>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts the stack and `replicas` streaming replicas, and a table to write into.
    pub async fn start(replicas: usize) -> Fixture {
        init_logging();
        let dir = tempfile::Builder::new()
            .prefix("pgcordon-routing")
            .tempdir()
            .expect("temporary directory");
        let root: PathBuf = dir.path().to_path_buf();
        let (stack, replicas) = tokio::task::spawn_blocking(move || {
            let stack = Stack::start(&root.join("stack")).expect("start the primary");
            stack
                .cluster
                .psql(APP_DATABASE, "CREATE TABLE filler (id bigint, pad text);")
                .expect("create the filler table");
            let replicas = (0..replicas)
                .map(|i| {
                    let replica_dir = root.join(format!("replica-{i}"));
                    Cluster::start_replica(&stack.cluster, &replica_dir).expect("start a replica")
                })
                .collect::<Vec<_>>();
            (stack, replicas)
        })
        .await
        .expect("fixture task");
        Fixture {
            stack,
            replicas,
            _dir: dir,
        }
    }

    /// A target named `name` for the server on `port`.
    pub fn spec(&self, name: &str, port: u16) -> TargetSpec {
        let files = &self.stack.files;
        let (tls, server_name) =
            pgcordon_tls::upstream_config(&pgcordon_tls::UpstreamTlsSettings {
                ca: files.ca.clone(),
                server_name: "localhost".into(),
                client_cert: None,
            })
            .expect("upstream TLS configuration");
        TargetSpec {
            name: name.into(),
            upstream: UpstreamSettings {
                host: "127.0.0.1".into(),
                port,
                database: APP_DATABASE.into(),
                user: APP_ROLE.into(),
                password: PasswordSource::File(files.password.clone()),
                tls,
                server_name,
                connect_timeout: Duration::from_secs(5),
                channel_binding: ChannelBindingPolicy::Require,
                allow_cleartext_password: false,
                allow_md5_password: false,
                startup_params: vec![("application_name".into(), "routing-test".into())],
            },
            pool: PoolSettings {
                size: 2,
                min_idle: 0,
                acquire_timeout: Duration::from_secs(5),
                server_lifetime: Duration::from_secs(300),
                idle_timeout: Duration::from_secs(300),
            },
        }
    }

    /// The primary's target spec.
    pub fn primary_spec(&self) -> TargetSpec {
        self.spec("primary", self.stack.cluster.port())
    }

    /// The spec of replica `i`, named `replica-<i>`.
    pub fn replica_spec(&self, i: usize) -> TargetSpec {
        self.spec(&format!("replica-{i}"), self.replicas[i].port())
    }

    /// Runs SQL as superuser in the app database on the primary.
    pub fn primary_sql(&self, sql: &str) -> String {
        let out = tokio::task::block_in_place(|| self.stack.cluster.psql(APP_DATABASE, sql));
        out.expect("SQL on the primary")
    }

    /// Runs SQL as superuser on replica `i`.
    pub fn replica_sql(&self, i: usize, sql: &str) -> String {
        let out = tokio::task::block_in_place(|| self.replicas[i].psql(APP_DATABASE, sql));
        out.expect("SQL on a replica")
    }

    /// Writes about `rows` KB of WAL on the primary.
    pub fn write_rows(&self, rows: u32) {
        self.primary_sql(&format!(
            "INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, {rows}) g;"
        ));
    }

    /// Pauses WAL replay on replica `i` and waits until it has stopped.
    pub async fn pause_replay(&self, i: usize) {
        self.replica_sql(i, "SELECT pg_wal_replay_pause();");
        eventually("replay paused", Duration::from_secs(10), || {
            let state = self.replica_sql(i, "SELECT pg_get_wal_replay_pause_state();");
            match state.trim() {
                "paused" => Ok(()),
                other => Err(other.to_owned()),
            }
        })
        .await;
    }
}

/// Settings with fast checks; callers adjust the limit under test.
pub fn fast_settings() -> RoutingSettings {
    RoutingSettings {
        check_interval: Duration::from_millis(100),
        check_timeout: Duration::from_secs(3),
        max_lag_bytes: 1 << 20,
        max_lag: Duration::from_secs(60),
        ryw_wait: Duration::ZERO,
    }
}

/// Polls `check` every 25 ms until it returns `Ok`, failing the test with its last `Err` after
/// `limit`.
pub async fn eventually(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + limit;
    loop {
        let Err(why) = check() else { return };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last seen: {why}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Times `work`.
pub async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
