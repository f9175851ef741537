//! Establishing one upstream session: TCP, SSLRequest, verified TLS, startup, authentication,
//! and the server's parameters up to the first ReadyForQuery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgcordon_wire::{decode_frame, RawMessage};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::auth::authenticate;
use crate::password::{PasswordError, PasswordSource};

/// Largest message accepted from a server during startup; startup messages are small.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;

/// Whether to use SCRAM-SHA-256-PLUS (channel binding) when the server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingPolicy {
    /// Use it when offered, plain SCRAM-SHA-256 otherwise.
    Prefer,
    /// Fail unless the server offers it.
    Require,
    /// Never use it.
    Disable,
}

/// Everything needed to open one upstream session.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: PasswordSource,
    pub tls: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    pub connect_timeout: Duration,
    pub channel_binding: ChannelBindingPolicy,
    pub allow_cleartext_password: bool,
    pub allow_md5_password: bool,
    /// Extra startup parameters, such as application_name.
    pub startup_params: Vec<(String, String)>,
}

/// An authenticated upstream session, idle (its first ReadyForQuery consumed).
pub struct Backend {
    pub stream: TlsStream<TcpStream>,
    /// Bytes read from the server but not consumed yet.
    pub read_buf: BytesMut,
    pub process_id: i32,
    pub secret_key: i32,
    /// ParameterStatus values reported at startup.
    pub params: Vec<(String, String)>,
    pub addr: SocketAddr,
    /// Whether SCRAM-SHA-256-PLUS (channel binding) was used.
    pub channel_bound: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

/// Why an upstream session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("server {addr} refused TLS (answered {answer:?} to SSLRequest)")]
    TlsRefused { addr: String, answer: char },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("server {addr} rejected the session: {code} {message}")]
    Server {
        addr: String,
        code: String,
        message: String,
    },
    #[error("server {addr} asked for {method}, which the configuration does not allow")]
    MethodRefused { addr: String, method: &'static str },
    #[error("server {addr} does not offer SCRAM-SHA-256-PLUS, and channel binding is required")]
    ChannelBindingRequired { addr: String },
    #[error("SCRAM exchange with {addr} failed: {source}")]
    Scram {
        addr: String,
        source: std::io::Error,
    },
    #[error("password for the upstream: {0}")]
    Password(#[from] PasswordError),
    #[error("protocol error from {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    #[error("I/O error with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
}

impl UpstreamError {
    /// The SQLSTATE the server sent, when the server itself refused.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            UpstreamError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Opens and authenticates one upstream session within `settings.connect_timeout`.
///
/// # Errors
/// See [`UpstreamError`]; each variant names the server address.
pub async fn connect(settings: &UpstreamSettings) -> Result<Backend, UpstreamError> {
    let addr = format!("{}:{}", settings.host, settings.port);
    tokio::time::timeout(settings.connect_timeout, connect_inner(settings, &addr))
        .await
        .map_err(|_| UpstreamError::Timeout {
            addr,
            after: settings.connect_timeout,
        })?
}

async fn connect_inner(settings: &UpstreamSettings, addr: &str) -> Result<Backend, UpstreamError> {
    let mut tcp = open_tcp(settings, addr).await?;
    let peer = tcp.peer_addr().map_err(|source| io_err(addr, source))?;

    // SSLRequest, then exactly one byte: reading more could take in plaintext a man in the middle
    // queued before the handshake.
    let mut request = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    tcp.write_all(&request)
        .await
        .map_err(|source| io_err(addr, source))?;
    let answer = tcp.read_u8().await.map_err(|source| io_err(addr, source))?;
    if answer != b'S' {
        return Err(UpstreamError::TlsRefused {
            addr: addr.into(),
            answer: answer as char,
        });
    }
    let connector = TlsConnector::from(settings.tls.clone());
    let mut stream = connector
        .connect(settings.server_name.clone(), tcp)
        .await
        .map_err(|source| UpstreamError::Tls {
            addr: addr.into(),
            source,
        })?;

    let mut out = BytesMut::new();
    let mut params: Vec<(&str, &str)> =
        vec![("user", &settings.user), ("database", &settings.database)];
    params.extend(
        settings
            .startup_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    postgres_protocol::message::frontend::startup_message(params, &mut out)
        .map_err(|source| io_err(addr, source))?;
    stream
        .write_all(&out)
        .await
        .map_err(|source| io_err(addr, source))?;

    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(8192),
        addr,
    };
    let channel_bound = authenticate(&mut conn, settings).await?;
    let (process_id, secret_key, params) = read_until_ready(&mut conn).await?;
    Ok(Backend {
        stream: conn.stream,
        read_buf: conn.buf,
        process_id,
        secret_key,
        params,
        addr: peer,
        channel_bound,
    })
}

async fn open_tcp(settings: &UpstreamSettings, addr: &str) -> Result<TcpStream, UpstreamError> {
    let candidates: Vec<SocketAddr> =
        tokio::net::lookup_host((settings.host.as_str(), settings.port))
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: settings.host.clone(),
                source,
            })?
            .collect();
    let mut last = None;
    for candidate in candidates {
        match TcpStream::connect(candidate).await {
            Ok(tcp) => {
                // Small request/response messages: never wait to coalesce them.
                tcp.set_nodelay(true)
                    .map_err(|source| io_err(addr, source))?;
                return Ok(tcp);
            }
            Err(source) => last = Some(source),
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::other("no address found"));
    Err(UpstreamError::Connect {
        addr: addr.into(),
        source,
    })
}

/// Reads ParameterStatus and BackendKeyData up to ReadyForQuery.
async fn read_until_ready(
    conn: &mut Conn<'_>,
) -> Result<(i32, i32, Vec<(String, String)>), UpstreamError> {
    let mut key = (0, 0);
    let mut params = Vec::new();
    loop {
        let msg = conn.next().await?;
        let body = msg.body();
        match msg.tag {
            b'S' => {
                let mut parts = body.split(|b| *b == 0);
                let name = parts.next().unwrap_or_default();
                let value = parts.next().unwrap_or_default();
                params.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
            b'K' if body.len() == 8 => {
                key.0 = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                key.1 = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            }
            b'Z' => return Ok((key.0, key.1, params)),
            b'N' => {}
            b'E' => return Err(conn.server_error(body)),
            other => return Err(conn.protocol(format!("unexpected message {:?}", other as char))),
        }
    }
}

fn io_err(addr: &str, source: std::io::Error) -> UpstreamError {
    UpstreamError::Io {
        addr: addr.into(),
        source,
    }
}

/// A connection being established: the stream, its read buffer, and its address for errors.
pub(crate) struct Conn<'a> {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) buf: BytesMut,
    pub(crate) addr: &'a str,
}

impl Conn<'_> {
    pub(crate) async fn next(&mut self) -> Result<RawMessage, UpstreamError> {
        loop {
            match decode_frame(&mut self.buf, MAX_STARTUP_MESSAGE) {
                Ok(Some(msg)) => return Ok(msg),
                Ok(None) => {}
                Err(e) => return Err(self.protocol(e.to_string())),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.protocol("server closed the connection during startup".into()));
            }
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream.write_all(bytes).await.map_err(|e| self.io(e))
    }

    pub(crate) fn server_error(&self, body: &[u8]) -> UpstreamError {
        let fields = pgcordon_wire::inspect::error_fields(body);
        UpstreamError::Server {
            addr: self.addr.into(),
            code: fields.code.unwrap_or_else(|| "XX000".into()),
            message: fields.message.unwrap_or_default(),
        }
    }

    pub(crate) fn protocol(&self, detail: String) -> UpstreamError {
        UpstreamError::Protocol {
            addr: self.addr.into(),
            detail,
        }
    }

    fn io(&self, source: std::io::Error) -> UpstreamError {
        io_err(self.addr, source)
    }
}
