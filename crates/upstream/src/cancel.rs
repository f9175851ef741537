//! Forwarding a cancel request to the server, over the same verified TLS as sessions.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::connect::{UpstreamError, UpstreamSettings};

/// Asks the server to cancel what session `process_id` is running. Returns once the server has
/// closed the cancel connection, which it does after signalling the session: a caller that waits
/// for this knows a late cancel can no longer hit a later statement on that session.
///
/// # Errors
/// Connection, TLS and I/O errors, each naming the server address.
pub async fn cancel(
    settings: &UpstreamSettings,
    process_id: i32,
    secret_key: i32,
) -> Result<(), UpstreamError> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let io = |source| UpstreamError::Io {
        addr: addr.clone(),
        source,
    };
    let work = async {
        let mut tcp = TcpStream::connect((settings.host.as_str(), settings.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut out);
        tcp.write_all(&out).await.map_err(io)?;
        let answer = tcp.read_u8().await.map_err(io)?;
        if answer != b'S' {
            return Err(UpstreamError::TlsRefused {
                addr: addr.clone(),
                answer: answer as char,
            });
        }
        let connector = TlsConnector::from(settings.tls.clone());
        let mut tls = connector
            .connect(settings.server_name.clone(), tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                addr: addr.clone(),
                source,
            })?;
        out.clear();
        postgres_protocol::message::frontend::cancel_request(process_id, secret_key, &mut out);
        tls.write_all(&out).await.map_err(io)?;
        tls.flush().await.map_err(io)?;
        // The server answers nothing and closes once the signal is sent.
        let mut sink = [0u8; 64];
        loop {
            match tls.read(&mut sink).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(settings.connect_timeout, work)
        .await
        .map_err(|_| UpstreamError::Timeout {
            addr: addr.clone(),
            after: settings.connect_timeout,
        })?
}
