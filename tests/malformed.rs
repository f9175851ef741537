//! Hostile and broken input from clients, end to end: random first packets, lying lengths,
//! truncated and stalled frames, unknown message types, invalid UTF-8 at startup and a Sync
//! storm. Broken upstreams are in malformed_upstream.rs.
//!
//! Every case checks the client's side (one FATAL ErrorResponse with its SQLSTATE then a close,
//! or a close without any PostgreSQL byte), pgcordon's warn line where it writes one, that good
//! clients are still served, and that no task of the test's runtime panicked (`hostile::run`).

use std::time::{Duration, Instant};

use pgcordon_e2e::hostile::{self, expect_code, frame, header, log_mark, logged, Access, Rng};
use pgcordon_e2e::hostile::{expect_ready, expect_tag, refusal_logged, run_ok, still_serves};
use pgcordon_e2e::hostile::{Opening, Target, CLIENT_TAGS};
use pgcordon_e2e::raw;
use pgcordon_e2e::Tenant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POOL: &str = "  mode: transaction\n  size: 4\n  min_idle: 1\n  acquire_timeout: 5s";
/// The smallest frame limit pgcordon accepts, so that the limit's edge is cheap to reach.
const MAX_FRAME: usize = 64 * 1024;
const SECOND: Duration = Duration::from_secs(1);

/// Three shapes of arbitrary first packet per seed: all random; a length in range with a
/// random body; a length promising more than is sent.
fn first_packets(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let n = rng.between(8, 300) as usize;
    let random = rng.bytes(n);
    let len = rng.between(8, 300) as i32;
    let in_range = [len.to_be_bytes().to_vec(), rng.bytes(len as usize - 4)].concat();
    let len = rng.between(400, 10_000) as i32;
    let n = rng.between(4, 300) as usize;
    let short = [len.to_be_bytes().to_vec(), rng.bytes(n)].concat();
    vec![random, in_range, short]
}

/// `received` is exactly one ErrorResponse: FATAL 08P01 whose message holds `needle`.
fn expect_fatal_08p01(received: &[u8], needle: &str) {
    assert_eq!(received.first(), Some(&b'E'), "{received:?}");
    let len = received
        .get(1..5)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or_default();
    assert_eq!(received.len(), len + 1, "one message only: {received:?}");
    let fields = raw::ErrorFields::parse(&received[5..]);
    assert_eq!(
        (fields.severity.as_str(), fields.code.as_str()),
        ("FATAL", "08P01")
    );
    assert!(fields.message.contains(needle), "{fields:?}");
}

/// Checks how pgcordon ended a connection that opened with `opening`, from both sides.
async fn check_opening(
    mark: usize,
    port: u16,
    opening: Opening,
    tls: bool,
    closed: Result<raw::Closed, String>,
) {
    let closed = closed.unwrap_or_else(|e| panic!("{opening:?}: {e}"));
    let first = closed.received.first().copied();
    match opening {
        Opening::DirectTls => {
            // At most a TLS alert record (content type 21), never a PostgreSQL message.
            assert!(matches!(first, None | Some(0x15)), "{closed:?}");
            let addr = format!("client.addr=127.0.0.1:{port}");
            logged(mark, &[&addr, "WARN", "connection refused"]).await;
        }
        // Inside TLS the client is told why, as PostgreSQL does; before TLS, nothing is sent.
        Opening::BadPacket if tls => {
            expect_fatal_08p01(&closed.received, "invalid startup packet");
            refusal_logged(mark, port, "bad_packet", &[]).await;
        }
        Opening::BadPacket => {
            assert_eq!(first, None, "{closed:?}");
            refusal_logged(mark, port, "bad_packet", &[]).await;
        }
        Opening::NeedsMore => assert_eq!(first, None, "{closed:?}"),
    }
}

#[test]
fn random_and_lying_first_packets_are_closed_and_logged() {
    hostile::run("first_packets", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        let t = Target::tenant_a(&h, h.addr);
        let mut seen = Vec::new();
        for seed in 1..=6 {
            // Before TLS, then as the packet after a completed TLS handshake; each time
            // followed by the end of the client's stream.
            for bytes in first_packets(seed) {
                for tls in [false, true] {
                    let opening = hostile::opening_of(&bytes, tls);
                    let mark = log_mark();
                    let (port, closed) = t.opening(&bytes, tls, true, SECOND * 5).await;
                    check_opening(mark, port, opening, tls, closed).await;
                    seen.push(opening);
                }
            }

            // Random bytes where the ClientHello should be.
            let mut rng = Rng::new(seed + 100);
            let n = rng.between(16, 400) as usize;
            let mark = log_mark();
            let mut tcp = raw::tcp(h.addr).await;
            let port = tcp.local_addr().expect("local addr").port();
            tcp.write_all(&raw::SSL_REQUEST).await.expect("SSLRequest");
            assert_eq!(tcp.read_u8().await.expect("answer"), b'S');
            tcp.write_all(&rng.bytes(n)).await.expect("write");
            let _ = tcp.shutdown().await;
            let closed = raw::wait_closed(&mut tcp, SECOND * 5).await;
            check_opening(mark, port, Opening::DirectTls, false, closed).await;
        }
        for kind in [Opening::BadPacket, Opening::NeedsMore] {
            assert!(seen.contains(&kind), "no {kind:?} among the seeds");
        }

        // Lengths outside 8..=10,000 are refused by the four length bytes alone: no body is
        // sent, the stream stays open, and pgcordon closes it within 2 s, well before its
        // handshake timeout (5 s).
        for len in [-1, 0, 7, 10_001, i32::MAX, i32::MIN] {
            let packet = [len.to_be_bytes(), raw::PROTOCOL_3_0.to_be_bytes()].concat();
            let expected = match len {
                10_001.. => format!("startup packet of {len} bytes is over the limit"),
                _ => format!("invalid startup packet length {len}"),
            };
            for tls in [false, true] {
                let mark = log_mark();
                let (port, closed) = t.opening(&packet, tls, false, SECOND * 2).await;
                let closed = closed.unwrap_or_else(|e| panic!("length {len}, TLS {tls}: {e}"));
                if tls {
                    expect_fatal_08p01(&closed.received, &expected);
                } else {
                    assert!(closed.received.is_empty(), "{closed:?}");
                }
                refusal_logged(mark, port, "bad_packet", &[&expected]).await;
            }
        }

        // The edge itself: exactly 10,000 bytes (an `options` of blanks) is a startup packet.
        let edge = |options: &[u8]| {
            let params: [(&[u8], &[u8]); 3] = [
                (b"user", b"api"),
                (b"database", b"app"),
                (b"options", options),
            ];
            hostile::startup_packet(&params)
        };
        let packet = edge(&vec![b' '; 10_000 - edge(b"").len()]);
        assert_eq!(packet.len(), 10_000);
        t.greeted(&packet).await;

        still_serves(&h, h.addr).await;
    });
}

#[test]
fn invalid_utf8_in_startup_parameters_gets_08p01_and_a_logged_close() {
    hostile::run("utf8", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        let t = Target::tenant_a(&h, h.addr);
        let cases: [(&[u8], &[u8]); 5] = [
            (b"user", b"\xff\xfeapi"),
            (b"database", b"app\xc3"),
            (b"application_name", b"\xed\xa0\x80"),
            (b"options", b"-c\xc0\xaf"),
            (b"applic\x80tion_name", b"x"),
        ];
        for (name, value) in cases {
            let mut params: Vec<(&[u8], &[u8])> = vec![(b"user", b"api"), (b"database", b"app")];
            params.retain(|(n, _)| *n != name);
            params.push((name, value));
            let packet = hostile::startup_packet(&params);
            let mark = log_mark();
            let (port, closed) = t.opening(&packet, true, false, SECOND * 5).await;
            let closed = closed.unwrap_or_else(|e| panic!("{name:?}={value:?}: {e}"));
            expect_fatal_08p01(&closed.received, "not valid UTF-8");
            refusal_logged(mark, port, "bad_packet", &["not valid UTF-8"]).await;
        }

        // Valid UTF-8 beyond ASCII is not what is refused: an application_name is accepted,
        // a database name is looked up (and is unknown: 3D000).
        let name = "crème brûlée".as_bytes();
        let params: [(&[u8], &[u8]); 3] = [
            (b"user", b"api"),
            (b"database", b"app"),
            (b"application_name", name),
        ];
        t.greeted(&hostile::startup_packet(&params)).await;
        let params: [(&[u8], &[u8]); 2] = [(b"user", b"api"), (b"database", "appé".as_bytes())];
        let mut tls = t.tls().await;
        let packet = hostile::startup_packet(&params);
        let (_, error) = hostile::send_expect_fatal(&mut tls, &packet).await;
        expect_code(&error, "3D000", &["appé"]);

        still_serves(&h, h.addr).await;
    });
}

#[test]
fn malformed_frames_in_a_session_get_08p01_and_lose_nothing() {
    hostile::run("session_frames", Access::Shared, async {
        let limits = format!("limits:\n  max_frame_bytes: {}KiB\n", MAX_FRAME / 1024);
        let h = raw::harness(POOL, &limits).await;
        hostile::create_probe(&h);
        let t = Target::tenant_a(&h, h.addr);
        let keeper = h.connect(Tenant::A).await;

        // Random bytes, and random frames of types no client sends.
        let mut inputs = Vec::new();
        for seed in 1..=6 {
            let mut rng = Rng::new(seed);
            let n = rng.between(5, 200) as usize;
            inputs.push(rng.bytes(n));
            let tag = std::iter::repeat_with(|| rng.next_u64() as u8)
                .find(|tag| !CLIENT_TAGS.contains(tag))
                .expect("a tag");
            let n = rng.between(0, 100) as usize;
            inputs.push(frame(tag, &rng.bytes(n)));
        }
        // Lying lengths, header only: refused before any body is awaited or buffered.
        for (tag, len) in [(b'Q', -1), (b'Q', 0), (b'Q', 3), (b'P', i32::MIN)] {
            inputs.push(header(tag, len));
        }
        for (tag, len) in [
            (b'Q', MAX_FRAME as i32 + 1),
            (b'd', i32::MAX),
            (b'B', i32::MAX),
        ] {
            inputs.push(header(tag, len));
        }
        // Types a client never sends after startup: server-only, unassigned, NUL, 0xff.
        for tag in [b'Z', b'x', b'W', 0, 0xff] {
            inputs.push(frame(tag, b"hello\0"));
        }
        for input in inputs {
            let needles = hostile::refusal_of(&input, MAX_FRAME);
            let mut s = t.session().await;
            let (before, error) = hostile::send_expect_fatal(&mut s, &input).await;
            assert!(before.is_empty(), "{input:?}: {before:?}");
            expect_code(&error, "08P01", &needles);
        }
        // A PasswordMessage after authentication is out of sequence.
        let mut s = t.session().await;
        let (_, error) = hostile::send_expect_fatal(&mut s, &frame(b'p', b"secret\0")).await;
        expect_code(&error, "08P01", &["unexpected message type 'p'"]);

        // The limit is exact: a Query of MAX_FRAME bytes (length field) runs, one more is not.
        let mut s = t.session().await;
        let filler = "x".repeat(MAX_FRAME - 5 - "SELECT length('')".len());
        let sql = format!("SELECT length('{filler}')");
        assert_eq!(raw::query_message(&sql).len(), MAX_FRAME + 1);
        assert_eq!(run_ok(&mut s, &sql).await, [Some(filler.len().to_string())]);
        let sql = format!("SELECT length('{filler}x')");
        let (_, error) = hostile::send_expect_fatal(&mut s, &raw::query_message(&sql)).await;
        let over = (MAX_FRAME + 1).to_string();
        expect_code(&error, "08P01", &["too large", &over]);
        // Three over-cap headers above and this Query, at least (random inputs may add more).
        let over_cap = pgcordon_e2e::metric(
            &h.obs,
            "pgcordon_limits_reached_total",
            &[("limit", "max_frame_bytes")],
        );
        assert!(over_cap >= 4.0, "max_frame_bytes reached {over_cap} times");

        // Inside a transaction: the session ends and the transaction is rolled back.
        let mut s = t.session().await;
        run_ok(&mut s, "BEGIN").await;
        run_ok(&mut s, "INSERT INTO malformed_probe VALUES (2)").await;
        let (_, error) = hostile::send_expect_fatal(&mut s, &frame(b'x', b"")).await;
        expect_code(&error, "08P01", &["unexpected message type"]);
        let rows = hostile::probe_rows(&h, 2).await;
        assert_eq!(rows, 0, "the interrupted transaction committed");

        // A statement pipelined in the same write just before a malformed frame: whatever
        // pgcordon does with it, the client's view and the database agree (no unconfirmed
        // write, no confirmed one that did not happen).
        let mut s = t.session().await;
        let insert = raw::query_message("INSERT INTO malformed_probe VALUES (3)");
        let batch = [insert, header(b'Q', -1)].concat();
        let (before, error) = hostile::send_expect_fatal(&mut s, &batch).await;
        expect_code(&error, "08P01", &["invalid message length -1"]);
        let confirmed = before
            .iter()
            .any(|m| m.tag == b'C' && m.body.starts_with(b"INSERT"));
        assert_eq!(hostile::probe_rows(&h, 3).await, i64::from(confirmed));
        eprintln!("INSERT pipelined before a bad frame: ran and confirmed = {confirmed}");

        let row = keeper
            .query_one("SELECT current_setting('app.current_user_id')", &[])
            .await
            .expect("the session opened before the hostile ones");
        assert_eq!(row.get::<_, String>(0), Tenant::A.id());
        still_serves(&h, h.addr).await;
    });
}

#[test]
fn truncated_frames_end_with_the_client_or_at_the_timeouts() {
    hostile::run("truncated", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        hostile::create_probe(&h);
        let limits = "limits:\n  client_idle_timeout: 2s\n  idle_in_transaction_timeout: 2s\n";
        let timeout = ["handshake_timeout: 2s".to_string()];
        let edit = |text: String| raw::with_tls_lines(&text, &timeout);
        let proxy = hostile::proxy_with(&h, "truncated", POOL, limits, edit).await;
        let t = Target::tenant_a(&h, proxy.addr);
        let on_time = |started: Instant| {
            let after = started.elapsed();
            let expected = SECOND * 3 / 2..=SECOND * 5;
            assert!(expected.contains(&after), "ended after {after:?}");
        };

        // Before TLS and in the StartupMessage: a stalled truncated packet is closed at the
        // handshake timeout (logged); one whose client goes away is simply closed.
        let startup = raw::app_startup();
        for (bytes, tls) in [(&raw::SSL_REQUEST[..5], false), (&startup[..20], true)] {
            let (started, mark) = (Instant::now(), log_mark());
            let (port, closed) = t.opening(bytes, tls, false, SECOND * 5).await;
            let closed = closed.unwrap_or_else(|e| panic!("stalled, TLS {tls}: {e}"));
            assert!(closed.received.is_empty(), "{closed:?}");
            on_time(started);
            refusal_logged(mark, port, "timeout", &["timed out"]).await;
            let (_, closed) = t.opening(bytes, tls, true, SECOND).await;
            let closed = closed.unwrap_or_else(|e| panic!("ended, TLS {tls}: {e}"));
            assert!(closed.received.is_empty(), "{closed:?}");
        }

        // In a session the part of an INSERT that arrived never runs: not when the client
        // goes away, not when it stalls (57P05 at the idle timeout), not in a transaction
        // (25P03 at the idle-in-transaction timeout, and the transaction rolls back).
        let partial = |id: i32| {
            let mut insert =
                raw::query_message(&format!("INSERT INTO malformed_probe VALUES ({id})"));
            insert.truncate(20);
            insert
        };
        let mut s = t.session().await;
        s.write_all(&partial(7)).await.expect("write");
        let _ = s.shutdown().await;
        let closed = raw::wait_closed(&mut s, SECOND * 2)
            .await
            .expect("closed at once");
        assert!(closed.received.is_empty(), "{closed:?}");

        let mut s = t.session().await;
        s.write_all(&partial(8)).await.expect("write");
        let started = Instant::now();
        let (_, error) = hostile::expect_fatal(&mut s).await;
        on_time(started);
        expect_code(&error, "57P05", &["idle-session timeout"]);

        let mut s = t.session().await;
        run_ok(&mut s, "BEGIN").await;
        run_ok(&mut s, "INSERT INTO malformed_probe VALUES (9)").await;
        s.write_all(&partial(10)).await.expect("write");
        let started = Instant::now();
        let (_, error) = hostile::expect_fatal(&mut s).await;
        on_time(started);
        expect_code(&error, "25P03", &["idle-in-transaction timeout"]);

        for id in [7, 8, 9, 10] {
            assert_eq!(hostile::probe_rows(&h, id).await, 0, "row {id}");
        }
        still_serves(&h, proxy.addr).await;
    });
}

/// Syncs answered by pgcordon itself (no transaction), then inside a transaction (each one
/// forwarded to PostgreSQL and answered by it).
const IDLE_SYNCS: usize = 300_000;
const TX_SYNCS: usize = 200_000;
/// Peak growth of this process's resident memory allowed during the storm: 67 bytes per Sync.
/// Holding all of the storm's 2.5 MB of Syncs and 3 MB of answers fits; a request record, a
/// buffer or a copy kept per Sync does not. Runs on this machine grew by 0 to 4 MiB.
const STORM_RSS_LIMIT_KIB: u64 = 32 * 1024;

#[test]
fn a_sync_storm_is_answered_in_order_with_bounded_memory() {
    hostile::run("sync_storm", Access::Exclusive, async {
        let h = raw::harness(POOL, "").await;
        let s = Target::tenant_a(&h, h.addr).session().await;
        let sync = frame(b'S', b"");
        let storm = [
            sync.repeat(IDLE_SYNCS),
            raw::query_message("SELECT 'after the storm'"),
            raw::query_message("BEGIN"),
            sync.repeat(TX_SYNCS),
            raw::query_message("COMMIT"),
        ]
        .concat();

        // Freed memory (of earlier tests) goes back to the system first, so that the baseline
        // is memory in use and growth during the storm cannot hide in free heap pages.
        // SAFETY: malloc_trim only releases free pages of the heap; no live allocation moves.
        unsafe { libc::malloc_trim(0) };
        let before = hostile::rss_kib();
        let sampler = hostile::RssSampler::start();
        let started = Instant::now();
        let (read, mut write) = tokio::io::split(s);
        let mut writer = tokio::spawn(async move {
            write.write_all(&storm).await.expect("write the storm");
            write.flush().await.expect("flush");
            write
        });
        // Nothing is read until the whole storm is written, or for 3 s if pgcordon pushes back.
        let written_first = tokio::select! {
            w = &mut writer => Some(w.expect("writer")),
            _ = tokio::time::sleep(SECOND * 3) => None,
        };
        let pushed_back = written_first.is_none();
        let mut read = tokio::io::BufReader::with_capacity(64 * 1024, read);
        expect_ready(&mut read, IDLE_SYNCS, b'I').await;
        expect_tag(&mut read, b'T').await;
        let row = expect_tag(&mut read, b'D').await;
        assert!(row.body.ends_with(b"after the storm"), "{row:?}");
        expect_tag(&mut read, b'C').await;
        expect_ready(&mut read, 1, b'I').await;
        assert!(expect_tag(&mut read, b'C').await.body.starts_with(b"BEGIN"));
        expect_ready(&mut read, TX_SYNCS + 1, b'T').await;
        assert!(expect_tag(&mut read, b'C')
            .await
            .body
            .starts_with(b"COMMIT"));
        expect_ready(&mut read, 1, b'I').await;
        let took = started.elapsed();
        let write = match written_first {
            Some(w) => w,
            None => writer.await.expect("writer"),
        };
        let growth = sampler.peak().saturating_sub(before);
        eprintln!(
            "storm of {} Syncs answered in {took:?}; writer pushed back: {pushed_back}; \
             RSS {before} KiB, peak growth {growth} KiB",
            IDLE_SYNCS + TX_SYNCS
        );
        assert!(
            growth < STORM_RSS_LIMIT_KIB,
            "RSS grew {growth} KiB from {before} KiB"
        );

        let mut s = read.into_inner().unsplit(write);
        let sql = "SELECT current_setting('app.current_user_id')";
        assert_eq!(run_ok(&mut s, sql).await, [Some(Tenant::A.id().to_owned())]);
        still_serves(&h, h.addr).await;
    });
}
