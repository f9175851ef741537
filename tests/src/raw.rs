//! Protocol-level tools for the refusal and upstream tests: hand-built first packets on raw
//! sockets, rustls clients with a chosen ALPN list (SSLRequest or PostgreSQL 17 direct TLS), a
//! small independent reader of backend messages, a capture of pgcordon's log lines, extra proxies
//! on edited configurations, and a snapshot of the upstream sessions pgcordon holds.
//!
//! The message reader is written here rather than borrowed from pgcordon-wire, so that a bug in
//! pgcordon's own codec cannot hide in the tests that check it.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pgcordon_tls::rustls;
use pgcordon_tls::tokio_rustls::client::TlsStream;
use pgcordon_tls::tokio_rustls::TlsConnector;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::Harness;

/// SSLRequest: length 8, code 80877103 (1234.5679).
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// GSSENCRequest: length 8, code 80877104 (1234.5680).
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
/// ALPN of PostgreSQL direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A StartupMessage for protocol 3.0 with `params` in order.
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// The usual parameters of a client of the stack: user api, database app.
pub fn app_startup() -> Vec<u8> {
    startup_message(&[("user", "api"), ("database", "app")])
}

/// A simple Query message.
pub fn query_message(sql: &str) -> Vec<u8> {
    let mut out = vec![b'Q'];
    out.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    out
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    /// AuthenticationOk: 'R' with request code 0.
    pub fn is_auth_ok(&self) -> bool {
        self.tag == b'R' && self.body == [0, 0, 0, 0]
    }

    /// The fields of an ErrorResponse / NoticeResponse.
    pub fn error(&self) -> ErrorFields {
        ErrorFields::parse(&self.body)
    }
}

/// Severity (non-localised when present), SQLSTATE and message of an ErrorResponse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl ErrorFields {
    pub fn parse(body: &[u8]) -> ErrorFields {
        let mut fields = ErrorFields::default();
        let mut localised = String::new();
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            match kind {
                b'V' => fields.severity = value,
                b'S' => localised = value,
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                _ => {}
            }
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        if fields.severity.is_empty() {
            fields.severity = localised;
        }
        fields
    }
}

/// Reads one tagged backend message (at most 1 MiB).
pub async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Message> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if !(4..=1 << 20).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("backend message {:?} with length {len}", head[0] as char),
        ));
    }
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).await?;
    Ok(Message { tag: head[0], body })
}

/// Reads messages up to and including the first ReadyForQuery or ErrorResponse, within 10 s.
pub async fn read_until_ready_or_error<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Vec<Message>> {
    let read = async {
        let mut messages = Vec::new();
        loop {
            let msg = read_message(stream).await?;
            let last = msg.tag == b'Z' || msg.tag == b'E';
            messages.push(msg);
            if last {
                return Ok(messages);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no ReadyForQuery in 10 s"))?
}

/// Sends `sql` as a simple Query and returns the first column of each DataRow (None for NULL),
/// or the ErrorResponse fields.
pub async fn simple_query<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    sql: &str,
) -> io::Result<Result<Vec<Option<String>>, ErrorFields>> {
    stream.write_all(&query_message(sql)).await?;
    stream.flush().await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), read_message(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in 10 s"))??;
        match msg.tag {
            b'D' => rows.push(first_column(&msg.body)),
            b'E' => error = Some(msg.error()),
            b'Z' => return Ok(error.map_or(Ok(rows), Err)),
            _ => {}
        }
    }
}

fn first_column(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8_lossy(body.get(6..6 + len)?).into_owned())
}

// ---- endings ------------------------------------------------------------------------------

/// How a connection ended, seen from the client.
#[derive(Debug)]
pub struct Closed {
    /// Every byte the peer sent before the end.
    pub received: Vec<u8>,
    /// The read error that ended it (reset, TLS alert, unexpected EOF), or None for a clean EOF.
    pub error: Option<io::Error>,
    /// Time from the call to the end.
    pub after: Duration,
}

impl Closed {
    /// The TLS alert the server sent, if the connection ended with one.
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        self.error.as_ref().and_then(alert_of)
    }
}

/// The alert inside a rustls error wrapped in an `io::Error`.
pub fn alert_of(err: &io::Error) -> Option<rustls::AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Reads until the peer closes (EOF or a read error), for at most `within`. Errors if the
/// connection is still open then, with what was received so far.
pub async fn wait_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Result<Closed, String> {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "connection still open after {within:?}; received {received:?}"
                ))
            }
            Ok(Ok(0)) => {
                return Ok(Closed {
                    received,
                    error: None,
                    after: start.elapsed(),
                })
            }
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                return Ok(Closed {
                    received,
                    error: Some(e),
                    after: start.elapsed(),
                })
            }
        }
    }
}

// ---- TLS clients --------------------------------------------------------------------------

/// A rustls client configuration trusting `ca`, presenting `cert` if given, offering `alpn`.
pub fn tls_config(
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut config = crate::client_tls(ca, cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A plain TCP connection to `addr`.
pub async fn tcp(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("TCP connect to pgcordon");
    tcp.set_nodelay(true).expect("nodelay");
    tcp
}

/// Sends SSLRequest on `tcp`, requires the answer `S`, and runs the TLS handshake.
///
/// # Errors
/// The handshake's error (the `S` is asserted, not returned).
pub async fn tls_after_ssl_request(
    mut tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    tcp.write_all(&SSL_REQUEST).await?;
    let answer = tcp.read_u8().await?;
    assert_eq!(answer, b'S', "answer to SSLRequest");
    handshake(tcp, config).await
}

/// PostgreSQL 17 direct TLS: a ClientHello as the very first bytes.
pub async fn direct_tls(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    handshake(tcp, config).await
}

async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").expect("server name");
    let handshake = TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake hung"))?
}

/// What happened to a TLS client whose certificate the proxy should refuse.
#[derive(Debug)]
pub struct Refusal {
    /// The client's local port (the proxy logs it as client.addr).
    pub local_port: u16,
    /// The handshake's own error, when the client already saw the refusal there.
    pub handshake_error: Option<io::Error>,
    /// After a handshake that looked complete to the client (TLS 1.3 verifies the client's
    /// certificate after the client's Finished): the end seen after sending a StartupMessage.
    pub after_startup: Option<Closed>,
}

impl Refusal {
    /// The alert received, wherever the client saw it.
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        self.handshake_error
            .as_ref()
            .and_then(alert_of)
            .or_else(|| self.after_startup.as_ref().and_then(Closed::alert))
    }

    /// Bytes of PostgreSQL protocol the client got (must be none for a TLS refusal).
    pub fn received(&self) -> &[u8] {
        self.after_startup
            .as_ref()
            .map_or(&[], |c| c.received.as_slice())
    }
}

/// SSLRequest, TLS with `config`, then a StartupMessage; reports how the proxy ended it.
/// Panics if the connection stays open for 5 s after the StartupMessage.
pub async fn attempt_tls_startup(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Refusal {
    let tcp = tcp(addr).await;
    let local_port = tcp.local_addr().expect("local addr").port();
    let mut tls = match tls_after_ssl_request(tcp, config).await {
        Ok(tls) => tls,
        Err(e) => {
            return Refusal {
                local_port,
                handshake_error: Some(e),
                after_startup: None,
            }
        }
    };
    // A refused peer may already have closed; a failed write is part of that outcome.
    let _ = tls.write_all(&app_startup()).await;
    let _ = tls.flush().await;
    let closed = wait_closed(&mut tls, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("refused client not closed: {e}"));
    Refusal {
        local_port,
        handshake_error: None,
        after_startup: Some(closed),
    }
}

// ---- log capture --------------------------------------------------------------------------

static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct CaptureWriter {
    line: Vec<u8>,
}

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if std::env::var_os("PGCORDON_TEST_LOG").is_some() {
            eprint!("{text}");
        }
        if let Some(logs) = LOGS.get() {
            logs.lock().unwrap_or_else(|p| p.into_inner()).push(text);
        }
    }
}

struct Capture;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter { line: Vec::new() }
    }
}

/// Installs (once per test binary) a global subscriber that keeps every log line, at the level
/// of `PGCORDON_TEST_LOG` or `warn`. Call it before [`Harness::start`], whose own logging setup
/// then leaves this one in place. Panics if another subscriber was installed first.
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        LOGS.get_or_init(|| Mutex::new(Vec::new()));
        let filter = tracing_subscriber::EnvFilter::try_from_env("PGCORDON_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Capture)
            .try_init()
            .expect("install the log capture before any other subscriber");
    });
}

/// Every captured line containing all of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.get().expect("capture_logs() was not called");
    let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    logs.iter()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .cloned()
        .collect()
}

/// Polls for a captured line containing all of `needles`, for at most `within`.
pub async fn wait_for_log(needles: &[&str], within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = log_lines(needles).into_iter().next() {
            return Ok(line);
        }
        if Instant::now() >= deadline {
            return Err(format!("no log line with {needles:?} within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the warn line pgcordon writes when it refuses the connection from `local_port`,
/// and checks that it carries `reason`.
pub async fn expect_refusal_logged(local_port: u16, reason: &str) {
    let addr = format!("client.addr=127.0.0.1:{local_port}");
    let line = wait_for_log(&[&addr, "WARN"], Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains(&format!("reason=\"{reason}\""))
            || line.contains(&format!("reason={reason}")),
        "refusal of client port {local_port} logged without reason {reason:?}: {line}"
    );
}

// ---- harnesses and extra proxies ----------------------------------------------------------

/// [`Harness::start_with`] with the log capture installed first.
pub async fn harness(pool_yaml: &str, extra: &str) -> Harness {
    capture_logs();
    Harness::start_with(pool_yaml, extra).await
}

/// A second pgcordon on the harness's stack, with an edited configuration. Dropping it stops
/// accepting clients.
pub struct Variant {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    _shutdown: oneshot::Sender<()>,
}

/// Writes the stack's configuration (listening on a system-chosen port) passed through `edit`,
/// and starts pgcordon on it. `edit` must change the text.
pub async fn start_variant(
    h: &Harness,
    pool_yaml: &str,
    edit: impl FnOnce(&str) -> String,
) -> Variant {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = h.stack.config_yaml("127.0.0.1:0", pool_yaml, "");
    let text = edit(&base);
    assert_ne!(text, base, "the variant edit changed nothing");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let config_path = h.stack.dir.join(format!("variant-{n}.yaml"));
    std::fs::write(&config_path, text).expect("write variant config");
    let (addr, shutdown) = crate::start_proxy(&config_path).await;
    Variant {
        addr,
        config_path,
        _shutdown: shutdown,
    }
}

/// Adds `lines` (each "key: value") to the top-level `tls:` section of a stack configuration.
pub fn with_tls_lines(config: &str, lines: &[String]) -> String {
    let mut inserted = String::from("tls:\n");
    for line in lines {
        inserted.push_str("  ");
        inserted.push_str(line);
        inserted.push('\n');
    }
    inserted.push_str("  cert:");
    assert!(
        config.contains("\ntls:\n  cert:"),
        "unexpected config layout"
    );
    config.replacen("\ntls:\n  cert:", &format!("\n{inserted}"), 1)
}

/// The upstream sessions of the app role as PostgreSQL sees them: pid, start, last state change
/// and state. Any new session, or any statement on an existing one, changes it.
pub fn backend_snapshot(h: &Harness) -> String {
    h.admin(
        "SELECT pid, backend_start, state_change, state FROM pg_stat_activity \
         WHERE usename = 'pgcordon_app' ORDER BY pid",
    )
}

/// A tokio-postgres configuration for the harness's proxy (or `port`), user api.
pub fn pg_config(port: u16, dbname: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(port)
        .user("api")
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10))
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    config
}

/// Connects with `config` over rustls with `tls`; the connection task runs in the background.
pub async fn connect_tls(
    config: &tokio_postgres::Config,
    tls: rustls::ClientConfig,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The database error inside a tokio-postgres error: (severity, SQLSTATE, message).
pub fn db_error(err: &tokio_postgres::Error) -> (String, String, String) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse, got: {err:?}"));
    let severity = db
        .parsed_severity()
        .map_or_else(|| db.severity().to_owned(), |s| s.to_string());
    (
        severity,
        db.code().code().to_owned(),
        db.message().to_owned(),
    )
}

/// Runs psql (the installed PostgreSQL's) with `conninfo` and `sql`, with extra environment;
/// returns (success, stdout, stderr).
pub async fn psql(conninfo: &str, sql: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let bindir = pgcordon_devkit::find_pg_bindir().expect("PostgreSQL bindir");
    let mut cmd = tokio::process::Command::new(bindir.join("psql"));
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGOPTIONS")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("psql finished within 30 s")
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (at most 5 s) for the peer to close `stream`, and checks that it sent nothing first.
pub async fn expect_closed_silently<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> Closed {
    let closed = wait_closed(stream, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(closed.received.is_empty(), "{what}: answered {closed:?}");
    closed
}

/// Checks that pg_stat_activity for the app role still reads `before`.
pub fn assert_no_backend_work(h: &Harness, before: &str, what: &str) {
    assert_eq!(backend_snapshot(h), before, "{what} caused backend work");
}
