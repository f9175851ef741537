//! Read/write routing against a real primary and a real streaming replica (pg_basebackup -R):
//! where reads, writes, read-only and read-write transactions, hints and nextval land; row-level
//! security on the replica; the routing metrics; a replica stopped (mid-read too) and restarted;
//! replay paused: read-your-writes holds for the writer while others still read the lagging
//! replica, and a replica past a byte or time lag limit leaves rotation.
//!
//! Where a statement ran is read from `pg_is_in_recovery()`: true only on the replica.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgcordon_devkit::stack::{TENANT_A, TENANT_B};
use pgcordon_e2e::routing_kit::{
    ran_on_replica, read_lands_on_replica, relevant_lines, wait_for_reads_on, wait_for_scrape,
    wait_for_sql_on, ReplicaHarness, Scrape, REPLICA, ROTATION_DEADLINE, ROUTING_AUTO,
};
use pgcordon_e2e::tenants::{db_error, rows, within};
use pgcordon_e2e::Tenant;
use tokio::time::Instant;
use tokio_postgres::Client;

/// How long a change of health may take to show in reads or metrics (the checks run every
/// 200 ms; this leaves room for a slow machine).
const HEALTH_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `sql` and asserts it ran on the primary, right after a plain read through the same
/// client ran on the replica: so the statement itself, not lag or read-your-writes, decided.
async fn assert_on_primary(client: &Client, sql: &str) {
    wait_for_reads_on(client, true, ROTATION_DEADLINE).await;
    let on_replica = ran_on_replica(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    assert!(!on_replica, "{sql:?} ran on the replica");
}

/// Runs `sql` and asserts it ran on the replica.
async fn assert_on_replica(client: &Client, sql: &str) {
    let on_replica = ran_on_replica(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    assert!(on_replica, "{sql:?} ran on the primary");
}

/// `BEGIN`-like `opening`, then `SELECT pg_is_in_recovery()`, then `COMMIT`, as three round
/// trips (what psql does with `BEGIN; SELECT ...; COMMIT;`): where the transaction ran.
async fn transaction_ran_on_replica(client: &Client, opening: &str) -> bool {
    client.simple_query(opening).await.expect(opening);
    let on_replica = read_lands_on_replica(client).await.expect("read inside");
    client.simple_query("COMMIT").await.expect("COMMIT");
    on_replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_sends_reads_to_the_replica_and_everything_else_to_the_primary() {
    within(100, async {
        let h = ReplicaHarness::start(ROUTING_AUTO).await;
        let mut reader = h.connect(Tenant::A).await;
        let took = wait_for_reads_on(&reader, true, ROTATION_DEADLINE).await;
        eprintln!("replica in rotation {took:?} after the proxy started");

        // Autocommit reads: simple protocol, unnamed extended statement, named prepared one.
        assert_on_replica(&reader, "SELECT pg_is_in_recovery()").await;
        let row = reader
            .query_typed_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "unnamed extended statement");
        let prepared = reader
            .prepare("SELECT pg_is_in_recovery(), $1::int4 + 1")
            .await
            .unwrap();
        for n in 0..3 {
            let row = reader.query_one(&prepared, &[&n]).await.unwrap();
            assert!(row.get::<_, bool>(0), "named prepared statement, run {n}");
            assert_eq!(row.get::<_, i32>(1), n + 1);
        }

        // Read-only transactions, as separate round trips, in one text, and from the driver.
        assert!(transaction_ran_on_replica(&reader, "BEGIN READ ONLY").await);
        assert!(transaction_ran_on_replica(&reader, "START TRANSACTION READ ONLY").await);
        assert_on_replica(
            &reader,
            "BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT",
        )
        .await;
        {
            let tx = reader
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .unwrap();
            let row = tx
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap();
            assert!(row.get::<_, bool>(0), "driver's read-only transaction");
            tx.commit().await.unwrap();
        }
        // A hint sends an unknown function's read to the replica; without it, the primary.
        assert_on_replica(
            &reader,
            "/* pgcordon:replica */ SELECT pg_is_in_recovery(), pg_sleep(0)",
        )
        .await;

        // Read-write transactions, hints, nextval and locking reads: the primary, each checked
        // right after a plain read of the same client landed on the replica.
        wait_for_reads_on(&reader, true, ROTATION_DEADLINE).await;
        assert!(!transaction_ran_on_replica(&reader, "BEGIN").await);
        wait_for_reads_on(&reader, true, ROTATION_DEADLINE).await;
        assert!(!transaction_ran_on_replica(&reader, "BEGIN READ WRITE").await);
        for sql in [
            "BEGIN; SELECT pg_is_in_recovery(); COMMIT",
            "/* pgcordon:primary */ SELECT pg_is_in_recovery()",
            "SELECT pg_is_in_recovery(), pg_sleep(0)",
            "SELECT pg_is_in_recovery(), nextval('documents_id_seq')",
            "SELECT pg_is_in_recovery() FROM documents LIMIT 1 FOR UPDATE",
        ] {
            assert_on_primary(&reader, sql).await;
        }

        // Writes: on the primary (a replica would refuse them with SQLSTATE 25006).
        let writer = h.connect(Tenant::B).await;
        wait_for_reads_on(&writer, true, ROTATION_DEADLINE).await;
        let inserted = "INSERT INTO documents (title) VALUES ('routing: B wrote this') \
                        RETURNING pg_is_in_recovery()";
        assert!(!ran_on_replica(&writer, inserted).await.unwrap());
        let updated = "UPDATE documents SET title = title WHERE title = 'routing: B wrote this' \
                       RETURNING pg_is_in_recovery()";
        assert!(!ran_on_replica(&writer, updated).await.unwrap());
        let written = writer
            .query_typed_one(
                "WITH w AS (INSERT INTO documents (title) VALUES ('routing: B again') \
                 RETURNING 1) SELECT pg_is_in_recovery() FROM w",
                &[],
            )
            .await
            .unwrap();
        assert!(
            !written.get::<_, bool>(0),
            "data-modifying CTE, extended protocol"
        );
        assert_eq!(
            h.primary_sql("SELECT count(*) FROM documents WHERE title LIKE 'routing: B %'")
                .trim(),
            "2"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_holds_on_the_replica_and_metrics_count_each_route() {
    within(100, async {
        let h = ReplicaHarness::start(ROUTING_AUTO).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        wait_for_reads_on(&a, true, ROTATION_DEADLINE).await;
        wait_for_reads_on(&b, true, ROTATION_DEADLINE).await;

        // The replica holds every tenant's rows; each tenant sees only its own there.
        assert_eq!(h.replica_sql("SELECT count(*) FROM documents").trim(), "3");
        let sql = "SELECT pg_is_in_recovery(), current_setting('app.current_user_id'), \
                   count(*), string_agg(title, ', ' ORDER BY title) FROM documents";
        for (client, tenant, count, titles) in [
            (&a, TENANT_A, "2", "tenant A: invoices, tenant A: roadmap"),
            (&b, TENANT_B, "1", "tenant B: payroll"),
        ] {
            let found = rows(&client.simple_query(sql).await.unwrap());
            let expected = vec![vec![
                Some("t".to_owned()),
                Some(tenant.to_owned()),
                Some(count.to_owned()),
                Some(titles.to_owned()),
            ]];
            assert_eq!(found, expected, "tenant {tenant} on the replica");
            // A row of the other tenant, named directly, is not visible either.
            let other = rows(
                &client
                    .simple_query(
                        "SELECT pg_is_in_recovery(), count(*) FROM documents \
                         WHERE owner_id <> current_setting('app.current_user_id')",
                    )
                    .await
                    .unwrap(),
            );
            assert_eq!(
                other,
                vec![vec![Some("t".to_owned()), Some("0".to_owned())]]
            );
        }

        // Metrics: one read adds one replica read; one write adds one primary write.
        let before = wait_for_scrape(&h.proxy, HEALTH_DEADLINE, "the replica in", |s| {
            s.replica_healthy() == Some(1.0)
        })
        .await;
        assert!(read_lands_on_replica(&a).await.unwrap());
        let after_read = Scrape::of(&h.proxy);
        assert_eq!(
            after_read.routed(REPLICA, "read") - before.routed(REPLICA, "read"),
            1.0
        );
        assert_eq!(
            after_read.routed("primary", "write"),
            before.routed("primary", "write")
        );
        assert_eq!(
            after_read.routed("primary", "fallback"),
            before.routed("primary", "fallback")
        );
        a.simple_query("INSERT INTO documents (title) VALUES ('tenant A: metrics')")
            .await
            .unwrap();
        let after_write = Scrape::of(&h.proxy);
        assert_eq!(
            after_write.routed("primary", "write") - after_read.routed("primary", "write"),
            1.0
        );
        assert_eq!(
            after_write.routed(REPLICA, "read"),
            after_read.routed(REPLICA, "read")
        );
        // Nothing is ever a write on the replica, and the primary serves no "read" kind.
        assert_eq!(after_write.routed(REPLICA, "write"), 0.0);
        assert_eq!(after_write.routed(REPLICA, "fallback"), 0.0);
        assert_eq!(after_write.routed("primary", "read"), 0.0);
        // The primary has no health gauge; the replica's lag gauges exist.
        assert_eq!(
            after_write.value("pgcordon_replica_healthy", &[("target", "primary")]),
            None
        );
        assert!(after_write.replica_lag_bytes().is_some());

        // The new row reaches the replica, where tenant A (and only A) sees it.
        wait_for_sql_on(
            &a,
            "SELECT pg_is_in_recovery() FROM documents WHERE title = 'tenant A: metrics'",
            true,
            ROTATION_DEADLINE,
        )
        .await;
        let hidden = rows(
            &b.simple_query(
                "SELECT pg_is_in_recovery(), count(*) FROM documents \
                 WHERE title = 'tenant A: metrics'",
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            hidden,
            vec![vec![Some("t".to_owned()), Some("0".to_owned())]]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_mode_routes_only_declared_read_only_transactions() {
    within(100, async {
        let h = ReplicaHarness::start(
            "routing:\n  mode: read_only_transactions\n  check_interval: 200ms\n",
        )
        .await;
        let mut client = h.connect(Tenant::A).await;
        let declared = "BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT";
        wait_for_sql_on(&client, declared, true, ROTATION_DEADLINE).await;

        for _ in 0..3 {
            // A plain autocommit SELECT stays on the primary in this mode, though the replica
            // is in rotation (the declared transaction before and after shows it).
            assert_on_replica(&client, declared).await;
            assert!(
                !read_lands_on_replica(&client).await.unwrap(),
                "a plain SELECT ran on the replica in read_only_transactions mode"
            );
        }
        assert_on_replica(&client, declared).await;
        assert!(transaction_ran_on_replica(&client, "BEGIN READ ONLY").await);
        assert!(transaction_ran_on_replica(&client, "START TRANSACTION READ ONLY").await);
        assert!(!transaction_ran_on_replica(&client, "BEGIN").await);
        assert!(!read_lands_on_replica(&client).await.unwrap());
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .unwrap();
        let row = tx
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "driver's read-only transaction");
        tx.commit().await.unwrap();
        let scrape = Scrape::of(&h.proxy);
        assert!(
            scrape.routed(REPLICA, "read") >= 6.0,
            "{}",
            relevant_lines(&scrape.text)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_sends_reads_to_the_primary_until_it_is_back() {
    within(110, async {
        let mut h = ReplicaHarness::start(ROUTING_AUTO).await;
        let mut client = h.connect(Tenant::A).await;
        wait_for_reads_on(&client, true, ROTATION_DEADLINE).await;
        // A few reads, so the replica's pool holds sessions that die with the server.
        for _ in 0..5 {
            assert!(read_lands_on_replica(&client).await.unwrap());
        }

        // Two reads in flight on the replica when it stops. One sleeps: its row description
        // has gone out, so it may fail, but must end. The other waits for a lock (taken on the
        // primary and replayed on the replica) before it has sent anything: it must be
        // retried on the primary and answered there.
        let slow = h.connect(Tenant::B).await;
        let in_flight = tokio::spawn(async move {
            slow.simple_query("/* pgcordon:replica */ SELECT pg_is_in_recovery(), pg_sleep(3)")
                .await
                .map(|m| rows(&m))
        });
        h.wait_for_replica_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()",
            "1",
        )
        .await;

        h.primary_sql(
            "CREATE TABLE lock_probe (x int); INSERT INTO lock_probe VALUES (1); \
             GRANT SELECT ON lock_probe TO pgcordon_app;",
        );
        let probe = "SELECT pg_is_in_recovery() FROM lock_probe";
        wait_for_sql_on(&client, probe, true, ROTATION_DEADLINE).await;
        let locker = h.primary_superuser().await;
        locker
            .batch_execute("BEGIN; LOCK TABLE lock_probe IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        // The lock's WAL record waits in the primary's buffers until something flushes them:
        // any other commit does.
        h.primary_sql("SELECT txid_current()");
        h.wait_for_replica_sql(
            "SELECT count(*) FROM pg_locks WHERE relation = 'lock_probe'::regclass \
             AND mode = 'AccessExclusiveLock' AND granted",
            "1",
        )
        .await;
        let blocked_client = h.connect(Tenant::A).await;
        let blocked = tokio::spawn(async move { ran_on_replica(&blocked_client, probe).await });
        h.wait_for_replica_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND wait_event_type = 'Lock' AND query LIKE '%FROM lock_probe%'",
            "1",
        )
        .await;

        let before = Scrape::of(&h.proxy);
        h.stop_replica();
        let stopped = Instant::now();

        // Reads go on: errors are tolerated only during the first health-check periods after
        // the stop, then every read must succeed, on the primary.
        let grace = Duration::from_secs(1);
        let mut early_errors = Vec::new();
        let mut first_on_primary = None;
        let mut on_primary_after_grace = 0;
        while stopped.elapsed() < grace + Duration::from_secs(2) {
            let started = stopped.elapsed();
            match read_lands_on_replica(&client).await {
                Ok(on_replica) => {
                    assert!(!on_replica, "a read ran on the stopped replica");
                    first_on_primary.get_or_insert(stopped.elapsed());
                    if started >= grace {
                        on_primary_after_grace += 1;
                    }
                }
                Err(e) => {
                    assert!(
                        started < grace,
                        "a read failed {started:?} after the replica stopped: {e}"
                    );
                    early_errors.push(format!("{started:?}: {:?}", db_error(&e)));
                    if client.is_closed() {
                        client = h.connect(Tenant::A).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first_on_primary = first_on_primary.expect("no read succeeded after the stop");
        eprintln!(
            "replica stopped: first read on the primary after {first_on_primary:?}, {} early \
             errors {early_errors:?}, {on_primary_after_grace} reads on the primary after {grace:?}",
            early_errors.len()
        );
        assert!(first_on_primary < HEALTH_DEADLINE);
        assert!(on_primary_after_grace >= 10, "{on_primary_after_grace}");

        // The lock-blocked read went to the primary, where it waits for the same lock.
        locker.batch_execute("COMMIT").await.unwrap();
        let retried = within(15, blocked).await.expect("blocked read task");
        match retried {
            Ok(on_replica) => {
                assert!(!on_replica, "answered by the stopped replica?");
                eprintln!("the read waiting for a lock at the stop was retried on the primary");
            }
            Err(e) => panic!(
                "a read that had received nothing was not retried on the primary: {:?}",
                db_error(&e)
            ),
        }

        let outcome = within(15, in_flight).await.expect("in-flight task");
        match &outcome {
            // Retried on the primary: nothing of the answer had reached the client.
            Ok(found) => assert_eq!(found.len(), 1, "{found:?}"),
            Err(e) => eprintln!("the read in flight at the stop failed: {:?}", db_error(e)),
        }
        if let Ok(found) = &outcome {
            assert_eq!(found[0][0].as_deref(), Some("f"), "{found:?}");
        }

        let down = wait_for_scrape(&h.proxy, HEALTH_DEADLINE, "the replica out", |s| {
            s.replica_healthy() == Some(0.0)
        })
        .await;
        assert!(
            down.routed("primary", "fallback") > before.routed("primary", "fallback"),
            "{}",
            relevant_lines(&down.text)
        );
        // Reads routed to the replica after the stop (before a check noticed) and still
        // answered were retried on the primary.
        eprintln!(
            "after the stop: {} reads routed to the replica, {} fallbacks to the primary",
            down.routed(REPLICA, "read") - before.routed(REPLICA, "read"),
            down.routed("primary", "fallback") - before.routed("primary", "fallback")
        );

        // Back: reads return to the replica.
        h.start_replica();
        let back = wait_for_reads_on(&client, true, ROTATION_DEADLINE).await;
        eprintln!("replica restarted: reads on it again after {back:?}");
        for _ in 0..5 {
            assert!(read_lands_on_replica(&client).await.unwrap());
        }
        wait_for_scrape(&h.proxy, HEALTH_DEADLINE, "the replica back", |s| {
            s.replica_healthy() == Some(1.0)
        })
        .await;
    })
    .await;
}

/// Routing with limits no test reaches: the replica stays in rotation however far it lags.
const LENIENT: &str =
    "routing:\n  mode: auto\n  check_interval: 200ms\n  max_lag_bytes: 1GiB\n  max_lag: 1h\n";
/// A 1 MiB byte limit and no practical time limit.
const BYTE_LIMITED: &str =
    "routing:\n  mode: auto\n  check_interval: 200ms\n  max_lag_bytes: 1MiB\n  max_lag: 1h\n";
/// A 1 s time limit and no practical byte limit.
const TIME_LIMITED: &str =
    "routing:\n  mode: auto\n  check_interval: 200ms\n  max_lag_bytes: 1GiB\n  max_lag: 1s\n";

/// Writes the writer inserts and reads back with replay paused.
const RYW_TRIES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_paused_writers_read_their_writes_and_lagging_replicas_leave_rotation() {
    within(115, async {
        let h = ReplicaHarness::start(LENIENT).await;
        let bytes = h.launch_extra("bytes.yaml", BYTE_LIMITED).await;
        let timed = h.launch_extra("timed.yaml", TIME_LIMITED).await;
        let lenient_a = h.connect(Tenant::A).await;
        let lenient_b = h.connect(Tenant::B).await;
        let bytes_client = h.connect_to(bytes.addr, Tenant::A).await;
        let timed_client = h.connect_to(timed.addr, Tenant::A).await;
        for client in [&lenient_a, &lenient_b, &bytes_client, &timed_client] {
            wait_for_reads_on(client, true, ROTATION_DEADLINE).await;
        }

        h.replica_sql("SELECT pg_wal_replay_pause()");
        let paused = Instant::now();
        while h
            .replica_sql("SELECT pg_get_wal_replay_pause_state()")
            .trim()
            != "paused"
        {
            assert!(
                paused.elapsed() < Duration::from_secs(10),
                "replay not paused"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // One small write: past the 1 s time limit soon, far below either byte limit.
        h.primary_sql(&format!(
            "INSERT INTO documents (owner_id, title) VALUES ('{TENANT_B}', 'paused: one row')"
        ));
        let out = wait_for_reads_on(&timed_client, false, HEALTH_DEADLINE).await;
        eprintln!("time-limited proxy: replica out of rotation {out:?} after a small write");
        assert!(read_lands_on_replica(&bytes_client).await.unwrap());
        assert!(read_lands_on_replica(&lenient_a).await.unwrap());
        let timed_scrape = wait_for_scrape(&timed, HEALTH_DEADLINE, "the replica out", |s| {
            s.replica_healthy() == Some(0.0)
        })
        .await;
        let small_lag = timed_scrape.replica_lag_bytes().unwrap_or(0.0);
        assert!(
            small_lag > 0.0 && small_lag < 1_048_576.0,
            "lag {small_lag}"
        );

        // Read-your-writes with replay paused and the replica in rotation: the writer sees each
        // row at once (so its reads cannot have run on the replica, which has none of them),
        // while another client's reads still run on the lagging replica.
        let before = Scrape::of(&h.proxy);
        let stop = Arc::new(AtomicBool::new(false));
        let first_write_done = Arc::new(AtomicBool::new(false));
        let replica_reads_after_a_write = Arc::new(AtomicUsize::new(0));
        let other = {
            let (stop, first_write_done) = (stop.clone(), first_write_done.clone());
            let after_write = replica_reads_after_a_write.clone();
            tokio::spawn(async move {
                let (mut on_replica, mut on_primary) = (0usize, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let written = first_write_done.load(Ordering::Relaxed);
                    if read_lands_on_replica(&lenient_b)
                        .await
                        .expect("other client's read")
                    {
                        on_replica += 1;
                        if written {
                            after_write.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        on_primary += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (on_replica, on_primary, lenient_b)
            })
        };
        let started = Instant::now();
        let mut missed = Vec::new();
        for i in 0..RYW_TRIES {
            let title = format!("ryw {i}");
            lenient_a
                .simple_query(&format!("INSERT INTO documents (title) VALUES ('{title}')"))
                .await
                .unwrap();
            first_write_done.store(true, Ordering::Relaxed);
            let found = rows(
                &lenient_a
                    .simple_query(&format!(
                        "SELECT pg_is_in_recovery(), count(*) FROM documents \
                         WHERE title = '{title}'"
                    ))
                    .await
                    .unwrap(),
            );
            if found != vec![vec![Some("f".to_owned()), Some("1".to_owned())]] {
                missed.push((i, found));
            }
        }
        let ryw_took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (other_on_replica, other_on_primary, lenient_b) = other.await.unwrap();
        let after = Scrape::of(&h.proxy);
        eprintln!(
            "{RYW_TRIES} write+read pairs in {ryw_took:?}; other client: {other_on_replica} \
             reads on the replica ({} after the first write), {other_on_primary} on the primary",
            replica_reads_after_a_write.load(Ordering::Relaxed)
        );
        assert!(
            missed.is_empty(),
            "{} of {RYW_TRIES} reads missed the client's own write: {:?}",
            missed.len(),
            &missed[..missed.len().min(5)]
        );
        assert!(replica_reads_after_a_write.load(Ordering::Relaxed) >= 1);
        assert_eq!(
            h.replica_sql("SELECT count(*) FROM documents WHERE title LIKE 'ryw %'")
                .trim(),
            "0",
            "replay was not paused"
        );
        assert_eq!(
            h.replica_sql("SELECT pg_get_wal_replay_pause_state()")
                .trim(),
            "paused"
        );
        // Every writer's read was a fallback to the primary; the other client's reads were
        // replica reads (or fallbacks, had the replica left rotation).
        let delta = |target, kind| after.routed(target, kind) - before.routed(target, kind);
        assert_eq!(delta("primary", "write"), RYW_TRIES as f64);
        assert_eq!(
            delta("primary", "fallback"),
            (RYW_TRIES + other_on_primary) as f64,
            "{}",
            relevant_lines(&after.text)
        );
        assert_eq!(delta(REPLICA, "read"), other_on_replica as f64);
        assert_eq!(after.replica_healthy(), Some(1.0));
        assert!(after.replica_lag_bytes().unwrap_or(0.0) > 0.0);

        // Several MiB of WAL: past the 1 MiB byte limit, within the lenient one.
        h.primary_sql(
            "CREATE TABLE filler AS SELECT g, repeat('x', 400) AS pad \
             FROM generate_series(1, 10000) g",
        );
        let out = wait_for_reads_on(&bytes_client, false, HEALTH_DEADLINE).await;
        eprintln!("byte-limited proxy: replica out of rotation {out:?} after the bulk write");
        let bytes_scrape = wait_for_scrape(&bytes, HEALTH_DEADLINE, "the replica out", |s| {
            s.replica_healthy() == Some(0.0)
        })
        .await;
        assert!(bytes_scrape.replica_lag_bytes().unwrap_or(0.0) > 1_048_576.0);
        for _ in 0..3 {
            assert!(!read_lands_on_replica(&bytes_client).await.unwrap());
            assert!(read_lands_on_replica(&lenient_b).await.unwrap());
        }

        // Replay resumes: the replica catches up and every proxy reads from it again, the
        // writer included (its rows are there now).
        h.replica_sql("SELECT pg_wal_replay_resume()");
        for client in [&bytes_client, &timed_client, &lenient_a] {
            wait_for_reads_on(client, true, ROTATION_DEADLINE).await;
        }
        assert_eq!(
            h.replica_sql("SELECT count(*) FROM documents WHERE title LIKE 'ryw %'")
                .trim(),
            RYW_TRIES.to_string()
        );
        let seen = rows(
            &lenient_a
                .simple_query(
                    "SELECT pg_is_in_recovery(), count(*) FROM documents WHERE title LIKE 'ryw %'",
                )
                .await
                .unwrap(),
        );
        assert_eq!(
            seen,
            vec![vec![Some("t".to_owned()), Some(RYW_TRIES.to_string())]]
        );
    })
    .await;
}
