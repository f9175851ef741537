//! Tools for the operations tests (`tests/ops.rs`): the real `pgcordon` binary as a child process
//! whose output goes to files, a bare HTTP/1.1 client for the admin listener, file replacement
//! the way cert-manager does it (write beside, then rename) and a Kubernetes secret volume
//! (symlinks swapped at once), the server certificate a new handshake presents, raw protocol
//! sessions that can see an unsolicited FATAL, and deadlines for polling.
//!
//! Parsing (Prometheus text, JSON lines, X.509) stays in the test file, with its dev-dependencies.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgcordon_devkit::stack::Stack;
use pgcordon_tls::rustls;
use pgcordon_tls::tokio_rustls::client::TlsStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::{self, ErrorFields, Message};
use crate::{Tenant, POOL_TX};

// ---- deadlines ----------------------------------------------------------------------------

/// A bounded wait for a condition that is polled: `tick` sleeps briefly, and panics naming the
/// condition once the time is up.
pub struct Deadline {
    what: String,
    end: Instant,
    within: Duration,
}

impl Deadline {
    pub fn new(what: impl Into<String>, within: Duration) -> Deadline {
        Deadline {
            what: what.into(),
            end: Instant::now() + within,
            within,
        }
    }

    /// Whether the time is up.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Sleeps 25 ms, or panics with `detail` if the deadline has passed.
    pub async fn tick(&self, detail: impl std::fmt::Display) {
        if self.passed() {
            panic!(
                "{} did not happen within {:?}: {detail}",
                self.what, self.within
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- the stack ----------------------------------------------------------------------------

/// A PostgreSQL stack (CA, certificates, primary with the example schema) in a temporary
/// directory, without a proxy: the tests start pgcordon themselves, in-process or as a binary.
pub struct OpsStack {
    pub stack: Stack,
    _dir: tempfile::TempDir,
}

impl OpsStack {
    pub async fn start() -> OpsStack {
        let (dir, stack) = crate::start_stack("pgcordon-ops").await;
        OpsStack { stack, _dir: dir }
    }

    /// The stack's directory (where configurations, CRLs and audit files go).
    pub fn dir(&self) -> &Path {
        &self.stack.dir
    }

    /// Writes `name` in the stack's directory: the stack's configuration listening on `listen`,
    /// changed as `edit` says.
    pub fn write_config(&self, name: &str, listen: SocketAddr, edit: &ConfigEdit) -> PathBuf {
        let f = &self.stack.files;
        let pool = edit.pool.as_deref().unwrap_or(POOL_TX);
        let mut text = self
            .stack
            .config_yaml(&listen.to_string(), pool, &edit.extra);
        if let Some((cert, key)) = &edit.server_pair {
            let stock = format!(
                "  cert: {}\n  key: {}\n",
                f.server_cert.display(),
                f.server_key.display()
            );
            assert!(text.contains(&stock), "unexpected configuration layout");
            let ours = format!("  cert: {}\n  key: {}\n", cert.display(), key.display());
            text = text.replacen(&stock, &ours, 1);
        }
        if !edit.tls_lines.is_empty() {
            text = raw::with_tls_lines(&text, &edit.tls_lines);
        }
        let path = self.dir().join(name);
        fs::write(&path, text).expect("write configuration");
        path
    }

    pub fn tenant_files(&self, tenant: Tenant) -> &(PathBuf, PathBuf) {
        match tenant {
            Tenant::A => &self.stack.files.tenant_a,
            Tenant::B => &self.stack.files.tenant_b,
        }
    }

    /// A rustls client configuration trusting the stack's CA, presenting `cert`.
    pub fn tls(&self, cert: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
        crate::client_tls(&self.stack.files.ca, cert)
    }

    /// Connects to pgcordon at `addr` with tokio-postgres over mTLS, as `tenant`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tenant: Tenant,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let config = raw::pg_config(addr.port(), "app");
        raw::connect_tls(&config, self.tls(Some(self.tenant_files(tenant)))).await
    }

    /// Runs SQL as the PostgreSQL superuser on the app database, not through pgcordon; the
    /// output without its trailing newline.
    pub fn admin(&self, sql: &str) -> String {
        let out = self.stack.cluster.psql("app", sql).expect("admin SQL");
        out.trim_end().to_owned()
    }
}

/// How a test's configuration differs from the stack's.
#[derive(Debug, Default, Clone)]
pub struct ConfigEdit {
    /// Lines ("key: value") added to the `tls:` section.
    pub tls_lines: Vec<String>,
    /// Another server certificate and key for `tls.cert` and `tls.key`.
    pub server_pair: Option<(PathBuf, PathBuf)>,
    /// Top-level sections appended (`admin:`, `audit:`, `shutdown:`, ...).
    pub extra: String,
    /// The body of the `pool:` section instead of [`POOL_TX`].
    pub pool: Option<String>,
}

/// A Kubernetes secret volume as the kubelet lays it out: each file is a symlink
/// `NAME -> ..data/NAME`, `..data` is a symlink to a versioned directory, and an update writes a
/// new directory and swaps `..data` with one rename, so every file changes at the same instant.
pub struct SecretVolume {
    root: PathBuf,
    version: usize,
}

impl SecretVolume {
    /// Creates the volume at `root` with `files` (name, content).
    pub fn create(root: &Path, files: &[(&str, &[u8])]) -> SecretVolume {
        fs::create_dir_all(root).expect("create the volume directory");
        let mut volume = SecretVolume {
            root: root.to_path_buf(),
            version: 0,
        };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name))
                .expect("link a volume file");
        }
        volume
    }

    /// The path a configuration names for `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Replaces every file at once (new version directory, then `..data` renamed over).
    pub fn update(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let version = format!("..version-{}", self.version);
        let dir = self.root.join(&version);
        fs::create_dir(&dir).expect("create a volume version");
        for (name, content) in files {
            fs::write(dir.join(name), content).expect("write a volume file");
        }
        let tmp = self.root.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).expect("link the new version");
        fs::rename(&tmp, self.root.join("..data")).expect("swap ..data");
    }
}

/// A free loopback address (the port is free now; the process that binds it comes next).
pub fn free_addr() -> SocketAddr {
    Stack::free_listen_addr()
        .expect("free port")
        .parse()
        .expect("socket address")
}

/// Replaces `path` with `contents` the way cert-manager and kubelet do: the new content is
/// written to a file beside it, then renamed over it, so a reader sees the old or the new file,
/// never a partial one. The mode of the old file is kept (keys stay 0600).
pub fn replace_file(path: &Path, contents: &[u8]) {
    let mode = fs::metadata(path).map(|m| m.permissions()).ok();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, contents).expect("write the replacement beside the file");
    if let Some(mode) = mode {
        fs::set_permissions(&tmp, mode).expect("keep the file mode");
    }
    fs::rename(&tmp, path).expect("rename the replacement over the file");
}

// ---- the binary ---------------------------------------------------------------------------

/// `target/<profile>/pgcordon`, found from this test executable (`target/<profile>/deps/ops-*`).
/// Panics with a clear message if it is not built.
pub fn binary_path() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let binary = profile_dir.join("pgcordon");
    assert!(
        binary.is_file(),
        "the pgcordon binary is not built at {}: run `cargo test --workspace` (which builds it) \
         or `cargo build -p pgcordon` before running the ops tests alone",
        binary.display()
    );
    binary
}

/// A running `pgcordon run --config FILE`, its stdout and stderr going to files. Dropping it
/// kills the process if it is still running.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stdout: PathBuf,
    stderr: PathBuf,
    exit: Option<ExitStatus>,
}

impl Binary {
    /// Starts the binary on `config`, whose client listener is `addr` and admin listener
    /// `admin`, with `env` added to the environment (RUST_LOG is removed unless given).
    pub fn spawn(
        config: &Path,
        addr: SocketAddr,
        admin: Option<SocketAddr>,
        env: &[(&str, &str)],
    ) -> Binary {
        let dir = config.parent().expect("configuration directory");
        let stem = config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("pgcordon");
        let stdout = dir.join(format!("{stem}.stdout"));
        let stderr = dir.join(format!("{stem}.stderr"));
        let mut cmd = Command::new(binary_path());
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the pgcordon binary");
        Binary {
            child,
            addr,
            admin,
            stdout,
            stderr,
            exit: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in pid_t")
    }

    /// Everything the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("poll the child");
        }
        self.exit
    }

    /// Waits for the process to exit, for at most `within`; panics with its log otherwise.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Deadline::new("the pgcordon process exiting", within);
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            let log = self.stderr();
            deadline.tick(format_args!("log so far:\n{log}")).await;
        }
    }

    /// Polls until the client listener accepts TCP connections and, with an admin listener,
    /// `/readyz` answers 200; panics (with the log) after `within` or if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) {
        self.wait_for("/readyz", "pgcordon becoming ready", within)
            .await;
    }

    /// Like [`Binary::wait_ready`] with `/healthz`: up, ready or not.
    pub async fn wait_listening(&mut self, within: Duration) {
        self.wait_for("/healthz", "pgcordon listening", within)
            .await;
    }

    async fn wait_for(&mut self, probe: &str, what: &str, within: Duration) {
        let deadline = Deadline::new(what, within);
        loop {
            if let Some(status) = self.exited() {
                panic!("pgcordon exited with {status} at start:\n{}", self.stderr());
            }
            let listening = TcpStream::connect(self.addr).await.is_ok();
            let answered = match self.admin {
                Some(admin) => matches!(http_get(admin, probe).await, Ok(r) if r.status == 200),
                None => true,
            };
            if listening && answered {
                return;
            }
            let log = self.stderr();
            deadline.tick(format_args!("log so far:\n{log}")).await;
        }
    }

    /// GET `path` on the admin listener.
    pub async fn get(&self, path: &str) -> HttpResponse {
        let admin = self.admin.expect("this pgcordon has an admin listener");
        http_get(admin, path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {admin}: {e}"))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- HTTP ---------------------------------------------------------------------------------

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`, within 5 s. The body is taken by its
/// Content-Length (or chunked encoding), and a short body is an error.
pub async fn http_get(addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP response in 5 s"))?
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("header without ':'"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut body = raw[split + 4..].to_vec();
    let header = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if body.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| bad("body not UTF-8"))?,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

// ---- raw protocol sessions ----------------------------------------------------------------

/// An mTLS session at the protocol level: sees every message, including an unsolicited FATAL.
pub struct RawSession {
    pub stream: TlsStream<TcpStream>,
    /// The server certificate (DER) the handshake presented.
    pub server_cert: Vec<u8>,
}

impl RawSession {
    /// SSLRequest, TLS with `tls`, a StartupMessage (user api, database app), and the startup
    /// answers up to ReadyForQuery. An ErrorResponse during startup is returned as the error.
    pub async fn open(
        addr: SocketAddr,
        tls: rustls::ClientConfig,
    ) -> Result<RawSession, StartupFailure> {
        let tcp = raw::tcp(addr).await;
        let mut stream = raw::tls_after_ssl_request(tcp, Arc::new(tls))
            .await
            .map_err(StartupFailure::Tls)?;
        let server_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec())
            .expect("the server presented a certificate");
        let startup = async {
            stream.write_all(&raw::app_startup()).await?;
            stream.flush().await?;
            raw::read_until_ready_or_error(&mut stream).await
        };
        let messages = startup.await.map_err(StartupFailure::Io)?;
        match messages.last() {
            Some(m) if m.tag == b'Z' => Ok(RawSession {
                stream,
                server_cert,
            }),
            Some(m) if m.tag == b'E' => Err(StartupFailure::Refused(m.error())),
            _ => Err(StartupFailure::Io(io::Error::other("startup ended early"))),
        }
    }

    /// A simple query: first column of each row, or the error.
    pub async fn query(
        &mut self,
        sql: &str,
    ) -> io::Result<Result<Vec<Option<String>>, ErrorFields>> {
        raw::simple_query(&mut self.stream, sql).await
    }

    /// The next message the server sends on its own, within `within`.
    pub async fn next_message(&mut self, within: Duration) -> io::Result<Message> {
        tokio::time::timeout(within, raw::read_message(&mut self.stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no message"))?
    }

    /// Sends Terminate and closes.
    pub async fn terminate(mut self) {
        let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Why [`RawSession::open`] failed.
#[derive(Debug)]
pub enum StartupFailure {
    /// The TLS handshake failed on the client's side.
    Tls(io::Error),
    /// The connection ended (a TLS alert after the client's Finished, a reset, a timeout).
    Io(io::Error),
    /// pgcordon answered the StartupMessage with an ErrorResponse.
    Refused(ErrorFields),
}

/// The server certificate (DER) a new session at `addr` is presented, after a full session
/// (startup to ReadyForQuery, `SELECT 1`, Terminate) proves the handshake is usable.
pub async fn presented_server_cert(addr: SocketAddr, tls: rustls::ClientConfig) -> Vec<u8> {
    let mut session = RawSession::open(addr, tls)
        .await
        .unwrap_or_else(|e| panic!("a new session at {addr}: {e:?}"));
    let one = session.query("SELECT 1").await.expect("SELECT 1 answered");
    assert_eq!(
        one,
        Ok(vec![Some("1".to_owned())]),
        "SELECT 1 on a new session"
    );
    let cert = session.server_cert.clone();
    session.terminate().await;
    cert
}
