//! Helpers for the routing tests: the devkit stack plus a real streaming replica of its primary
//! (pg_basebackup -R, so the replica has the app role, the schema, the rows and the TLS files),
//! pgcordon in-process with that replica in `upstream.replicas` and a `routing:` section, more
//! proxies with other routing settings on the same pair of servers, and readers for "where did
//! this run" (`pg_is_in_recovery()`) and for the Prometheus text of a proxy's metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pgcordon_devkit::stack::{ReplicaEntry, Stack};
use pgcordon_devkit::Cluster;
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::tenants::rows;
use crate::{client_tls, launch, RunningProxy, Tenant, POOL_TX};

/// The replica's label in the configuration, logs and metrics.
pub const REPLICA: &str = "replica-1";

/// Auto routing with fast health checks and a 1 MiB byte-lag limit; no time limit is set, so
/// the 10 s default applies.
pub const ROUTING_AUTO: &str =
    "routing:\n  mode: auto\n  check_interval: 200ms\n  max_lag_bytes: 1MiB\n";

/// How long a replica may take to enter rotation (or come back) before a test fails.
pub const ROTATION_DEADLINE: Duration = Duration::from_secs(20);

/// A primary, its streaming replica and pgcordon routing between them. Fields drop in order:
/// the proxy first, then the replica, then the primary, then the directory.
pub struct ReplicaHarness {
    pub proxy: RunningProxy,
    pub replica: Cluster,
    pub stack: Stack,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ReplicaHarness {
    /// Starts the stack, a replica of its primary, and pgcordon with the replica listed and
    /// `routing_yaml` (a whole `routing:` section) appended.
    pub async fn start(routing_yaml: &str) -> ReplicaHarness {
        crate::init_logging();
        let dir = tempfile::Builder::new()
            .prefix("pgcordon-route")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let (stack, replica) = tokio::task::spawn_blocking(move || {
            let stack = Stack::start(&root).expect("start the PostgreSQL stack");
            let replica = stack.start_replica().expect("start a streaming replica");
            (stack, replica)
        })
        .await
        .expect("stack task");
        let config_path = write_routed_config(&stack, &replica, "pgcordon.yaml", routing_yaml);
        let proxy = launch(&config_path).await;
        ReplicaHarness {
            proxy,
            replica,
            stack,
            config_path,
            _dir: dir,
        }
    }

    /// Another pgcordon on the same primary and replica with its own `routing:` section. Drop
    /// its `shutdown` (or the whole value) to stop it.
    pub async fn launch_extra(&self, file_name: &str, routing_yaml: &str) -> RunningProxy {
        let path = write_routed_config(&self.stack, &self.replica, file_name, routing_yaml);
        launch(&path).await
    }

    /// Connects as `tenant` to the main proxy.
    pub async fn connect(&self, tenant: Tenant) -> Client {
        self.connect_to(self.proxy.addr, tenant).await
    }

    /// Connects as `tenant` to the proxy at `addr` (the main one or an extra one).
    pub async fn connect_to(&self, addr: SocketAddr, tenant: Tenant) -> Client {
        self.try_connect_to(addr, tenant)
            .await
            .expect("connect through pgcordon")
    }

    /// As [`ReplicaHarness::connect_to`], returning the error instead of panicking.
    pub async fn try_connect_to(
        &self,
        addr: SocketAddr,
        tenant: Tenant,
    ) -> Result<Client, tokio_postgres::Error> {
        let files = match tenant {
            Tenant::A => &self.stack.files.tenant_a,
            Tenant::B => &self.stack.files.tenant_b,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host("localhost")
            .port(addr.port())
            .user("api")
            .dbname("app")
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = client_tls(&self.stack.files.ca, Some(files));
        let (client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs SQL as superuser on the primary, directly (not through pgcordon).
    pub fn primary_sql(&self, sql: &str) -> String {
        tokio::task::block_in_place(|| self.stack.cluster.psql("app", sql))
            .expect("superuser SQL on the primary")
    }

    /// Runs SQL as superuser on the replica, directly (not through pgcordon).
    pub fn replica_sql(&self, sql: &str) -> String {
        tokio::task::block_in_place(|| self.replica.psql("app", sql))
            .expect("superuser SQL on the replica")
    }

    /// A superuser session on the primary over its unix socket (not through pgcordon), for
    /// holding locks or transactions open across a test.
    pub async fn primary_superuser(&self) -> Client {
        let cluster = &self.stack.cluster;
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(cluster.socket_dir())
            .port(cluster.port())
            .user("postgres")
            .dbname("app");
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("superuser session on the primary");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Polls superuser SQL on the replica until its output (trimmed) is `want`, at most 10 s.
    pub async fn wait_for_replica_sql(&self, sql: &str, want: &str) {
        let started = Instant::now();
        loop {
            let got = self.replica_sql(sql);
            if got.trim() == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sql:?} on the replica gave {got:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the replica (`pg_ctl -m fast`: its sessions are terminated).
    pub fn stop_replica(&mut self) {
        tokio::task::block_in_place(|| self.replica.stop()).expect("stop the replica");
    }

    /// Starts the stopped replica again, on the same port.
    pub fn start_replica(&mut self) {
        let port = self.replica.port();
        tokio::task::block_in_place(|| self.replica.start()).expect("start the replica");
        assert_eq!(
            self.replica.port(),
            port,
            "the replica came back on another port; the proxy still points at the old one"
        );
    }
}

/// Writes the stack's configuration with the replica listed and `routing_yaml` appended.
fn write_routed_config(
    stack: &Stack,
    replica: &Cluster,
    file_name: &str,
    routing_yaml: &str,
) -> PathBuf {
    let listen = Stack::free_listen_addr().expect("free port");
    let replicas = [ReplicaEntry::of(REPLICA, replica)];
    let yaml = stack.config_yaml_with_replicas(&listen, POOL_TX, &replicas, routing_yaml);
    let path = stack.dir.join(file_name);
    std::fs::write(&path, yaml).expect("write configuration");
    path
}

/// Runs `sql` (simple protocol) and returns the first column of its only row, read as
/// `pg_is_in_recovery()` output: `true` when the statement ran on the replica.
pub async fn ran_on_replica(client: &Client, sql: &str) -> Result<bool, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    let rows = rows(&messages);
    assert_eq!(rows.len(), 1, "expected one row from {sql:?}, got {rows:?}");
    Ok(parse_bool(rows[0][0].as_deref(), sql))
}

/// `SELECT pg_is_in_recovery()` outside a transaction: where an autocommit read lands now.
pub async fn read_lands_on_replica(client: &Client) -> Result<bool, tokio_postgres::Error> {
    ran_on_replica(client, "SELECT pg_is_in_recovery()").await
}

/// Reads `SELECT pg_is_in_recovery()` through `client` until it says the read ran on the
/// replica (`want_replica`) or on the primary, at most `deadline`; returns how long that took.
pub async fn wait_for_reads_on(
    client: &Client,
    want_replica: bool,
    deadline: Duration,
) -> Duration {
    wait_for_sql_on(client, "SELECT pg_is_in_recovery()", want_replica, deadline).await
}

/// Runs `sql` (whose only row's first column is `pg_is_in_recovery()`) through `client` until it
/// runs where `want_replica` says, at most `deadline`; returns how long that took. Query errors
/// are tolerated while waiting (the last one is shown if the deadline passes).
pub async fn wait_for_sql_on(
    client: &Client,
    sql: &str,
    want_replica: bool,
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    let mut last: String;
    loop {
        match ran_on_replica(client, sql).await {
            Ok(on_replica) if on_replica == want_replica => return started.elapsed(),
            Ok(on_replica) => last = format!("pg_is_in_recovery() = {on_replica}"),
            Err(e) => last = format!("error: {e}"),
        }
        assert!(
            started.elapsed() < deadline,
            "{sql:?} did not run on the {} within {deadline:?}; last: {last}",
            if want_replica { "replica" } else { "primary" }
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `t`/`f` as PostgreSQL prints booleans.
pub fn parse_bool(value: Option<&str>, what: &str) -> bool {
    match value {
        Some("t") => true,
        Some("f") => false,
        other => panic!("expected a boolean from {what:?}, got {other:?}"),
    }
}

/// One scrape of a proxy's metrics: series by name and label set.
#[derive(Debug, Clone)]
pub struct Scrape {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
    pub text: String,
}

impl Scrape {
    /// Renders `proxy`'s registry as Prometheus text and parses the sample lines.
    pub fn of(proxy: &RunningProxy) -> Scrape {
        Scrape::parse(&proxy.obs.metrics.render())
    }

    /// Parses the Prometheus text format's sample lines (`name{k="v",...} value`).
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (head, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value.parse().expect("a sample value");
            let (name, labels) = match head.split_once('{') {
                None => (head.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label pair");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            series.push((name, labels, value));
        }
        Scrape {
            series,
            text: text.to_owned(),
        }
    }

    /// The value of the series `name` whose labels include `labels`; `None` when there is none.
    /// Panics if more than one series matches (the label set was not specific enough).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {} series",
            matching.len()
        );
        matching.first().copied()
    }

    /// `pgcordon_routed_transactions_total{target, kind}`, 0 when the series does not exist.
    pub fn routed(&self, target: &str, kind: &str) -> f64 {
        self.value(
            "pgcordon_routed_transactions_total",
            &[("target", target), ("kind", kind)],
        )
        .unwrap_or(0.0)
    }

    /// `pgcordon_replica_healthy{target="replica-1"}`.
    pub fn replica_healthy(&self) -> Option<f64> {
        self.value("pgcordon_replica_healthy", &[("target", REPLICA)])
    }

    /// `pgcordon_replica_lag_bytes{target="replica-1"}`.
    pub fn replica_lag_bytes(&self) -> Option<f64> {
        self.value("pgcordon_replica_lag_bytes", &[("target", REPLICA)])
    }
}

/// Scrapes `proxy` until `check` accepts the scrape, at most `deadline`; returns that scrape.
pub async fn wait_for_scrape(
    proxy: &RunningProxy,
    deadline: Duration,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        let scrape = Scrape::of(proxy);
        if check(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < deadline,
            "metrics did not show {what} within {deadline:?}:\n{}",
            relevant_lines(&scrape.text)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The routing-related lines of a scrape, for failure messages.
pub fn relevant_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            !l.starts_with('#') && (l.contains("routed_transactions") || l.contains("replica_"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
