//! A misbehaving upstream on 127.0.0.1 for the hostile-input tests: each connection pgcordon
//! opens to it follows the next queued [`Script`], and once the queue is empty it is relayed
//! byte for byte to the real PostgreSQL of the stack.
//!
//! A [`Script::Play`] connection pretends to be PostgreSQL itself: it answers the SSLRequest with
//! `S`, completes TLS with a server certificate of the stack's CA (so pgcordon's verify-full
//! accepts it), reads the StartupMessage and then does exactly what its steps say, including
//! sending garbage, truncated messages, or closing in the middle of one. A
//! [`Script::RelayCut`] connection forwards to the real server and breaks the stream after a
//! given number of server bytes: a connection lost in the middle of a large result.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use pgcordon_tls::rustls;
use pgcordon_tls::tokio_rustls::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one upstream connection does.
#[derive(Debug, Clone)]
pub enum Script {
    /// Forward both ways to the real server, untouched.
    Relay,
    /// Forward, but after `after` bytes from the server, break the stream as `then` says.
    RelayCut { after: usize, then: Cut },
    /// Act as the server: SSLRequest, TLS, StartupMessage, then these steps in order.
    Play(Vec<Step>),
}

/// How a relayed stream is broken.
#[derive(Debug, Clone)]
pub enum Cut {
    /// Close both connections.
    Close,
    /// Write these bytes into the stream (inside TLS records, which they corrupt), then close.
    Garbage(Vec<u8>),
}

/// One step of a played connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes inside TLS.
    Send(Vec<u8>),
    /// Wait for one complete tagged message from pgcordon and drop it.
    AwaitMessage,
    /// End TLS with close_notify, then close the socket.
    Close,
    /// Keep the connection open and silent until pgcordon closes it.
    Stall,
}

/// A listening fake upstream. Dropping it stops accepting.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    accepted: Arc<AtomicUsize>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Listens on a free loopback port; relays to `real` when no script is queued.
    pub async fn start(real: SocketAddr, tls: Arc<rustls::ServerConfig>) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("fake upstream address");
        let scripts: Arc<Mutex<VecDeque<Script>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = TlsAcceptor::from(tls);
        let (queue, count) = (scripts.clone(), accepted.clone());
        let accept_task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let script = queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front()
                    .unwrap_or(Script::Relay);
                tokio::spawn(serve(tcp, script, real, acceptor.clone()));
            }
        });
        FakeUpstream {
            addr,
            scripts,
            accepted,
            accept_task,
        }
    }

    /// Queues the script of a later connection.
    pub fn push(&self, script: Script) {
        let mut queue = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(script);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Scripts not used yet.
    pub fn pending(&self) -> usize {
        self.scripts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// A fake upstream for the harness's stack: the stack's server certificate, relaying to its
/// PostgreSQL.
pub async fn for_stack(h: &crate::Harness) -> FakeUpstream {
    let files = &h.stack.files;
    let tls = server_tls(&files.server_cert, &files.server_key);
    let real = SocketAddr::from(([127, 0, 0, 1], h.stack.cluster.port()));
    FakeUpstream::start(real, tls).await
}

/// pgcordon on the harness's stack with `fake` as its primary (connect timeout 2 s).
pub async fn proxy_on(
    h: &crate::Harness,
    fake: &FakeUpstream,
    pool: &str,
    name: &str,
) -> crate::RunningProxy {
    let real = format!("primary: 127.0.0.1:{}\n", h.stack.cluster.port());
    let fake_line = format!("primary: {}\n  connect_timeout: 2s\n", fake.addr);
    crate::hostile::proxy_with(h, name, pool, "", |text| {
        assert!(text.contains(&real), "unexpected config layout");
        text.replacen(&real, &fake_line, 1)
    })
    .await
}

/// A TLS server configuration (ring) presenting `cert` and `key`, without client certificates.
pub fn server_tls(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            pgcordon_tls::load_certs(cert).expect("fake upstream certificate"),
            pgcordon_tls::load_private_key(key).expect("fake upstream key"),
        )
        .expect("fake upstream TLS configuration");
    Arc::new(config)
}

async fn serve(tcp: TcpStream, script: Script, real: SocketAddr, acceptor: TlsAcceptor) {
    match script {
        Script::Relay => relay(tcp, real, None).await,
        Script::RelayCut { after, then } => relay(tcp, real, Some((after, then))).await,
        Script::Play(steps) => play(tcp, acceptor, steps).await,
    }
}

/// Forwards to `real`; with `cut`, breaks the server-to-pgcordon direction after that many bytes.
async fn relay(proxy: TcpStream, real: SocketAddr, cut: Option<(usize, Cut)>) {
    let Ok(server) = TcpStream::connect(real).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut from_proxy, mut to_proxy) = proxy.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_proxy, &mut to_server).await;
        let _ = to_server.shutdown().await;
    });

    let mut left = cut.as_ref().map_or(usize::MAX, |(after, _)| *after);
    let mut chunk = vec![0u8; 16 * 1024];
    while left > 0 {
        let Ok(n) = from_server.read(&mut chunk).await else {
            break;
        };
        if n == 0 {
            break;
        }
        let n_out = n.min(left);
        if to_proxy.write_all(&chunk[..n_out]).await.is_err() {
            break;
        }
        left -= n_out;
    }
    if let Some((_, Cut::Garbage(bytes))) = &cut {
        let _ = to_proxy.write_all(bytes).await;
    }
    // Both connections end here: pgcordon sees its stream end mid-record.
    upward.abort();
    drop(to_proxy);
    drop(from_server);
}

/// Plays PostgreSQL: `S`, TLS, the StartupMessage, then `steps`.
async fn play(mut tcp: TcpStream, acceptor: TlsAcceptor, steps: Vec<Step>) {
    let mut request = [0u8; 8];
    if tcp.read_exact(&mut request).await.is_err() || tcp.write_all(b"S").await.is_err() {
        return;
    }
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    let mut buf = BytesMut::new();
    if read_startup(&mut tls, &mut buf).await.is_none() {
        return;
    }
    for step in steps {
        match step {
            Step::Send(bytes) => {
                if tls.write_all(&bytes).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            Step::AwaitMessage => {
                if read_tagged(&mut tls, &mut buf).await.is_none() {
                    return;
                }
            }
            Step::Close => {
                let _ = tls.shutdown().await;
                return;
            }
            Step::Stall => {
                let mut sink = [0u8; 4096];
                while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

async fn read_startup<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<()> {
    while buf.len() < 4 {
        fill(stream, buf).await?;
    }
    let len = usize::try_from(i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])).ok()?;
    while buf.len() < len {
        fill(stream, buf).await?;
    }
    buf.advance(len);
    Some(())
}

async fn read_tagged<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<()> {
    while buf.len() < 5 {
        fill(stream, buf).await?;
    }
    let len = usize::try_from(i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]])).ok()?;
    while buf.len() < len + 1 {
        fill(stream, buf).await?;
    }
    buf.advance(len + 1);
    Some(())
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<()> {
    match stream.read_buf(buf).await {
        Ok(n) if n > 0 => Some(()),
        _ => None,
    }
}

// ---- server messages ----------------------------------------------------------------------

/// One tagged message with a correct length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// AuthenticationOk, BackendKeyData and ReadyForQuery(idle): a session that is ready.
pub fn greeting() -> Vec<u8> {
    let mut out = auth_ok();
    let mut key = 4242i32.to_be_bytes().to_vec();
    key.extend_from_slice(&7i32.to_be_bytes());
    out.extend(message(b'K', &key));
    out.extend(message(b'Z', b"I"));
    out
}

/// AuthenticationOk (what a server with `trust` authentication sends).
pub fn auth_ok() -> Vec<u8> {
    message(b'R', &0i32.to_be_bytes())
}

/// The answer PostgreSQL 15 gives to the query pgcordon runs once to learn the defaults it does
/// not report (extra_float_digits, search_path): one row of two text columns.
pub fn defaults_answer() -> Vec<u8> {
    let mut description = 2i16.to_be_bytes().to_vec();
    for name in ["current_setting", "current_setting"] {
        description.extend_from_slice(name.as_bytes());
        description.push(0);
        description.extend_from_slice(&0i32.to_be_bytes()); // table
        description.extend_from_slice(&0i16.to_be_bytes()); // column
        description.extend_from_slice(&25i32.to_be_bytes()); // text
        description.extend_from_slice(&(-1i16).to_be_bytes());
        description.extend_from_slice(&(-1i32).to_be_bytes());
        description.extend_from_slice(&0i16.to_be_bytes());
    }
    let mut row = 2i16.to_be_bytes().to_vec();
    for value in ["1", "\"$user\", public"] {
        row.extend_from_slice(&(value.len() as i32).to_be_bytes());
        row.extend_from_slice(value.as_bytes());
    }
    let mut out = message(b'T', &description);
    out.extend(message(b'D', &row));
    out.extend(message(b'C', b"SELECT 1\0"));
    out.extend(message(b'Z', b"I"));
    out
}
