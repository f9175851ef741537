//! Identity leaks under long mixed load: 200 clients, each with its own certificate identity,
//! share a pool of 10 backend sessions (transaction pooling) for 100,000 transactions of seven
//! kinds: simple and extended protocol, named prepared statements, errors, rollbacks and
//! cancels. Every transaction reads `app.current_user_id` inside itself, and not one may see
//! anything but its own client's identity; a sampler meanwhile checks in `pg_stat_activity`
//! that the pool never holds more than its 10 sessions.
//!
//! Long, so ignored by default: `.ci/run` runs it with
//! `cargo test -p pgcordon-e2e --test leak -- --ignored` (add `--nocapture` to see the counts).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use pgcordon_devkit::stack::APP_ROLE;
use pgcordon_e2e::tenants::{connect_as, db_error, issue_tenants, rows, within, ExtraTenant};
use pgcordon_e2e::{sqlstate, Harness};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

const CLIENTS: usize = 200;
const POOL_SIZE: usize = 10;
/// A whole number of 100-transaction cycles (see [`Kind::scheduled`]), so each kind's share is
/// exact; 200 clients times 500 is the required 10^5.
const TRANSACTIONS_PER_CLIENT: usize = 500;
const REQUIRED_TOTAL: u64 = 100_000;

/// Connections set up at once: each costs a TLS handshake on both sides in a debug build, and
/// a bounded number keeps every one well inside the startup timeout (8 at a time connected all
/// 200 in about a second here).
const CONNECT_AT_ONCE: usize = 8;
/// Far above any wait for a backend here; a transaction that takes longer counts as a hang.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// A cancel that reaches the server before the sleep runs is ignored (the backend is idle), so
/// the client cancels again until the sleep ends. The token does not wait for pgcordon to
/// forward a cancel, so the retry waits long enough for the previous one to have landed: a late
/// one would hit the client's next statement.
const FIRST_CANCEL_AFTER: Duration = Duration::from_millis(20);
const CANCEL_AGAIN_AFTER: Duration = Duration::from_secs(1);
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Titles of the rows the transactions write, checked as the superuser at the end.
const COMMITTED_TITLE: &str = "leak: committed by ";
const ROLLED_BACK_TITLE: &str = "leak: rolled back";

/// Who the session says we are, which backend runs us, and an echo of the transaction number
/// (so a response cannot be another request's).
const WHO_SQL: &str = "SELECT current_setting('app.current_user_id'), pg_backend_pid(), $1::int4";

/// What a transaction does between its first message and the end of its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One autocommit simple Query.
    Simple,
    /// Simple BEGIN, an INSERT ... RETURNING, COMMIT: three round trips on one backend.
    SimpleBlock,
    /// One autocommit extended-protocol query (unnamed statement, bound parameter).
    Extended,
    /// A named prepared statement, in autocommit or in a block; now and then a fresh one.
    Prepared,
    /// A division by zero inside a block, then ROLLBACK.
    Error,
    /// An INSERT inside a block, then ROLLBACK.
    Rollback,
    /// A pg_sleep inside a block, cancelled with the client's cancel token, then ROLLBACK.
    Cancel,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Simple,
        Kind::SimpleBlock,
        Kind::Extended,
        Kind::Prepared,
        Kind::Error,
        Kind::Rollback,
        Kind::Cancel,
    ];

    /// Transaction `t` of client `client`: a cycle of 100 with fixed shares, shifted per client
    /// so that all kinds run side by side at any moment.
    fn scheduled(client: usize, t: usize) -> Kind {
        match (t + client * 37) % 100 {
            0 => Kind::Cancel,
            1..=6 => Kind::Error,
            7..=14 => Kind::Rollback,
            15..=29 => Kind::SimpleBlock,
            30..=49 => Kind::Simple,
            50..=74 => Kind::Extended,
            _ => Kind::Prepared,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One client: its connection, its identity, its named statement and how it cancels.
struct Conn {
    client: Client,
    id: String,
    who: Statement,
    cancel_tls: MakeRustlsConnect,
}

/// What one transaction saw.
struct Seen {
    who: String,
    pid: i32,
    /// The `owner_id` the row-level-security default stamped on a written row.
    owner: Option<String>,
    cancels_sent: u32,
}

// --- reading results -------------------------------------------------------------------------

fn error_text(e: &tokio_postgres::Error) -> String {
    format!("{:?}", db_error(e))
}

/// Reads (identity, pid, echo[, owner]) from a typed row, checking the echo.
fn seen_in_row(row: &Row, t: i32) -> Result<Seen, String> {
    let echo: i32 = row.try_get(2).map_err(|e| e.to_string())?;
    if echo != t {
        return Err(format!(
            "answer for transaction {echo} received in transaction {t}"
        ));
    }
    Ok(Seen {
        who: row.try_get(0).map_err(|e| e.to_string())?,
        pid: row.try_get(1).map_err(|e| e.to_string())?,
        owner: if row.len() > 3 {
            Some(row.try_get(3).map_err(|e| e.to_string())?)
        } else {
            None
        },
        cancels_sent: 0,
    })
}

/// Runs a simple Query returning one (identity, pid, echo[, owner]) row, checking the echo.
async fn simple_seen(client: &Client, sql: &str, t: i32) -> Result<Seen, String> {
    let messages = client.simple_query(sql).await.map_err(|e| error_text(&e))?;
    let rows = rows(&messages);
    let [row] = rows.as_slice() else {
        return Err(format!("expected one row, got {rows:?}"));
    };
    let column = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    if column(2) != t.to_string() {
        return Err(format!("answer {row:?} received in transaction {t}"));
    }
    Ok(Seen {
        who: column(0),
        pid: column(1).parse().map_err(|_| format!("pid in {row:?}"))?,
        owner: (row.len() > 3).then(|| column(3)),
        cancels_sent: 0,
    })
}

async fn simple(client: &Client, sql: &str) -> Result<(), String> {
    client
        .simple_query(sql)
        .await
        .map(drop)
        .map_err(|e| format!("{sql}: {}", error_text(&e)))
}

// --- one transaction of each kind ------------------------------------------------------------

async fn transaction(c: &Conn, kind: Kind, t: i32) -> Result<Seen, String> {
    let client = &c.client;
    match kind {
        Kind::Simple => {
            let sql =
                format!("SELECT current_setting('app.current_user_id'), pg_backend_pid(), {t}");
            simple_seen(client, &sql, t).await
        }
        Kind::SimpleBlock => {
            simple(client, "BEGIN").await?;
            let sql = format!(
                "INSERT INTO documents (title) VALUES ('{COMMITTED_TITLE}{}') RETURNING \
                 current_setting('app.current_user_id'), pg_backend_pid(), {t}, owner_id",
                c.id
            );
            let seen = simple_seen(client, &sql, t).await?;
            simple(client, "COMMIT").await?;
            Ok(seen)
        }
        Kind::Extended => {
            let row = client
                .query_typed_one(WHO_SQL, &[(&t, Type::INT4)])
                .await
                .map_err(|e| error_text(&e))?;
            seen_in_row(&row, t)
        }
        Kind::Prepared => prepared(c, t).await,
        Kind::Error => division_by_zero(c, t).await,
        Kind::Rollback => {
            simple(client, "BEGIN").await?;
            let row = client
                .query_typed_one(
                    "INSERT INTO documents (title) VALUES ($1) RETURNING \
                     current_setting('app.current_user_id'), pg_backend_pid(), $2::int4, owner_id",
                    &[(&ROLLED_BACK_TITLE, Type::TEXT), (&t, Type::INT4)],
                )
                .await
                .map_err(|e| error_text(&e))?;
            let seen = seen_in_row(&row, t)?;
            simple(client, "ROLLBACK").await?;
            Ok(seen)
        }
        Kind::Cancel => {
            simple(client, "BEGIN").await?;
            let mut seen = who_prepared(c, t).await?;
            seen.cancels_sent = cancelled_sleep(c).await?;
            simple(client, "ROLLBACK").await?;
            Ok(seen)
        }
    }
}

/// A division by zero inside a block, then ROLLBACK. The extended form fails while the server
/// plans the statement at Bind (it folds `1 / 0`), so its error can come back before pgcordon
/// has even read the Execute and Sync behind it.
async fn division_by_zero(c: &Conn, t: i32) -> Result<Seen, String> {
    simple(&c.client, "BEGIN").await?;
    let seen = who_prepared(c, t).await?;
    let failed = if t % 2 == 0 {
        c.client.simple_query("SELECT 1/0").await.map(drop)
    } else {
        let zero = 0i32;
        c.client
            .query_typed("SELECT 1 / $1::int4", &[(&zero, Type::INT4)])
            .await
            .map(drop)
    };
    match failed {
        Err(e) if sqlstate(&e).as_deref() == Some("22012") => {}
        Err(e) => return Err(format!("division by zero: {}", error_text(&e))),
        Ok(()) => return Err("division by zero succeeded".to_owned()),
    }
    simple(&c.client, "ROLLBACK").await?;
    Ok(seen)
}

async fn who_prepared(c: &Conn, t: i32) -> Result<Seen, String> {
    let row = c
        .client
        .query_one(&c.who, &[&t])
        .await
        .map_err(|e| error_text(&e))?;
    seen_in_row(&row, t)
}

/// The client's long-lived statement, alternately in autocommit and in a block; every tenth
/// time a statement prepared for this transaction alone, closed when it is dropped.
async fn prepared(c: &Conn, t: i32) -> Result<Seen, String> {
    if t % 10 == 0 {
        let fresh = c
            .client
            .prepare(WHO_SQL)
            .await
            .map_err(|e| error_text(&e))?;
        let row = c
            .client
            .query_one(&fresh, &[&t])
            .await
            .map_err(|e| error_text(&e))?;
        return seen_in_row(&row, t);
    }
    if t % 2 == 0 {
        return who_prepared(c, t).await;
    }
    simple(&c.client, "BEGIN").await?;
    let seen = who_prepared(c, t).await?;
    simple(&c.client, "COMMIT").await?;
    Ok(seen)
}

/// Runs a long sleep and cancels it through the client's cancel token until it ends; it must
/// end with 57014. Returns how many cancel requests were sent.
async fn cancelled_sleep(c: &Conn) -> Result<u32, String> {
    let token = c.client.cancel_token();
    let sleeping = c.client.simple_query("SELECT pg_sleep(30)");
    tokio::pin!(sleeping);
    let mut sent = 0u32;
    loop {
        let wait = if sent == 0 {
            FIRST_CANCEL_AFTER
        } else {
            CANCEL_AGAIN_AFTER
        };
        tokio::select! {
            // Polled first, so the query is on its way before the first cancel.
            biased;
            result = &mut sleeping => {
                return match result {
                    Err(e) if sqlstate(&e).as_deref() == Some("57014") => Ok(sent),
                    Err(e) => Err(format!("cancelled sleep: {}", error_text(&e))),
                    Ok(_) => Err(format!("the sleep ended normally after {sent} cancels")),
                };
            }
            () = tokio::time::sleep(wait) => {
                token
                    .cancel_query(c.cancel_tls.clone())
                    .await
                    .map_err(|e| format!("cancel request: {e}"))?;
                sent += 1;
            }
        }
    }
}

// --- one client's run and the totals ---------------------------------------------------------

/// What one client counted; failures keep their first few descriptions.
#[derive(Default)]
struct Report {
    per_kind: [u64; Kind::ALL.len()],
    mismatches: u64,
    failures: u64,
    examples: Vec<String>,
    pids: HashSet<i32>,
    cancels_sent: u64,
}

impl Report {
    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

async fn drive(index: usize, c: Conn) -> Report {
    let mut report = Report::default();
    for t in 0..TRANSACTIONS_PER_CLIENT {
        let kind = Kind::scheduled(index, t);
        let number = i32::try_from(t).unwrap_or(i32::MAX);
        let outcome = tokio::time::timeout(TRANSACTION_TIMEOUT, transaction(&c, kind, number));
        match outcome.await {
            Ok(Ok(seen)) => {
                report.per_kind[kind.index()] += 1;
                report.pids.insert(seen.pid);
                report.cancels_sent += u64::from(seen.cancels_sent);
                let owner_ok = seen.owner.as_ref().is_none_or(|o| *o == c.id);
                if seen.who != c.id || !owner_ok {
                    report.mismatches += 1;
                    report.note(format!(
                        "client {index} ({}) {kind:?} tx {t} on backend {}: saw {:?}, owner {:?}",
                        c.id, seen.pid, seen.who, seen.owner
                    ));
                }
            }
            Ok(Err(e)) => {
                report.failures += 1;
                report.note(format!("client {index} {kind:?} tx {t}: {e}"));
                // Leave a block the failure may have left open; outside one this only warns.
                let _ =
                    tokio::time::timeout(TRANSACTION_TIMEOUT, simple(&c.client, "ROLLBACK")).await;
            }
            Err(_) => {
                report.failures += 1;
                report.note(format!(
                    "client {index} {kind:?} tx {t}: no answer within {TRANSACTION_TIMEOUT:?}"
                ));
                break;
            }
        }
        if c.client.is_closed() {
            report.failures += 1;
            report.note(format!("client {index}: connection closed after tx {t}"));
            break;
        }
    }
    report
}

async fn connect(h: &Harness, tenant: &ExtraTenant) -> Conn {
    let client = connect_as(h, &tenant.files).await;
    let who = client
        .prepare(WHO_SQL)
        .await
        .expect("prepare the identity statement");
    Conn {
        client,
        id: tenant.id.clone(),
        who,
        cancel_tls: MakeRustlsConnect::new(h.client_tls(&tenant.files)),
    }
}

/// The most sessions of the app role `pg_stat_activity` showed at once, sampled until `stop`,
/// and how many samples were taken.
fn sample_pool(h: &Harness, stop: &AtomicBool) -> (usize, usize) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = '{APP_ROLE}' AND backend_type = 'client backend'"
    );
    let (mut most, mut samples) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let count: usize = h.admin(&sql).trim().parse().expect("a count");
        most = most.max(count);
        samples += 1;
        std::thread::sleep(SAMPLE_EVERY);
    }
    (most, samples)
}

fn admin_count(h: &Harness, sql: &str) -> u64 {
    let out = tokio::task::block_in_place(|| h.admin(sql));
    out.trim().parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by .ci/run with --ignored"]
async fn two_hundred_identities_on_ten_backends_never_see_one_another() {
    within(600, async {
        let pool = format!(
            "  mode: transaction\n  size: {POOL_SIZE}\n  min_idle: {POOL_SIZE}\n  \
             acquire_timeout: 30s"
        );
        let h = Arc::new(Harness::start(&pool).await);
        let tenants = issue_tenants(&h.stack, CLIENTS);
        let distinct: HashSet<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(distinct.len(), CLIENTS, "identities must be distinct");

        let setup = Instant::now();
        let conns: Vec<Conn> = stream::iter(&tenants)
            .map(|t| connect(&h, t))
            .buffered(CONNECT_AT_ONCE)
            .collect()
            .await;
        let setup = setup.elapsed();

        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
            tokio::task::spawn_blocking(move || sample_pool(&h, &stop))
        };
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| tokio::spawn(drive(i, c)))
            .collect();
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.expect("client task"));
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (most_sessions, samples) = sampler.await.expect("sampler");

        // --- the totals ---
        let mut per_kind = [0u64; Kind::ALL.len()];
        let (mut mismatches, mut failures, mut cancels_sent) = (0, 0, 0);
        let mut examples = Vec::new();
        let mut identities_per_pid = HashMap::<i32, usize>::new();
        for r in &reports {
            for (sum, n) in per_kind.iter_mut().zip(r.per_kind) {
                *sum += n;
            }
            mismatches += r.mismatches;
            failures += r.failures;
            cancels_sent += r.cancels_sent;
            examples.extend(r.examples.iter().cloned());
            for pid in &r.pids {
                *identities_per_pid.entry(*pid).or_default() += 1;
            }
        }
        let total: u64 = per_kind.iter().sum();
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{k:?} {}", per_kind[k.index()]))
            .collect();
        eprintln!(
            "leak: {total} transactions in {elapsed:?} ({:.0}/s) after {setup:?} connecting \
             {CLIENTS} clients; {mismatches} mismatches, {failures} failures; {}; \
             {cancels_sent} cancel requests; at most {most_sessions} sessions in \
             {samples} samples; {} backend pids seen",
            total as f64 / elapsed.as_secs_f64(),
            kinds.join(", "),
            identities_per_pid.len(),
        );

        assert_eq!(
            mismatches, 0,
            "transactions saw another identity: {examples:#?}"
        );
        assert_eq!(failures, 0, "transactions failed: {examples:#?}");
        assert!(total >= REQUIRED_TOTAL, "only {total} transactions");
        for kind in Kind::ALL {
            let n = per_kind[kind.index()];
            assert!(n >= total / 100, "{kind:?} ran only {n} times");
        }
        assert!(
            cancels_sent >= per_kind[Kind::Cancel.index()],
            "every cancelled transaction sent a cancel"
        );
        assert!(
            samples >= 10,
            "pg_stat_activity sampled only {samples} times"
        );
        assert!(
            most_sessions <= POOL_SIZE,
            "{most_sessions} sessions of {APP_ROLE} at once; the pool holds {POOL_SIZE}"
        );
        assert!(
            identities_per_pid.values().any(|&n| n > 1),
            "no backend served more than one identity"
        );

        // What the writes left: committed rows carry their writer's identity, rolled back ones
        // are gone.
        let committed = admin_count(
            &h,
            &format!("SELECT count(*) FROM documents WHERE title LIKE '{COMMITTED_TITLE}%'"),
        );
        assert_eq!(committed, per_kind[Kind::SimpleBlock.index()]);
        let misowned = admin_count(
            &h,
            &format!(
                "SELECT count(*) FROM documents WHERE title LIKE '{COMMITTED_TITLE}%' \
                 AND title <> '{COMMITTED_TITLE}' || owner_id"
            ),
        );
        assert_eq!(misowned, 0, "committed rows owned by another identity");
        let rolled_back = admin_count(
            &h,
            &format!("SELECT count(*) FROM documents WHERE title = '{ROLLED_BACK_TITLE}'"),
        );
        assert_eq!(rolled_back, 0, "rolled back rows were kept");
    })
    .await;
}
