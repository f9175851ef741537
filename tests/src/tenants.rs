//! Helpers for the isolation and protocol tests: more tenants than the stack's two (certificates
//! issued from the stack's CA, rows seeded per tenant), a second pgcordon on the same stack with
//! an edited configuration, connections whose connection task's result can be inspected, and
//! small readers for query results.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use pgcordon_devkit::pki::{ClientSpec, IssuedCert};
use pgcordon_devkit::stack::{tenant_cert, Stack};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::{client_tls, start_proxy, Harness, Tenant};

/// The SELECT every isolation check runs: who the session says we are, and what RLS lets us see.
pub const WHO_AND_COUNT: &str =
    "SELECT current_setting('app.current_user_id'), (SELECT count(*) FROM documents)";

/// A tenant made for a test: its identity and its certificate and key files.
#[derive(Debug, Clone)]
pub struct ExtraTenant {
    pub id: String,
    pub files: (PathBuf, PathBuf),
}

/// The identity of extra tenant `index` (a well-formed UUID, distinct per index and from the
/// stack's tenants A and B).
pub fn extra_tenant_id(index: usize) -> String {
    format!("0000e2e0-0000-4000-8000-{index:012x}")
}

/// Issues SPIFFE certificates for `count` extra tenants from the stack's CA and writes them into
/// the stack's directory.
pub fn issue_tenants(stack: &Stack, count: usize) -> Vec<ExtraTenant> {
    (0..count)
        .map(|i| {
            let id = extra_tenant_id(i);
            let cert = tenant_cert(&stack.ca, &id).expect("issue a tenant certificate");
            ExtraTenant {
                files: write_cert(stack, &cert, &format!("extra-tenant-{i}")),
                id,
            }
        })
        .collect()
}

/// Issues a client certificate from the stack's CA for an arbitrary profile and writes it.
pub fn issue_client(stack: &Stack, spec: &ClientSpec, stem: &str) -> (PathBuf, PathBuf) {
    let cert = stack
        .ca
        .issue_client(spec)
        .expect("issue a client certificate");
    write_cert(stack, &cert, stem)
}

fn write_cert(stack: &Stack, cert: &IssuedCert, stem: &str) -> (PathBuf, PathBuf) {
    cert.write(&stack.dir.join("tls"), stem)
        .expect("write certificate and key")
}

/// Inserts `rows` documents owned by `owner` (as superuser, past RLS).
pub fn seed_rows(h: &Harness, owner: &str, rows: usize) {
    h.admin(&format!(
        "INSERT INTO documents (owner_id, title) \
         SELECT '{owner}', 'seeded ' || g FROM generate_series(1, {rows}) g;"
    ));
}

/// Runs superuser SQL without stalling the runtime's worker (the proxy runs on it too).
pub fn admin(h: &Harness, sql: &str) -> String {
    tokio::task::block_in_place(|| h.admin(sql))
}

/// Connects through the harness's pgcordon with the given certificate files.
pub async fn connect_as(h: &Harness, files: &(PathBuf, PathBuf)) -> Client {
    h.try_connect_with(h.client_tls(files), "app")
        .await
        .expect("connect through pgcordon")
}

/// Connects as `tenant`, retrying while pgcordon answers 08001 (no upstream session could be
/// opened in time) for up to 10 s. For tests with a short `pool.acquire_timeout`: on a loaded
/// machine opening the first upstream session can take longer than that (see the report on
/// `BackendPool::acquire` bounding session creation by the acquire timeout).
pub async fn connect_when_upstream_ready(h: &Harness, tenant: Tenant) -> Client {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match h
            .try_connect_with(h.client_tls(h.tenant_files(tenant)), "app")
            .await
        {
            Ok(client) => return client,
            Err(e) if crate::sqlstate(&e).as_deref() == Some("08001") => {
                assert!(tokio::time::Instant::now() < deadline, "still 08001: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("connect through pgcordon: {e}"),
        }
    }
}

/// A connection whose connection task can be awaited: an error pgcordon sends outside any
/// request (a FATAL before closing) ends that task with the server's error, which the client
/// itself only sees as "connection closed".
pub struct Watched {
    pub client: Client,
    pub task: JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Connects to `addr` with `tls`, as user `api` to database `app`, keeping the connection task.
pub async fn connect_watched(
    addr: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<Watched, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(addr.port())
        .user("api")
        .dbname("app")
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    let task = tokio::spawn(connection);
    Ok(Watched { client, task })
}

/// A second pgcordon serving the same stack with its own configuration. Dropping it stops it.
pub struct ExtraProxy {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
}

impl ExtraProxy {
    /// Writes the stack's configuration with `pool_yaml`, passed through `edit`, to
    /// `<stack dir>/<file_name>` and serves it.
    pub async fn start(
        h: &Harness,
        file_name: &str,
        pool_yaml: &str,
        edit: impl FnOnce(String) -> String,
    ) -> ExtraProxy {
        let listen = Stack::free_listen_addr().expect("free port");
        let yaml = edit(h.stack.config_yaml(&listen, pool_yaml, ""));
        let config_path = h.stack.dir.join(file_name);
        std::fs::write(&config_path, yaml).expect("write configuration");
        let (addr, shutdown) = start_proxy(&config_path).await;
        ExtraProxy {
            addr,
            config_path,
            shutdown: Some(shutdown),
        }
    }

    /// Connects with the certificate files, trusting the stack's CA.
    pub async fn connect(
        &self,
        ca: &Path,
        files: &(PathBuf, PathBuf),
    ) -> Result<Watched, tokio_postgres::Error> {
        connect_watched(self.addr, client_tls(ca, Some(files))).await
    }
}

impl Drop for ExtraProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Replaces the `identity:` section's `from` and `pattern` lines of a generated configuration.
pub fn with_identity(yaml: &str, from: &str, pattern: &str) -> String {
    let mut replaced = 0;
    let lines: Vec<String> = yaml
        .lines()
        .map(|line| {
            if line.starts_with("  from: ") {
                replaced += 1;
                format!("  from: {from}")
            } else if line.starts_with("  pattern: ") {
                replaced += 1;
                format!("  pattern: '{}'", pattern.replace('\'', "''"))
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(replaced, 2, "identity lines not found in:\n{yaml}");
    lines.join("\n") + "\n"
}

/// The rows of a simple-query response, each column as an optional string.
pub fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The first column of the only row of a simple query's response.
pub async fn simple_value(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    let rows = rows(&messages);
    assert_eq!(rows.len(), 1, "expected one row from {sql:?}, got {rows:?}");
    Ok(rows[0][0].clone().unwrap_or_default())
}

/// `current_setting('app.current_user_id')` and the visible document count, with an unnamed
/// extended-protocol statement (autocommit).
pub async fn who_and_count(client: &Client) -> Result<(String, i64), tokio_postgres::Error> {
    let row = client.query_typed_one(WHO_AND_COUNT, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// The SQLSTATE and message of a server (or pgcordon) error, for assertion messages.
pub fn db_error(err: &tokio_postgres::Error) -> (String, String, String) {
    match err.as_db_error() {
        Some(e) => (
            e.code().code().to_owned(),
            e.severity().to_owned(),
            e.message().to_owned(),
        ),
        None => (String::new(), String::new(), err.to_string()),
    }
}

/// Awaits `future` for at most `secs` seconds, panicking after that: a proxy that stops
/// answering fails the test instead of hanging it.
pub async fn within<F: std::future::Future>(secs: u64, future: F) -> F::Output {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), future).await {
        Ok(output) => output,
        Err(_) => panic!("no answer within {secs} s"),
    }
}

/// A FunctionCall ('F') message calling `oid` with text arguments and a text result.
pub fn function_call(oid: u32, args: &[&str]) -> Vec<u8> {
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for arg in args {
        body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
        body.extend_from_slice(arg.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    let mut message = vec![b'F'];
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(&body);
    message
}

/// libpq environment for a tenant's connection through pgcordon.
pub fn libpq_env(h: &Harness, tenant: Tenant) -> Vec<(&'static str, String)> {
    let (cert, key) = h.tenant_files(tenant);
    let path = |p: &Path| p.display().to_string();
    vec![
        ("PGHOST", "localhost".into()),
        ("PGPORT", h.addr.port().to_string()),
        ("PGUSER", "api".into()),
        ("PGDATABASE", "app".into()),
        ("PGSSLMODE", "verify-full".into()),
        ("PGSSLROOTCERT", path(&h.stack.files.ca)),
        ("PGSSLCERT", path(cert)),
        ("PGSSLKEY", path(key)),
    ]
}

/// Runs a program to its end with extra environment variables, capturing its output.
pub async fn run(program: &str, args: &[&str], envs: &[(&str, String)]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("PGSERVICE")
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Lossy UTF-8 of captured output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
