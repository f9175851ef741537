//! Slowloris: clients that trickle their opening bytes (one byte a second) and never finish
//! the TLS handshake or the StartupMessage. pgcordon must close each of them when
//! `tls.handshake_timeout` runs out (the timer covers the SSLRequest, the TLS handshake and the
//! StartupMessage), log the refusal with reason `timeout`, count it in
//! `pgcordon_client_connection_attempts_total{outcome="tls_failure",reason="timeout"}`, and
//! keep serving real clients while hundreds of such connections are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgcordon_devkit::stack::TENANT_A;
use pgcordon_e2e::raw::{self, SSL_REQUEST};
use pgcordon_e2e::{launch, RunningProxy, Tenant};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const POOL: &str = "  mode: transaction\n  size: 4\n  min_idle: 1\n  acquire_timeout: 5s";
/// Short enough to keep the test quick, long enough that a debug-build TLS handshake under
/// the load of 200 connections on two cores still completes well inside it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time between two trickled bytes.
const TRICKLE: Duration = Duration::from_secs(1);
/// How late after the timeout a close may be seen: scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);
/// Clients can start a little before the proxy's timer does (accept), never after.
const EARLY: Duration = Duration::from_millis(100);
const CROWD: usize = 200;

/// Where in the opening a trickler stalls.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Trickles the SSLRequest itself.
    BeforeTls,
    /// Sends SSLRequest, gets `S`, trickles a real ClientHello.
    InHandshake,
    /// Completes the TLS handshake with a valid certificate, trickles the StartupMessage.
    AfterTls,
}

/// How one trickling connection ended.
#[derive(Debug)]
struct Trickled {
    phase: Phase,
    local_port: u16,
    /// From the TCP connect to the moment the client saw the close.
    closed_after: Duration,
    /// Bytes of the opening that were written before the close.
    sent: usize,
}

struct Bench {
    proxy: RunningProxy,
    ca: std::path::PathBuf,
    tenant_a: (std::path::PathBuf, std::path::PathBuf),
}

impl Bench {
    fn tls(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(pgcordon_e2e::client_tls(&self.ca, Some(&self.tenant_a)))
    }
}

/// A harness (for the stack) and a second pgcordon with the short handshake timeout, started
/// in-process so its metrics can be read.
async fn bench(h: &pgcordon_e2e::Harness) -> Bench {
    let timeout = format!("handshake_timeout: {}s", HANDSHAKE_TIMEOUT.as_secs());
    let base = h.stack.config_yaml("127.0.0.1:0", POOL, "");
    let text = raw::with_tls_lines(&base, &[timeout]);
    let path = h.stack.dir.join("slowloris.yaml");
    std::fs::write(&path, text).expect("write config");
    Bench {
        proxy: launch(&path).await,
        ca: h.stack.files.ca.clone(),
        tenant_a: h.tenant_files(Tenant::A).clone(),
    }
}

/// The bytes of a real ClientHello for `config`, as a client would send them after `S`.
fn client_hello(config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write ClientHello");
    }
    assert!(hello.len() > 100, "a ClientHello of {} bytes", hello.len());
    hello
}

/// Writes `bytes` one at a time, `TRICKLE` apart, watching for the peer's close between them;
/// returns how many bytes were written when the close was seen (after the last byte, it keeps
/// waiting up to 30 s).
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> usize {
    let mut sent = 0;
    let mut buf = [0u8; 256];
    loop {
        if sent < bytes.len() {
            let wrote = stream.write_all(&bytes[sent..sent + 1]).await;
            if wrote.is_err() || stream.flush().await.is_err() {
                return sent;
            }
            sent += 1;
        }
        let wait = if sent < bytes.len() {
            TRICKLE
        } else {
            Duration::from_secs(30)
        };
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) if sent < bytes.len() => continue,
            Err(_) => panic!("still open 30 s after the whole opening was trickled"),
            Ok(Ok(0)) | Ok(Err(_)) => return sent,
            Ok(Ok(n)) => panic!("the proxy answered a trickled opening: {:?}", &buf[..n]),
        }
    }
}

/// Opens a connection that stalls in `phase` and reports when the proxy closed it.
async fn trickler(addr: SocketAddr, phase: Phase, tls: Arc<rustls::ClientConfig>) -> Trickled {
    let start = Instant::now();
    let mut tcp = raw::tcp(addr).await;
    let local_port = tcp.local_addr().expect("local addr").port();
    let sent = match phase {
        Phase::BeforeTls => trickle(&mut tcp, &SSL_REQUEST).await,
        Phase::InHandshake => {
            tcp.write_all(&SSL_REQUEST).await.expect("SSLRequest");
            assert_eq!(tcp.read_u8().await.expect("answer"), b'S');
            trickle(&mut tcp, &client_hello(tls)).await
        }
        Phase::AfterTls => {
            match raw::tls_after_ssl_request(tcp, tls).await {
                Ok(mut stream) => trickle(&mut stream, &raw::app_startup()).await,
                // Under load the handshake itself may not finish in time: the proxy's
                // timeout is what ended it either way, which the timing below checks.
                Err(_) => 0,
            }
        }
    };
    Trickled {
        phase,
        local_port,
        closed_after: start.elapsed(),
        sent,
    }
}

/// Checks that the proxy, not the client, ended `t`, and at the timeout.
fn assert_closed_by_timeout(t: &Trickled) {
    assert!(
        t.closed_after + EARLY >= HANDSHAKE_TIMEOUT && t.closed_after <= HANDSHAKE_TIMEOUT + SLACK,
        "{t:?}: closed after {:?}, expected {HANDSHAKE_TIMEOUT:?} (+{SLACK:?})",
        t.closed_after
    );
}

/// One metric sample of the proxy's registry (0 when the series does not exist yet).
fn sample(proxy: &RunningProxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    pgcordon_e2e::metric(&proxy.obs, name, labels)
}

const ATTEMPTS: &str = "pgcordon_client_connection_attempts_total";
const TIMEOUTS: [(&str, &str); 2] = [("outcome", "tls_failure"), ("reason", "timeout")];
const CONNECTIONS: &str = "pgcordon_client_connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_client_is_closed_at_the_handshake_timeout_in_every_phase() {
    let h = raw::harness(POOL, "").await;
    let b = bench(&h).await;
    let before = sample(&b.proxy, ATTEMPTS, &TIMEOUTS);

    let phases = [Phase::BeforeTls, Phase::InHandshake, Phase::AfterTls];
    let runs = phases.map(|phase| tokio::spawn(trickler(b.proxy.addr, phase, b.tls())));
    for run in runs {
        let t = run.await.expect("trickler task");
        assert_closed_by_timeout(&t);
        assert!(
            t.sent >= 2,
            "{:?}: closed before the trickle started: {t:?}",
            t.phase
        );
        raw::expect_refusal_logged(t.local_port, "timeout").await;
    }
    assert_eq!(sample(&b.proxy, ATTEMPTS, &TIMEOUTS) - before, 3.0);
    let limit = [("limit", "handshake_timeout")];
    assert_eq!(
        sample(&b.proxy, "pgcordon_limits_reached_total", &limit),
        3.0
    );
    assert_eq!(
        sample(&b.proxy, CONNECTIONS, &[("state", "handshake")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_trickling_clients_do_not_keep_a_real_client_out() {
    let h = raw::harness(POOL, "").await;
    let b = bench(&h).await;
    let before = sample(&b.proxy, ATTEMPTS, &TIMEOUTS);

    // Half stall before TLS, a third inside the handshake, the rest after it.
    let crowd: Vec<_> = (0..CROWD)
        .map(|i| {
            let phase = match i % 6 {
                0..=2 => Phase::BeforeTls,
                3 | 4 => Phase::InHandshake,
                _ => Phase::AfterTls,
            };
            tokio::spawn(trickler(b.proxy.addr, phase, b.tls()))
        })
        .collect();

    // Once the crowd is in, a real client connects and queries, well before the timeout.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let open = sample(&b.proxy, CONNECTIONS, &[("state", "handshake")]);
    assert!(
        open >= CROWD as f64,
        "only {open} trickling connections open"
    );
    let start = Instant::now();
    let mut config = raw::pg_config(b.proxy.addr.port(), "app");
    config.connect_timeout(Duration::from_secs(5));
    let real = raw::connect_tls(&config, (*b.tls()).clone())
        .await
        .expect("a real client connects next to 200 trickling ones");
    let who: String = real
        .query_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .expect("query")
        .get(0);
    let took = start.elapsed();
    assert_eq!(who, TENANT_A);
    assert!(
        took < HANDSHAKE_TIMEOUT - Duration::from_millis(500),
        "the real client took {took:?}"
    );
    assert!(
        sample(&b.proxy, CONNECTIONS, &[("state", "handshake")]) >= CROWD as f64,
        "the crowd was already gone when the real client got in"
    );

    let mut ended = Vec::new();
    for run in crowd {
        ended.push(run.await.expect("trickler task"));
    }
    for t in &ended {
        assert_closed_by_timeout(t);
    }
    for t in &ended {
        let addr = format!("client.addr=127.0.0.1:{}", t.local_port);
        let lines = raw::log_lines(&[&addr, "reason=\"timeout\""]);
        let lines = if lines.is_empty() {
            raw::log_lines(&[&addr, "reason=timeout"])
        } else {
            lines
        };
        assert_eq!(lines.len(), 1, "{t:?}: refusal log lines {lines:?}");
    }
    assert_eq!(sample(&b.proxy, ATTEMPTS, &TIMEOUTS) - before, CROWD as f64);
    assert_eq!(
        sample(&b.proxy, CONNECTIONS, &[("state", "handshake")]),
        0.0
    );

    // The real client's session outlived the crowd.
    let again: String = real
        .query_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .expect("query after the crowd")
        .get(0);
    assert_eq!(again, TENANT_A);
}
