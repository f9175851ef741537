//! Identity injection adds no round trip on the client's path.
//!
//! pgcordon reaches PostgreSQL through a TCP relay that records, for each backend connection,
//! when bytes went up (pgcordon to PostgreSQL) and down. A *flight* is a run of chunks in one
//! direction; each round trip between pgcordon and PostgreSQL is one up flight answered by one
//! down flight. With a pool of one backend and two tenants taking turns, every transaction
//! lands on a session that holds the other identity, so pgcordon must inject the identity each
//! time: the test asserts that each client round trip still causes exactly one up flight.
//! The bytes are TLS records, so nothing is decoded: only their timing and direction count.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcordon_devkit::stack::Stack;
use pgcordon_e2e::{client_tls, connect_proxy, init_logging, start_proxy, start_stack, Tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One backend session: the server must hand the session between identities every time.
const POOL: &str = "  mode: transaction\n  size: 1\n  min_idle: 1\n  acquire_timeout: 5s";
/// Transactions per kind and tenant.
const ROUNDS: usize = 20;
/// Quiet time after each transaction, so that the next one's window holds only its own bytes.
const GAP: Duration = Duration::from_millis(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// A chunk the relay forwarded: which backend connection, which way, when it was read.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    conn: usize,
    dir: Dir,
    at: Instant,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Chunk>>>);

impl Log {
    fn push(&self, chunk: Chunk) {
        self.0.lock().expect("log lock").push(chunk);
    }

    /// The directions of the flights between `from` and `to`, per backend connection that saw
    /// traffic in that window.
    fn flights(&self, from: Instant, to: Instant) -> Vec<(usize, Vec<Dir>)> {
        let chunks = self.0.lock().expect("log lock");
        let mut out: Vec<(usize, Vec<Dir>)> = Vec::new();
        for c in chunks.iter().filter(|c| c.at >= from && c.at <= to) {
            let entry = match out.iter_mut().find(|(conn, _)| *conn == c.conn) {
                Some(entry) => entry,
                None => {
                    out.push((c.conn, Vec::new()));
                    out.last_mut().expect("just pushed")
                }
            };
            if entry.1.last() != Some(&c.dir) {
                entry.1.push(c.dir);
            }
        }
        out
    }
}

/// Accepts pgcordon's backend connections and relays each to PostgreSQL, logging chunks.
async fn relay(listener: TcpListener, server: SocketAddr, log: Log) {
    let mut next = 0;
    while let Ok((inbound, _)) = listener.accept().await {
        let outbound = match TcpStream::connect(server).await {
            Ok(outbound) => outbound,
            Err(e) => {
                eprintln!("relay: cannot reach PostgreSQL at {server}: {e}");
                continue;
            }
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (conn, log) = (next, log.clone());
        next += 1;
        tokio::spawn(async move {
            let (from_proxy, to_proxy) = inbound.into_split();
            let (from_server, to_server) = outbound.into_split();
            let up = pump(from_proxy, to_server, conn, Dir::Up, log.clone());
            let down = pump(from_server, to_proxy, conn, Dir::Down, log);
            tokio::join!(up, down);
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: usize,
    dir: Dir,
    log: Log,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.push(Chunk {
            conn,
            dir,
            at: Instant::now(),
        });
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

struct Setup {
    stack: Stack,
    proxy: SocketAddr,
    log: Log,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    init_logging();
    let (dir, stack) = start_stack("pgcordon-rtt").await;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay port");
    let relay_addr = listener.local_addr().expect("relay address");
    let server: SocketAddr = ([127, 0, 0, 1], stack.cluster.port()).into();
    let log = Log::default();
    tokio::spawn(relay(listener, server, log.clone()));

    let listen = Stack::free_listen_addr().expect("free port");
    let yaml = stack.config_yaml(&listen, POOL, "");
    let direct = format!("primary: 127.0.0.1:{}", stack.cluster.port());
    assert!(yaml.contains(&direct), "the config names the primary");
    let yaml = yaml.replace(&direct, &format!("primary: {relay_addr}"));
    let path = dir.path().join("relayed.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let (proxy, stop) = start_proxy(&path).await;
    Setup {
        stack,
        proxy,
        log,
        _stop: stop,
        _dir: dir,
    }
}

async fn connect(s: &Setup, tenant: Tenant) -> tokio_postgres::Client {
    let files = match tenant {
        Tenant::A => &s.stack.files.tenant_a,
        Tenant::B => &s.stack.files.tenant_b,
    };
    let tls = client_tls(&s.stack.files.ca, Some(files));
    connect_proxy(s.proxy, tls, "app")
        .await
        .expect("connect through pgcordon")
}

/// What one measured transaction does, and how many client round trips it makes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One simple Query.
    Simple,
    /// Bind/Execute/Sync of a statement the client prepared before: one round trip.
    Extended,
    /// BEGIN, a read, COMMIT as three separate round trips.
    Explicit,
    /// Parse/Bind/Describe/Execute/Sync of an unnamed statement in one write (query_typed).
    Unnamed,
}

impl Kind {
    fn client_round_trips(self) -> usize {
        match self {
            Kind::Simple | Kind::Extended | Kind::Unnamed => 1,
            Kind::Explicit => 3,
        }
    }
}

/// A connected tenant and the statement it prepared.
struct Tenanted {
    client: tokio_postgres::Client,
    tenant: Tenant,
    statement: tokio_postgres::Statement,
}

async fn tenanted(s: &Setup, tenant: Tenant) -> Tenanted {
    let client = connect(s, tenant).await;
    let statement = client
        .prepare("SELECT current_setting('app.current_user_id') WHERE $1::int = 1")
        .await
        .expect("prepare");
    Tenanted {
        client,
        tenant,
        statement,
    }
}

/// Runs one transaction of `kind`, checking the identity it saw.
async fn transaction(t: &Tenanted, kind: Kind) {
    let (client, tenant) = (&t.client, t.tenant);
    let sql = "SELECT current_setting('app.current_user_id')";
    let seen: String = match kind {
        Kind::Simple => {
            let rows = client.simple_query(sql).await.expect("simple query");
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .expect("one row")
        }
        Kind::Extended => {
            let row = client
                .query_one(&t.statement, &[&1i32])
                .await
                .expect("extended query");
            row.get(0)
        }
        Kind::Unnamed => {
            let row = client.query_typed_one(sql, &[]).await.expect("unnamed");
            row.get(0)
        }
        Kind::Explicit => {
            client.simple_query("BEGIN").await.expect("begin");
            let rows = client.simple_query(sql).await.expect("read");
            client.simple_query("COMMIT").await.expect("commit");
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .expect("one row")
        }
    };
    assert_eq!(seen, tenant.id(), "{kind:?} ran with the client's identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_injection_adds_no_round_trip() {
    let s = setup().await;
    let a = tenanted(&s, Tenant::A).await;
    let b = tenanted(&s, Tenant::B).await;
    // One of each before measuring: the single backend then holds both clients' prepared
    // statements (under pgcordon's names), so no window includes a first preparation.
    for kind in [Kind::Simple, Kind::Extended, Kind::Explicit, Kind::Unnamed] {
        transaction(&a, kind).await;
        transaction(&b, kind).await;
    }
    tokio::time::sleep(GAP).await;

    let mut measured = 0;
    for kind in [Kind::Simple, Kind::Extended, Kind::Explicit, Kind::Unnamed] {
        for round in 0..ROUNDS * 2 {
            // A and B take turns on the single backend session: every transaction needs the
            // identity injected.
            let client = if round % 2 == 0 { &a } else { &b };
            let from = Instant::now();
            transaction(client, kind).await;
            let to = Instant::now();
            tokio::time::sleep(GAP).await;

            let flights = s.log.flights(from, to);
            assert_eq!(
                flights.len(),
                1,
                "{kind:?}: one backend session served the transaction: {flights:?}"
            );
            let dirs = &flights[0].1;
            let ups = dirs.iter().filter(|d| **d == Dir::Up).count();
            assert_eq!(
                dirs.first(),
                Some(&Dir::Up),
                "{kind:?}: pgcordon spoke first: {dirs:?}"
            );
            assert_eq!(
                ups,
                kind.client_round_trips(),
                "{kind:?} (round {round}): each client round trip is one round trip to \
                 PostgreSQL, identity injection included: {dirs:?}"
            );
            assert_eq!(
                dirs.last(),
                Some(&Dir::Down),
                "{kind:?}: answered: {dirs:?}"
            );
            measured += 1;
        }
    }
    assert_eq!(measured, 4 * ROUNDS * 2);

    // The single backend really changed hands: both identities were applied to it over and
    // over, so the injection ran inside the measured windows.
    let sessions = s
        .stack
        .cluster
        .psql(
            "app",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND backend_type = \
             'client backend' AND pid <> pg_backend_pid();",
        )
        .expect("count backends");
    assert_eq!(
        sessions.trim(),
        "1",
        "one pooled backend served both tenants"
    );
}
