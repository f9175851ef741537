//! The first bytes of a client connection, up to an established mTLS stream and its
//! StartupMessage.
//!
//! Accepted openings: SSLRequest then TLS; PostgreSQL 17 direct TLS (a ClientHello straight away,
//! which must negotiate ALPN `postgresql`); GSSENCRequest, answered `N` so the client falls back
//! to SSLRequest. A plaintext StartupMessage is answered with FATAL 28000. Bytes queued after
//! SSLRequest and before the handshake close the connection (CVE-2021-23214 class: they would
//! otherwise be read as if they came through TLS).

use bytes::BytesMut;
use pgcordon_wire::{decode_startup, FirstPacket, StartupError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::errors::ClientError;

/// First byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why a connection ended before a StartupMessage arrived over TLS.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("client closed the connection before TLS")]
    Closed,
    #[error("I/O error before TLS: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake failed: {reason}")]
    Tls {
        reason: pgcordon_tls::HandshakeFailure,
        source: std::io::Error,
    },
    #[error("direct TLS without ALPN \"postgresql\"")]
    NoAlpn,
    #[error("plaintext bytes were queued after SSLRequest")]
    PlaintextAfterSslRequest,
    #[error("plaintext connection refused")]
    Plaintext,
    #[error("invalid first packet: {0}")]
    BadPacket(#[from] StartupError),
    #[error("unexpected {0} inside TLS")]
    Unexpected(&'static str),
}

impl HandshakeError {
    /// A short stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Closed => "closed",
            HandshakeError::Io(_) => "io",
            HandshakeError::Tls { reason, .. } => reason.as_str(),
            HandshakeError::NoAlpn => "no_alpn",
            HandshakeError::PlaintextAfterSslRequest => "plaintext_injection",
            HandshakeError::Plaintext => "plaintext",
            HandshakeError::BadPacket(_) => "bad_packet",
            HandshakeError::Unexpected(_) => "unexpected",
        }
    }
}

/// What a connection turned out to be once its first packet was read.
pub enum Opening {
    /// A client that wants a session.
    Client(Box<Established>),
    /// A CancelRequest; the connection stays open until the cancel has been dealt with, so
    /// that it can then be closed properly (over TLS: with a close_notify alert).
    Cancel(CancelRequest),
}

/// A CancelRequest and the connection it came on.
pub struct CancelRequest {
    pub process_id: i32,
    pub secret_key: Vec<u8>,
    pub stream: CancelStream,
}

/// The connection of a CancelRequest: plaintext (libpq before 17, most drivers) or TLS
/// (libpq 17+ `PQcancelBlocking`).
pub enum CancelStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl CancelStream {
    /// Ends the connection the way a PostgreSQL server does after a cancel: it closes without
    /// answering. Over TLS the close_notify alert goes first; libpq 17+ reads a TLS connection
    /// that ends without it as an error ("unexpected eof").
    pub async fn close(self) {
        let result = match self {
            CancelStream::Plain(mut tcp) => tcp.shutdown().await,
            CancelStream::Tls(mut tls) => tls.shutdown().await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "closing a cancel connection failed");
        }
    }
}

/// An mTLS-established client and its StartupMessage.
pub struct Established {
    pub stream: TlsStream<TcpStream>,
    pub minor: u16,
    pub params: pgcordon_wire::StartupParams,
    /// Bytes read past the StartupMessage (a pipelining client's first messages).
    pub leftover: BytesMut,
}

/// Runs the pre-TLS negotiation and the TLS handshake, then reads the StartupMessage (or a
/// CancelRequest, in plaintext or over TLS).
///
/// # Errors
/// See [`HandshakeError`]; a plaintext StartupMessage is answered before the error returns.
pub async fn establish(
    mut tcp: TcpStream,
    acceptor: &TlsAcceptor,
) -> Result<Opening, HandshakeError> {
    let mut buf = BytesMut::with_capacity(512);
    let direct = loop {
        // Peek one byte: 0x16 opens a TLS record (direct TLS); anything else is a packet length.
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(HandshakeError::Closed);
        }
        if first[0] == TLS_HANDSHAKE_RECORD && buf.is_empty() {
            break true;
        }
        match read_packet(&mut tcp, &mut buf).await? {
            FirstPacket::SslRequest => {
                // Anything already queued behind the request arrived in plaintext.
                if !buf.is_empty() || has_pending(&tcp)? {
                    return Err(HandshakeError::PlaintextAfterSslRequest);
                }
                tcp.write_all(b"S").await?;
                break false;
            }
            FirstPacket::GssEncRequest => tcp.write_all(b"N").await?,
            FirstPacket::CancelRequest {
                process_id,
                secret_key,
            } => {
                return Ok(Opening::Cancel(CancelRequest {
                    process_id,
                    secret_key,
                    stream: CancelStream::Plain(tcp),
                }))
            }
            FirstPacket::Startup { .. } => {
                let mut out = BytesMut::new();
                ClientError::TlsRequired.write(&mut out);
                let _ = tcp.write_all(&out).await;
                return Err(HandshakeError::Plaintext);
            }
        }
    };

    let stream = acceptor
        .accept(tcp)
        .await
        .map_err(|source| HandshakeError::Tls {
            reason: pgcordon_tls::classify_handshake_error(&source),
            source,
        })?;
    let alpn = stream.get_ref().1.alpn_protocol();
    // rustls accepts a ClientHello without ALPN; PostgreSQL requires it for direct TLS, so that
    // a TLS connection meant for another protocol cannot be replayed here.
    if direct && alpn != Some(ALPN_POSTGRESQL) {
        return Err(HandshakeError::NoAlpn);
    }
    read_startup_over_tls(stream).await
}

async fn read_startup_over_tls(
    mut stream: TlsStream<TcpStream>,
) -> Result<Opening, HandshakeError> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let decoded = match decode_startup(&mut buf) {
            Ok(decoded) => decoded,
            Err(e) => {
                refuse_inside_tls(&mut stream, &e.to_string()).await;
                return Err(e.into());
            }
        };
        if let Some(packet) = decoded {
            return match packet {
                FirstPacket::Startup { minor, params, .. } => {
                    Ok(Opening::Client(Box::new(Established {
                        stream,
                        minor,
                        params,
                        leftover: buf,
                    })))
                }
                FirstPacket::CancelRequest {
                    process_id,
                    secret_key,
                } => Ok(Opening::Cancel(CancelRequest {
                    process_id,
                    secret_key,
                    stream: CancelStream::Tls(Box::new(stream)),
                })),
                FirstPacket::SslRequest => {
                    refuse_inside_tls(&mut stream, "SSLRequest inside TLS").await;
                    Err(HandshakeError::Unexpected("SSLRequest"))
                }
                FirstPacket::GssEncRequest => {
                    refuse_inside_tls(&mut stream, "GSSENCRequest inside TLS").await;
                    Err(HandshakeError::Unexpected("GSSENCRequest"))
                }
            };
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

/// Tells a client whose first packet inside TLS is unusable why, as PostgreSQL does (FATAL
/// 08P01), then closes. Over TLS the client can trust the message; before TLS pgcordon
/// sends nothing for a malformed packet.
async fn refuse_inside_tls(stream: &mut TlsStream<TcpStream>, detail: &str) {
    let mut out = BytesMut::new();
    ClientError::Protocol(format!("invalid startup packet: {detail}")).write_fatal(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Reads exactly one untagged packet, never more than it announces.
async fn read_packet(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<FirstPacket, HandshakeError> {
    loop {
        if let Some(packet) = decode_startup(buf)? {
            return Ok(packet);
        }
        // Read only up to the end of this packet, so nothing behind it is consumed.
        let want = if buf.len() < 4 {
            4 - buf.len()
        } else {
            let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            len - buf.len()
        };
        let mut chunk = vec![0u8; want];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the client already sent more bytes (checked without waiting).
fn has_pending(tcp: &TcpStream) -> std::io::Result<bool> {
    use futures_util::FutureExt;
    let mut probe = [0u8; 1];
    match tcp.peek(&mut probe).now_or_never() {
        Some(Ok(n)) => Ok(n > 0),
        Some(Err(e)) => Err(e),
        None => Ok(false),
    }
}
