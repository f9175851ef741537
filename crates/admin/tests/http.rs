//! The admin server over real TCP: raw HTTP/1.1 requests to a bound loopback port, the
//! answers read back byte for byte.

use std::net::SocketAddr;
use std::sync::Arc;

use pgcordon_admin::{AdminServer, Readiness, ReadinessFlags};
use pgcordon_metrics::{Attempt, Metrics, TargetRole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
async fn request(address: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(metrics: Arc<Metrics>, readiness: Arc<ReadinessFlags>, max: usize) -> Running {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = AdminServer::bind(loopback, metrics, readiness)
        .await
        .expect("bind")
        .with_max_connections(max);
    let address = server.local_addr();
    assert_ne!(address.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop,
        task,
    }
}

#[tokio::test]
async fn metrics_are_served_in_the_text_format_and_follow_the_counters() {
    let metrics = Metrics::new();
    let flags = Arc::new(ReadinessFlags::new());
    let admin = start(metrics.clone(), flags, 8).await;

    metrics.attempt(Attempt::Accepted);
    metrics
        .target("primary", TargetRole::Primary)
        .unwrap()
        .transactions
        .inc_by(4);
    let reply = request(admin.address, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some(pgcordon_metrics::TEXT_FORMAT)
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let line = |body: &str, prefix: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
    };
    let accepted =
        "pgcordon_client_connection_attempts_total{outcome=\"accepted\",reason=\"none\"} ";
    assert_eq!(line(&reply.body, accepted).as_deref(), Some("1"));
    let tx = "pgcordon_transactions_total{target=\"primary\"} ";
    assert_eq!(line(&reply.body, tx).as_deref(), Some("4"));
    assert!(reply
        .body
        .contains("# TYPE pgcordon_tls_handshake_duration_seconds histogram"));

    // A second scrape sees the new value: nothing is cached.
    metrics.attempt(Attempt::Accepted);
    let again = request(admin.address, "GET", "/metrics?x=1").await;
    assert_eq!(line(&again.body, accepted).as_deref(), Some("2"));
}

#[tokio::test]
async fn health_and_readiness_follow_the_flags() {
    let flags = Arc::new(ReadinessFlags::new());
    let admin = start(Metrics::new(), flags.clone(), 8).await;

    let health = request(admin.address, "GET", "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let reply = request(admin.address, "GET", "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "not ready: client listeners not bound yet\n");

    flags.set_listeners_bound(true);
    let reply = request(admin.address, "GET", "/readyz").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "not ready: no primary backend reachable\n")
    );

    flags.set_primary_reachable(true);
    let reply = request(admin.address, "GET", "/readyz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));

    flags.start_draining();
    let reply = request(admin.address, "GET", "/readyz").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "not ready: draining\n")
    );
    // Alive while draining.
    assert_eq!(request(admin.address, "GET", "/healthz").await.status, 200);
}

#[tokio::test]
async fn a_closure_can_decide_readiness() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let check = Arc::new(|| Readiness::NotReady("warming up"));
    let server = AdminServer::bind(loopback, Metrics::new(), check)
        .await
        .unwrap();
    let address = server.local_addr();
    let task = tokio::spawn(server.serve(std::future::pending::<()>()));
    let reply = request(address, "GET", "/readyz").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "not ready: warming up\n")
    );
    task.abort();
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let admin = start(Metrics::new(), Arc::new(ReadinessFlags::new()), 8).await;

    assert_eq!(request(admin.address, "GET", "/").await.status, 404);
    assert_eq!(
        request(admin.address, "GET", "/metrics/x").await.status,
        404
    );

    let post = request(admin.address, "POST", "/metrics").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let head = request(admin.address, "HEAD", "/healthz").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "", "HEAD answers carry no body");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let admin = start(Metrics::new(), Arc::new(ReadinessFlags::new()), 1).await;

    // The first connection holds the only permit: it is accepted, sends nothing yet.
    let mut holder = TcpStream::connect(admin.address).await.unwrap();
    // The accept loop takes the holder's permit before accepting the next socket, so the
    // second connection is closed without an answer.
    let mut refused = TcpStream::connect(admin.address).await.unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .ok();
    let mut raw = Vec::new();
    let read = refused.read_to_end(&mut raw).await;
    assert!(read.is_err() || raw.is_empty(), "got an answer: {raw:?}");

    // The holder is still served, and once it closes the next client is served again.
    holder
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    holder.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    drop(holder);
    // The permit returns when the holder's task ends; retry until it has (bounded).
    let mut served = false;
    for _ in 0..200 {
        let mut stream = TcpStream::connect(admin.address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let mut raw = Vec::new();
        if stream.read_to_end(&mut raw).await.is_ok() && raw.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served, "the permit never came back");
}

#[tokio::test]
async fn shutdown_closes_the_socket() {
    let admin = start(Metrics::new(), Arc::new(ReadinessFlags::new()), 8).await;
    assert_eq!(request(admin.address, "GET", "/healthz").await.status, 200);

    admin.stop.send(()).unwrap();
    admin.task.await.expect("serve ends cleanly");
    let refused = TcpStream::connect(admin.address).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn binding_a_used_port_names_the_address() {
    let first = start(Metrics::new(), Arc::new(ReadinessFlags::new()), 8).await;
    let error = AdminServer::bind(
        first.address,
        Metrics::new(),
        Arc::new(ReadinessFlags::new()),
    )
    .await
    .err()
    .expect("the port is taken");
    assert!(
        error.to_string().contains(&first.address.to_string()),
        "{error}"
    );
}
