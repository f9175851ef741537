//! Upstreams that send garbage or break in the middle of a message, end to end: a scripted
//! fake server (during and right after authentication, and in a running session) and a relay
//! that cuts the real PostgreSQL off in the middle of a large result. The client must get
//! 08001 or 08006, never a short success, and the pool must serve the next client.
//!
//! Every case checks the client's side, pgcordon's log line, that good clients are still
//! served, and that no task of the test's runtime panicked (`hostile::run`).

use std::time::{Duration, Instant};

use pgcordon_e2e::fake_upstream::{self, Cut, Script, Step};
use pgcordon_e2e::hostile::{self, expect_code, header, log_mark, logged, still_serves, Access};
use pgcordon_e2e::hostile::{Rng, Target};
use pgcordon_e2e::raw;
use tokio::io::AsyncWriteExt;

const POOL: &str = "  mode: transaction\n  size: 4\n  min_idle: 1\n  acquire_timeout: 5s";
/// Pools that open sessions only on demand, so each upstream connection has a known purpose.
const POOL_OF_2: &str = "  mode: transaction\n  size: 2\n  min_idle: 0\n  acquire_timeout: 5s";
const POOL_OF_1: &str = "  mode: transaction\n  size: 1\n  min_idle: 0\n  acquire_timeout: 5s";
const SECOND: Duration = Duration::from_secs(1);

/// A truncated AuthenticationSASL (request 10): its length promises 23 bytes, 12 follow.
fn truncated_sasl() -> Vec<u8> {
    [&header(b'R', 23)[..], b"\0\0\0\x0aSCRAM-SH"].concat()
}

fn play(bytes: Vec<u8>, end: Step) -> Script {
    Script::Play(vec![Step::Send(bytes), end])
}

const IN_STARTUP: &str = "closed the connection during startup";

const CLIENT_08001: &str = "pgcordon: could not open a session to the database";

#[test]
fn an_upstream_breaking_during_or_right_after_authentication_gives_08001() {
    hostile::run("upstream_startup", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        let fake = fake_upstream::for_stack(&h).await;
        let proxy = fake_upstream::proxy_on(&h, &fake, POOL_OF_2, "fake-startup").await;
        let t = Target::tenant_a(&h, proxy.addr);
        let fake_addr = fake.addr.to_string();
        let ok = fake_upstream::auth_ok;
        let garbage = play(Rng::new(7).bytes(300), Step::Close);
        let cut = play(truncated_sasl(), Step::Close);
        let stalled = play(truncated_sasl(), Step::Stall);
        let huge = play([ok(), header(b'S', i32::MAX)].concat(), Step::Stall);
        let negative = play([ok(), header(b'Z', -5)].concat(), Step::Stall);
        let status = [ok(), header(b'S', 30), b"server_ver".to_vec()].concat();
        let cut_status = play(status, Step::Close);
        // Each script, what the log line must also say, and whether pgcordon must see it by
        // a header alone, before the 2 s connect timeout, while the fake stays silent.
        let cases = [
            (garbage, fake_addr.as_str(), false),
            (cut, IN_STARTUP, false),
            (stalled, "timed out after 2s", false),
            (huge, "over the limit", true),
            (negative, "length -5", true),
            (cut_status, IN_STARTUP, false),
        ];
        for (script, detail, by_header) in cases {
            fake.push(script);
            let (started, mark) = (Instant::now(), log_mark());
            let mut tls = t.tls().await;
            let (before, error) = hostile::send_expect_fatal(&mut tls, &raw::app_startup()).await;
            assert!(before.is_empty(), "{detail}: {before:?}");
            expect_code(&error, "08001", &[CLIENT_08001]);
            let took = started.elapsed();
            assert!(!by_header || took < SECOND * 2, "{detail}: {took:?}");
            let needles = ["cannot reach the upstream database", &fake_addr, detail];
            logged(mark, &needles).await;
        }

        // Authenticated, then the answer to pgcordon's first query breaks off or is garbage.
        let truncated_row = [header(b'D', 40), vec![0, 2, 0, 0, 0, 1, b'1']].concat();
        for answer in [truncated_row, Rng::new(8).bytes(300)] {
            let seen = raw::log_lines(&["cannot read upstream defaults"]).len();
            let mut steps = vec![Step::Send(fake_upstream::greeting()), Step::AwaitMessage];
            steps.extend([Step::Send(answer), Step::Close]);
            fake.push(Script::Play(steps));
            let mut tls = t.tls().await;
            let (before, error) = hostile::send_expect_fatal(&mut tls, &raw::app_startup()).await;
            assert!(before.is_empty(), "{before:?}");
            expect_code(&error, "08001", &[CLIENT_08001]);
            hostile::logged_times(&["cannot read upstream defaults"], seen + 1, |_| true).await;
        }

        // With no script left the next connection is relayed to PostgreSQL: the same proxy
        // serves clients again.
        assert_eq!((fake.pending(), fake.accepted()), (0, 8));
        still_serves(&h, proxy.addr).await;
    });
}

/// Log lines of sessions lost with `detail`, leaving out the relay test's ("read failed").
fn not_relayed(line: &str) -> bool {
    !line.contains("failed:")
}

#[test]
fn an_upstream_breaking_in_a_session_gives_08006_and_the_pool_recovers() {
    hostile::run("upstream_session", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        let fake = fake_upstream::for_stack(&h).await;
        let proxy = fake_upstream::proxy_on(&h, &fake, POOL_OF_2, "fake-session").await;
        let t = Target::tenant_a(&h, proxy.addr);

        let truncated = [header(b'T', 200), vec![0, 1, b'a', 0]].concat();
        let cases = [
            (header(b'D', i32::MAX), Step::Stall, "2147483647"),
            (header(b'C', -1), Step::Stall, "invalid message length -1"),
            (truncated, Step::Close, "server closed the connection"),
            (Rng::new(11).bytes(400), Step::Close, "backend session lost"),
        ];
        for (i, (answer, end, detail)) in cases.into_iter().enumerate() {
            // The first session also answers the query that learns the server's defaults.
            let mut steps = vec![Step::Send(fake_upstream::greeting())];
            if i == 0 {
                steps.extend([
                    Step::AwaitMessage,
                    Step::Send(fake_upstream::defaults_answer()),
                ]);
            }
            steps.extend([Step::AwaitMessage, Step::Send(answer), end]);
            fake.push(Script::Play(steps));
            let mut s = t.session().await;
            let needles = ["backend session lost", detail];
            let seen = raw::log_lines(&needles)
                .iter()
                .filter(|l| not_relayed(l))
                .count();
            let query = raw::query_message("SELECT 1");
            let (before, error) = hostile::send_expect_fatal(&mut s, &query).await;
            assert!(i == 3 || before.is_empty(), "{detail}: {before:?}");
            assert!(before.iter().all(|m| m.tag != b'Z'), "{detail}: {before:?}");
            expect_code(&error, "08006", &["database session was lost"]);
            assert!(!error.message.contains("127.0.0.1"), "{error:?}");
            hostile::logged_times(&needles, seen + 1, not_relayed).await;
        }
        assert_eq!((fake.pending(), fake.accepted()), (0, 4));
        still_serves(&h, proxy.addr).await;
    });
}

const BIG: &str = "SELECT repeat('x', 100) FROM generate_series(1, 20000)";

#[test]
fn a_real_backend_cut_mid_result_gives_08006_never_a_short_success() {
    hostile::run("relay_cut", Access::Shared, async {
        let h = raw::harness(POOL, "").await;
        let fake = fake_upstream::for_stack(&h).await;
        let proxy = fake_upstream::proxy_on(&h, &fake, POOL_OF_1, "relay-cut").await;
        let t = Target::tenant_a(&h, proxy.addr);
        // The cut comes 256 KiB into the server's bytes: past TLS, authentication and the
        // defaults query, about a tenth into the 2.2 MB result.
        let after = 256 * 1024;
        fake.push(Script::RelayCut {
            after,
            then: Cut::Close,
        });
        fake.push(Script::RelayCut {
            after,
            then: Cut::Garbage(Rng::new(5).bytes(64)),
        });

        let needles = ["backend session lost", "failed:"];
        for cut in 1..=2 {
            let seen = raw::log_lines(&needles).len();
            let mut s = t.session().await;
            let query = raw::query_message(BIG);
            let (before, error) = hostile::send_expect_fatal(&mut s, &query).await;
            expect_code(&error, "08006", &["database session was lost"]);
            let rows = before.iter().filter(|m| m.tag == b'D').count();
            assert!(
                before.iter().all(|m| matches!(m.tag, b'T' | b'D')),
                "cut {cut}: {before:?}"
            );
            assert!(
                rows > 0 && rows < 20_000,
                "cut {cut}: {rows} rows before the error"
            );
            hostile::logged_times(&needles, seen + 1, |_| true).await;
        }

        // The broken sessions left the pool of one: the next client gets the whole result.
        let mut s = t.session().await;
        s.write_all(&raw::query_message(BIG)).await.expect("write");
        let answer = raw::read_until_ready_or_error(&mut s)
            .await
            .expect("answer");
        let rows = answer.iter().filter(|m| m.tag == b'D').count();
        let complete = answer
            .iter()
            .find(|m| m.tag == b'C')
            .map(|m| m.body.clone());
        assert_eq!((rows, complete), (20_000, Some(b"SELECT 20000\0".to_vec())));
        assert_eq!(fake.accepted(), 3);
        still_serves(&h, proxy.addr).await;
    });
}
