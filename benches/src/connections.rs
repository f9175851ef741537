//! Connection-level measurements against pgcordon running as its own process: the rate of new
//! mTLS connections (full handshakes, and resumed ones for returning clients) and the memory
//! of many connections held open.
//!
//! Every connection does what a driver does: SSLRequest, the TLS handshake with tenant A's
//! ECDSA P-256 client certificate, a StartupMessage, and reading to ReadyForQuery (which is when
//! pgcordon has extracted and checked the identity). The client runs on the same two cores, so
//! the rate it reaches is shared between both ends; pgcordon's own CPU time per connection,
//! read from /proc, gives what pgcordon alone could sustain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::env::{cpu_ticks, rss_kib, ticks_to_us};

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A client configuration with a session cache (returning client) or without (every handshake
/// full).
pub fn tls_config(mut base: rustls::ClientConfig, resume: bool) -> Arc<rustls::ClientConfig> {
    base.resumption = if resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    Arc::new(base)
}

fn startup_message(database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [("user", "bench"), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = u32::try_from(body.len() + 4)
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Opens one connection through startup; returns it with the kind of handshake it had.
///
/// # Errors
/// Any step fails or pgcordon answers with an ErrorResponse.
pub async fn open(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    database: &str,
) -> anyhow::Result<(TlsStream<TcpStream>, HandshakeKind)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        bail!("SSLRequest answered with {:?}", answer[0] as char);
    }
    let name = ServerName::try_from("localhost")?;
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .context("handshake kind unknown after the handshake")?;
    tls.write_all(&startup_message(database)).await?;
    loop {
        let mut head = [0u8; 5];
        tls.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        tls.read_exact(&mut body).await?;
        match head[0] {
            b'Z' => return Ok((tls, kind)),
            b'E' => bail!("startup refused: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
}

async fn close(mut tls: TlsStream<TcpStream>) {
    let _ = tls.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = tls.shutdown().await;
}

/// A connection-rate measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub full: u64,
    pub resumed: u64,
    /// pgcordon's CPU time per connection, in microseconds.
    pub server_cpu_us: f64,
}

impl Rate {
    /// Connections per second pgcordon could complete with `cpus` cores to itself.
    pub fn server_capacity(&self, cpus: usize) -> f64 {
        cpus as f64 * 1e6 / self.server_cpu_us
    }
}

/// `connectors` tasks open and close connections for `duration`; each task has its own client
/// configuration (so with `resume` each is one returning client with its own session cache).
///
/// # Errors
/// A connection fails.
pub async fn rate(
    addr: SocketAddr,
    base: &rustls::ClientConfig,
    resume: bool,
    connectors: usize,
    duration: Duration,
    pid: u32,
) -> anyhow::Result<Rate> {
    let full = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let ticks_before = cpu_ticks(pid)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connectors {
        let config = tls_config(base.clone(), resume);
        let (full, resumed) = (Arc::clone(&full), Arc::clone(&resumed));
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let (tls, kind) = open(addr, Arc::clone(&config), "app").await?;
                let counter = if kind == HandshakeKind::Resumed {
                    &resumed
                } else {
                    &full
                };
                counter.fetch_add(1, Ordering::Relaxed);
                close(tls).await;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid)? - ticks_before;
    let (full, resumed) = (
        full.load(Ordering::Relaxed),
        resumed.load(Ordering::Relaxed),
    );
    let count = full + resumed;
    Ok(Rate {
        per_sec: count as f64 / secs,
        full,
        resumed,
        server_cpu_us: ticks_to_us(ticks) / count.max(1) as f64,
    })
}

/// Memory of many open connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
    pub open_secs: f64,
}

/// Opens `count` connections (`connectors` at a time), checks pgcordon's RSS while all are
/// open, then closes them.
///
/// # Errors
/// A connection fails.
pub async fn hold(
    addr: SocketAddr,
    base: &rustls::ClientConfig,
    count: usize,
    connectors: usize,
    pid: u32,
) -> anyhow::Result<Held> {
    let rss_before_kib = rss_kib(pid)?;
    let config = tls_config(base.clone(), false);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connectors {
        let (config, next) = (Arc::clone(&config), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
                mine.push(open(addr, Arc::clone(&config), "app").await?.0);
            }
            anyhow::Ok(mine)
        }));
    }
    let mut open_conns = Vec::with_capacity(count);
    for t in tasks {
        open_conns.extend(t.await??);
    }
    let open_secs = start.elapsed().as_secs_f64();
    // Let pgcordon settle (buffers, timers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held_kib = rss_kib(pid)?;
    let connections = open_conns.len();
    for tls in open_conns {
        close(tls).await;
    }
    Ok(Held {
        connections,
        rss_before_kib,
        rss_held_kib,
        open_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_message_is_length_prefixed_protocol_3() {
        let m = startup_message("app");
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &196_608u32.to_be_bytes());
        assert_eq!(*m.last().unwrap(), 0);
    }
}
