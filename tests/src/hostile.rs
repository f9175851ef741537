//! Tools for the hostile-input tests (tests/malformed.rs).
//!
//! - [`run`]: each test on its own runtime whose threads carry the test's name. pgcordon spawns a
//!   task per connection, and a panic in a spawned task does not fail a test by itself; a panic
//!   hook records every panic on such a thread, and [`run`] fails the test that owns the thread.
//! - A seeded generator of arbitrary bytes (SplitMix64), so "random" input is the same each run.
//! - The resident memory of this process (the proxy runs in-process), sampled while a test runs.
//! - Frames whose lengths lie, startup packets with arbitrary bytes, and readers for sessions
//!   that must end with one FATAL ErrorResponse and a close.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pgcordon_tls::tokio_rustls::client::TlsStream;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLock;

use crate::raw::{self, ErrorFields, Message};
use crate::{Harness, RunningProxy, Tenant};

const THREAD_PREFIX: &str = "hostile-";

/// Panics seen on test runtime threads: (thread name, panic text).
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Taken shared by every test, exclusively by a test that measures the process's memory.
static MEMORY: RwLock<()> = RwLock::const_new(());

/// Whether a test shares the process with others or needs it alone (memory measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Shared,
    Exclusive,
}

fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            if thread.starts_with(THREAD_PREFIX) {
                let mut panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
                panics.push((thread, info.to_string()));
            }
            previous(info);
        }));
    });
}

/// Runs `body` on a fresh runtime (two workers) named after `test`, and fails if any task on
/// it panicked, whether or not anyone awaited that task.
pub fn run<F: Future<Output = ()>>(test: &str, access: Access, body: F) {
    install_panic_hook();
    let name = format!("{THREAD_PREFIX}{test}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name.clone())
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(async {
        let _held = match access {
            Access::Shared => (Some(MEMORY.read().await), None),
            Access::Exclusive => (None, Some(MEMORY.write().await)),
        };
        body.await;
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    let panics: Vec<_> = PANICS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(thread, _)| *thread == name)
        .cloned()
        .collect();
    assert!(panics.is_empty(), "tasks of {test} panicked: {panics:#?}");
}

// ---- arbitrary bytes ----------------------------------------------------------------------

/// SplitMix64: a tiny generator whose output is fixed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number from `low` to `high`, both included.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---- memory -------------------------------------------------------------------------------

/// This process's resident set size in KiB (VmRSS in /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Samples [`rss_kib`] every 5 ms until dropped; [`RssSampler::peak`] is the highest seen.
pub struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start() -> RssSampler {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib()));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                seen.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        RssSampler { peak, task }
    }

    pub fn peak(&self) -> u64 {
        let now = rss_kib();
        self.peak
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed)
            .max(now)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- frames -------------------------------------------------------------------------------

/// A tagged message header announcing `len` (which counts itself, not the tag).
pub fn header(tag: u8, len: i32) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// A tagged message with a correct length.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = header(tag, body.len() as i32 + 4);
    out.extend_from_slice(body);
    out
}

/// A protocol 3.0 StartupMessage whose names and values are arbitrary bytes.
pub fn startup_packet(params: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut body = raw::PROTOCOL_3_0.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(value);
        body.push(0);
    }
    body.push(0);
    let mut packet = (body.len() as i32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// Message types a client sends (protocol 3.0), during authentication or after it.
pub const CLIENT_TAGS: &[u8] = b"QPBDECSHFXdcfp";

// ---- what the protocol calls for ----------------------------------------------------------

/// What pgcordon must make of a first packet, by PostgreSQL's rules: 0x16 opens a direct TLS
/// ClientHello (only before TLS); otherwise a length of 8 to 10,000 bytes that counts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Refused as an invalid packet (bad length, unknown request code or protocol).
    BadPacket,
    /// Taken as a TLS handshake (which then fails).
    DirectTls,
    /// Incomplete: pgcordon waits for the rest.
    NeedsMore,
}

/// Classifies an arbitrary first packet; panics for the (improbable) bytes that form a valid
/// request, so that a seed producing one is replaced rather than silently mis-expected.
pub fn opening_of(bytes: &[u8], inside_tls: bool) -> Opening {
    if !inside_tls && bytes[0] == 0x16 {
        return Opening::DirectTls;
    }
    let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if !(8..=10_000).contains(&len) {
        return Opening::BadPacket;
    }
    if len as usize > bytes.len() {
        return Opening::NeedsMore;
    }
    let code = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let valid = code >> 16 == 3 || (80_877_102..=80_877_104).contains(&code);
    assert!(
        !valid,
        "these bytes form a valid request code; pick another seed"
    );
    Opening::BadPacket
}

/// The words of the refusal a session owes a client that sends `bytes` (frames limited to
/// `max` bytes): its first frame's header decides (the length counts itself, 4 to `max`); a
/// complete frame of a type clients never send is unexpected. Panics for the improbable bytes
/// that form an incomplete frame or a real client message.
pub fn refusal_of(bytes: &[u8], max: usize) -> Vec<String> {
    let tag = format!("{:?}", bytes[0] as char);
    let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if len < 4 {
        return vec!["invalid message length".into(), len.to_string(), tag];
    }
    if len as usize > max {
        return vec!["too large".into(), len.to_string(), max.to_string()];
    }
    assert!(
        (len as usize) < bytes.len(),
        "an incomplete frame; pick another seed"
    );
    assert!(
        !CLIENT_TAGS.contains(&bytes[0]),
        "a client message; pick another seed"
    );
    vec!["unexpected message type".into(), tag]
}

// ---- checks -------------------------------------------------------------------------------

/// How many log lines are captured now: where to search from, so that a line about an earlier
/// connection (of another test, perhaps from the same reused client port) does not count.
pub fn log_mark() -> usize {
    raw::log_lines(&[]).len()
}

/// Waits (5 s) for a line captured after `mark` that contains all of `needles`.
pub async fn logged(mark: usize, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = raw::log_lines(&[]);
        let found = lines
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .find(|line| needles.iter().all(|n| line.contains(n)));
        if let Some(line) = found {
            return line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needles:?} in {:#?}",
            lines.get(mark..)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for pgcordon's WARN line (after `mark`) refusing the client at `port` for `reason`.
pub async fn refusal_logged(mark: usize, port: u16, reason: &str, needles: &[&str]) -> String {
    let addr = format!("client.addr=127.0.0.1:{port}");
    let reason = format!("reason=\"{reason}\"");
    let all: Vec<&str> = [addr.as_str(), "WARN", reason.as_str()]
        .into_iter()
        .chain(needles.iter().copied())
        .collect();
    logged(mark, &all).await
}

/// Waits (5 s) until at least `n` captured lines contain all of `needles` and pass `keep`.
pub async fn logged_times(needles: &[&str], n: usize, keep: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let count = || raw::log_lines(needles).iter().filter(|l| keep(l)).count();
    while count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} log lines with {needles:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks an error's SQLSTATE and that its message holds each of `needles`.
pub fn expect_code<S: AsRef<str>>(error: &ErrorFields, code: &str, needles: &[S]) {
    assert_eq!(error.code, code, "{error:?}");
    for needle in needles {
        let needle = needle.as_ref();
        assert!(
            error.message.contains(needle),
            "{needle:?} not in {error:?}"
        );
    }
}

/// A new tokio-postgres client through `addr` (tenant B) runs a query with its own identity.
pub async fn still_serves(h: &Harness, addr: SocketAddr) {
    let tls = h.client_tls(h.tenant_files(Tenant::B));
    let client = raw::connect_tls(&raw::pg_config(addr.port(), "app"), tls)
        .await
        .expect("a good client connects after the hostile ones");
    let row = client
        .query_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .expect("a good client's query");
    assert_eq!(row.get::<_, String>(0), Tenant::B.id());
}

/// A table the app role can write, to see which statements really ran.
pub fn create_probe(h: &Harness) {
    h.admin(
        "CREATE TABLE malformed_probe (id int); \
         GRANT SELECT, INSERT ON malformed_probe TO pgcordon_app;",
    );
}

/// Rows of the probe table with `id`, once no app session is left inside a transaction (a
/// session pgcordon closed may take a moment to end on the server).
pub async fn probe_rows(h: &Harness, id: i32) -> i64 {
    let open = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgcordon_app' \
                AND state LIKE 'idle in transaction%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.admin(open).trim() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "a transaction stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = h.admin(&format!(
        "SELECT count(*) FROM malformed_probe WHERE id = {id}"
    ));
    count.trim().parse().expect("a count")
}

/// pgcordon on the harness's stack, its configuration passed through `edit` first.
pub async fn proxy_with(
    h: &Harness,
    name: &str,
    pool: &str,
    extra: &str,
    edit: impl FnOnce(String) -> String,
) -> RunningProxy {
    let text = edit(h.stack.config_yaml("127.0.0.1:0", pool, extra));
    let path = h.stack.dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write config");
    crate::launch(&path).await
}

// ---- sessions -----------------------------------------------------------------------------

/// Where to connect and with which certificate.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub cert: (PathBuf, PathBuf),
}

impl Target {
    /// pgcordon at `addr`, reached as tenant A of `h`'s stack.
    pub fn tenant_a(h: &crate::Harness, addr: SocketAddr) -> Target {
        Target {
            addr,
            ca: h.stack.files.ca.clone(),
            cert: h.tenant_files(crate::Tenant::A).clone(),
        }
    }

    /// Connects (with TLS when `tls`), writes `bytes`, ends the client's stream when `end`, and
    /// waits `within` for pgcordon to close; returns the client's port and how it ended.
    pub async fn opening(
        &self,
        bytes: &[u8],
        tls: bool,
        end: bool,
        within: Duration,
    ) -> (u16, Result<raw::Closed, String>) {
        if tls {
            let mut stream = self.tls().await;
            let port = stream.get_ref().0.local_addr().expect("local addr").port();
            stream.write_all(bytes).await.expect("write");
            if end {
                let _ = stream.shutdown().await;
            }
            return (port, raw::wait_closed(&mut stream, within).await);
        }
        let mut tcp = raw::tcp(self.addr).await;
        let port = tcp.local_addr().expect("local addr").port();
        tcp.write_all(bytes).await.expect("write");
        if end {
            let _ = tcp.shutdown().await;
        }
        (port, raw::wait_closed(&mut tcp, within).await)
    }

    /// TCP, SSLRequest and TLS with the client certificate; no StartupMessage yet.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        let config = raw::tls_config(&self.ca, Some(&self.cert), &[]);
        raw::tls_after_ssl_request(raw::tcp(self.addr).await, config)
            .await
            .expect("TLS with pgcordon")
    }

    /// A session past its greeting (the ReadyForQuery after startup).
    pub async fn session(&self) -> TlsStream<TcpStream> {
        self.greeted(&raw::app_startup()).await
    }

    /// Sends `packet` as the StartupMessage over TLS and requires a greeting that ends with
    /// ReadyForQuery.
    pub async fn greeted(&self, packet: &[u8]) -> TlsStream<TcpStream> {
        let mut stream = self.tls().await;
        stream.write_all(packet).await.expect("startup");
        let greeting = raw::read_until_ready_or_error(&mut stream)
            .await
            .expect("greeting");
        assert_eq!(greeting.last().map(|m| m.tag), Some(b'Z'), "{greeting:?}");
        stream
    }
}

/// Runs `sql` as a simple Query; it must succeed.
pub async fn run_ok(stream: &mut TlsStream<TcpStream>, sql: &str) -> Vec<Option<String>> {
    let answer = raw::simple_query(stream, sql).await.expect("an answer");
    answer.unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// Reads `n` messages, each a ReadyForQuery with `status`.
pub async fn expect_ready<R: AsyncRead + Unpin>(r: &mut R, n: usize, status: u8) {
    for i in 0..n {
        let m = raw::read_message(r).await.expect("a message");
        assert!(
            m.tag == b'Z' && m.body == [status],
            "answer {i} of {n}: {m:?}"
        );
    }
}

/// Reads one message, which must have `tag`.
pub async fn expect_tag<R: AsyncRead + Unpin>(r: &mut R, tag: u8) -> Message {
    let m = raw::read_message(r).await.expect("a message");
    assert_eq!(m.tag, tag, "{m:?}");
    m
}

/// Writes `bytes` and reads to the first ErrorResponse, which must be FATAL and be followed by
/// a close within 5 s with nothing more. Returns what came before it and its fields.
pub async fn send_expect_fatal(
    stream: &mut TlsStream<TcpStream>,
    bytes: &[u8],
) -> (Vec<Message>, ErrorFields) {
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    expect_fatal(stream).await
}

/// Reads to the first ErrorResponse (skipping any ReadyForQuery), which must be FATAL and be
/// followed by a close within 5 s with nothing more.
pub async fn expect_fatal(stream: &mut TlsStream<TcpStream>) -> (Vec<Message>, ErrorFields) {
    let mut before = Vec::new();
    let error = loop {
        let batch = raw::read_until_ready_or_error(stream)
            .await
            .unwrap_or_else(|e| panic!("no ErrorResponse: {e}; before it {before:?}"));
        let last = batch.last().cloned().expect("at least one message");
        before.extend(batch);
        if last.tag == b'E' {
            before.pop();
            break last.error();
        }
    };
    assert_eq!(error.severity, "FATAL", "{error:?}");
    let closed = raw::wait_closed(stream, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("not closed after {error:?}: {e}"));
    assert!(closed.received.is_empty(), "after {error:?}: {closed:?}");
    (before, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The classifiers decide what each random input must get: check them on inputs whose
    // answer is known without them.
    #[test]
    fn the_classifiers_agree_with_the_protocol() {
        let startup = raw::app_startup();
        assert_eq!(opening_of(&startup[..4], true), Opening::NeedsMore);
        assert_eq!(opening_of(&[0x16, 3, 1, 0, 5], false), Opening::DirectTls);
        assert_eq!(opening_of(&[0x16, 3, 1, 0, 5], true), Opening::BadPacket);
        assert_eq!(opening_of(&(-1i32).to_be_bytes(), true), Opening::BadPacket);
        assert_eq!(
            opening_of(&[0, 0, 0, 8, 0, 1, 0, 0], false),
            Opening::BadPacket
        );
        let max = 1 << 16;
        assert_eq!(
            refusal_of(&header(b'Q', 2), max)[0],
            "invalid message length"
        );
        assert_eq!(
            refusal_of(&header(b'Q', max as i32 + 1), max)[0],
            "too large"
        );
        assert_eq!(
            refusal_of(&frame(b'x', b""), max),
            ["unexpected message type", "'x'"]
        );
    }

    #[test]
    fn the_generator_depends_only_on_its_seed() {
        assert_eq!(Rng::new(3).bytes(32), Rng::new(3).bytes(32));
        assert_ne!(Rng::new(3).bytes(32), Rng::new(4).bytes(32));
        assert!((0..1000).all(|_| (5..=9).contains(&Rng::new(1).between(5, 9))));
    }
}
