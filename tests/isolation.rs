//! Tenant isolation under load, identities that look like SQL, tampering with the identity,
//! pool exhaustion, and a backend or the whole server going away.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcordon_devkit::pki::ClientSpec;
use pgcordon_e2e::tenants::{
    admin, connect_as, connect_watched, connect_when_upstream_ready, db_error, issue_client,
    issue_tenants, rows, seed_rows, simple_value, who_and_count, with_identity, within, ExtraProxy,
    WHO_AND_COUNT,
};
use pgcordon_e2e::{sqlstate, Harness, Tenant};
use tokio_postgres::types::Type;

const CLIENTS: usize = 50;
const TRANSACTIONS: usize = 200;
const TENANTS: usize = 10;

/// A pool of one: every transaction of every client runs on the same backend session.
const POOL_ONE: &str = "  mode: transaction\n  size: 1\n  min_idle: 1\n  acquire_timeout: 5s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_ten_tenants_five_backends_never_mix_identities() {
    within(120, async {
        let h =
            Harness::start("  mode: transaction\n  size: 5\n  min_idle: 5\n  acquire_timeout: 20s")
                .await;
        let tenants = issue_tenants(&h.stack, TENANTS);
        // Tenant k owns k + 1 rows, so a count read under the wrong identity cannot look right.
        for (k, t) in tenants.iter().enumerate() {
            seed_rows(&h, &t.id, k + 1);
        }

        let mismatches = Arc::new(Mutex::new(Vec::<String>::new()));
        let tenants_per_backend = Arc::new(Mutex::new(HashMap::<i32, HashSet<usize>>::new()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let k = i % TENANTS;
            let tenant = tenants[k].clone();
            let client = connect_as(&h, &tenant.files).await;
            let mismatches = Arc::clone(&mismatches);
            let per_backend = Arc::clone(&tenants_per_backend);
            tasks.push(tokio::spawn(async move {
                let sql = format!("{WHO_AND_COUNT}, pg_backend_pid()");
                for t in 0..TRANSACTIONS {
                    let seen: Result<(String, i64, i32), tokio_postgres::Error> = async {
                        match t % 4 {
                            // BEGIN, the read and COMMIT as three round trips: the backend is held
                            // across client messages.
                            0 => {
                                client.simple_query("BEGIN").await?;
                                let r = rows(&client.simple_query(&sql).await?);
                                client.simple_query("COMMIT").await?;
                                Ok(parse_row(&r[0]))
                            }
                            // Autocommit, extended protocol (unnamed statement).
                            1 => {
                                let row = client.query_typed_one(&sql, &[]).await?;
                                Ok((row.get(0), row.get(1), row.get(2)))
                            }
                            // The whole transaction in one simple Query.
                            2 => {
                                let r = rows(
                                    &client
                                        .simple_query(&format!("BEGIN; {sql}; COMMIT"))
                                        .await?,
                                );
                                Ok(parse_row(&r[0]))
                            }
                            // Simple BEGIN, extended read inside it, simple COMMIT.
                            _ => {
                                client.simple_query("BEGIN").await?;
                                let row = client.query_typed_one(&sql, &[]).await?;
                                client.simple_query("COMMIT").await?;
                                Ok((row.get(0), row.get(1), row.get(2)))
                            }
                        }
                    }
                    .await;
                    match seen {
                        Ok((who, count, pid)) => {
                            if who != tenant.id || count != (k + 1) as i64 {
                                mismatches.lock().unwrap().push(format!(
                                    "client {i} (tenant {k}) tx {t}: saw {who:?} with {count} rows"
                                ));
                            }
                            per_backend
                                .lock()
                                .unwrap()
                                .entry(pid)
                                .or_default()
                                .insert(k);
                        }
                        Err(e) => mismatches.lock().unwrap().push(format!(
                            "client {i} (tenant {k}) tx {t}: error {:?}",
                            db_error(&e)
                        )),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("client task");
        }
        let elapsed = started.elapsed();

        let mismatches = mismatches.lock().unwrap();
        assert!(
            mismatches.is_empty(),
            "{} of {} transactions saw another identity or failed; first: {:#?}",
            mismatches.len(),
            CLIENTS * TRANSACTIONS,
            &mismatches[..mismatches.len().min(10)]
        );
        let per_backend = tenants_per_backend.lock().unwrap();
        eprintln!(
            "{} transactions in {elapsed:?} on backends {:?}",
            CLIENTS * TRANSACTIONS,
            per_backend
                .iter()
                .map(|(pid, t)| (pid, t.len()))
                .collect::<Vec<_>>()
        );
        assert!(per_backend.len() <= 5, "more backends than the pool size");
        // The test only means something if backends switched between identities.
        assert!(
            per_backend.values().any(|t| t.len() > 1),
            "no backend served more than one tenant: {per_backend:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_a_common_name_is_only_ever_data() {
    within(120, async {
    let h = Harness::start(POOL_ONE).await;
    let proxy = ExtraProxy::start(&h, "subject-cn.yaml", POOL_ONE, |yaml| {
        with_identity(&yaml, "subject_cn", "^(.+)$")
    })
    .await;
    let evil = r#"x'); DROP TABLE documents; SELECT set_config('app.current_user_id', 'b', false); -- "$$\"#;
    let files = issue_client(
        &h.stack,
        &ClientSpec {
            common_name: Some(evil.to_owned()),
            ..ClientSpec::default()
        },
        "evil-cn",
    );
    let c = proxy
        .connect(&h.stack.files.ca, &files)
        .await
        .expect("a CN matching the pattern connects");
    for _ in 0..3 {
        assert_eq!(
            who_and_count(&c.client).await.unwrap(),
            (evil.to_owned(), 0)
        );
    }
    c.client
        .simple_query("INSERT INTO documents (title) VALUES ('written by the odd CN')")
        .await
        .unwrap();
    assert_eq!(who_and_count(&c.client).await.unwrap().1, 1);
    // The table survived with every row, and the new row carries the CN verbatim.
    let owner = admin(
        &h,
        "SELECT owner_id FROM documents WHERE title = 'written by the odd CN'",
    );
    assert_eq!(owner.trim_end_matches('\n'), evil);
    assert_eq!(admin(&h, "SELECT count(*) FROM documents").trim(), "4");
    })
    .await;
}

/// Statements that must never change the identity, whatever their spelling.
const TAMPERING: &[&str] = &[
    "SET app.current_user_id = 'B'",
    "SET app.current_user_id TO 'B'",
    "set APP.CURRENT_USER_ID to 'B'",
    "SET \"app\".\"current_user_id\" = 'B'",
    "SET \"app.current_user_id\" = 'B'",
    "SET SESSION app.current_user_id = 'B'",
    "SeT sEsSiOn App.Current_User_Id TO 'B'",
    "SET LOCAL app.current_user_id = 'B'",
    "SET app.current_user_id TO DEFAULT",
    "RESET app.current_user_id",
    "reset \"app\".\"current_user_id\"",
    "RESET App.Current_User_Id",
    "SELECT set_config('app.current_user_id', 'B', false)",
    "select SET_CONFIG('APP.CURRENT_USER_ID', 'B', true)",
    "SELECT pg_catalog.set_config('app.current_user_id', 'B', false)",
    "SELECT 1 WHERE set_config('app.current_user_id', 'B', false) IS NOT NULL",
];

fn with_b(sql: &str) -> String {
    sql.replace("'B'", &format!("'{}'", Tenant::B.id()))
}

fn assert_guard_refusal(err: &tokio_postgres::Error, what: &str) {
    let (code, _, message) = db_error(err);
    assert_eq!(code, "42501", "{what}: {message}");
    assert!(
        message.starts_with("pgcordon:") && message.contains("app.current_user_id"),
        "{what}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_identity_is_refused_and_changes_nothing() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let own = (Tenant::A.id().to_owned(), 2);

        let batch = with_b("SELECT 1; SET app.current_user_id = 'B'");
        for sql in TAMPERING.iter().map(|s| with_b(s)).chain([batch]) {
            let err = a.simple_query(&sql).await.unwrap_err();
            assert_guard_refusal(&err, &format!("simple {sql}"));
            assert_eq!(who_and_count(&a).await.unwrap(), own, "after simple {sql}");
            if sql.contains(';') {
                continue; // one statement per Parse
            }
            let err = a.query_typed(&sql, &[]).await.unwrap_err();
            assert_guard_refusal(&err, &format!("extended {sql}"));
            assert_eq!(
                who_and_count(&a).await.unwrap(),
                own,
                "after extended {sql}"
            );
        }

        // The setting's name as a bound parameter: the guard cannot know it, so it refuses.
        for sql in [
            "SELECT set_config($1, $2, false)",
            "SELECT set_config(lower($1), $2, false)",
        ] {
            let err = a
                .query_typed(
                    sql,
                    &[
                        (&"app.current_user_id", Type::TEXT),
                        (&Tenant::B.id(), Type::TEXT),
                    ],
                )
                .await
                .unwrap_err();
            assert_guard_refusal(&err, sql);
            assert_eq!(who_and_count(&a).await.unwrap(), own, "after {sql}");
        }

        // Inside a transaction the refusal aborts it like any error; ROLLBACK ends it.
        a.simple_query("BEGIN").await.unwrap();
        let err = a.simple_query(&with_b(TAMPERING[0])).await.unwrap_err();
        assert_guard_refusal(&err, "inside BEGIN");
        let err = a.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("25P02"), "{err}");
        a.simple_query("ROLLBACK").await.unwrap();
        assert_eq!(who_and_count(&a).await.unwrap(), own);

        // The same backend (pool of one) then serves B as B, and A as A again.
        assert_eq!(
            who_and_count(&b).await.unwrap(),
            (Tenant::B.id().to_owned(), 1)
        );
        assert_eq!(who_and_count(&a).await.unwrap(), own);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_parse_inside_a_transaction_keeps_errors_and_sessions_consistent() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = connect_watched(h.addr, h.client_tls(h.tenant_files(Tenant::A)))
            .await
            .unwrap();
        a.client.simple_query("BEGIN").await.unwrap();
        let sql = with_b(TAMPERING[12]);
        let err = a.client.query_typed(&sql, &[]).await.unwrap_err();
        assert_guard_refusal(&err, "extended inside BEGIN");
        let (_, severity, message) = db_error(&err);
        match severity.as_str() {
            // ERROR keeps the session: the transaction is aborted as for any error.
            "ERROR" => {
                let next = within(5, a.client.simple_query("SELECT 1")).await;
                let next = next.expect_err("the transaction must be aborted");
                assert_eq!(
                    sqlstate(&next).as_deref(),
                    Some("25P02"),
                    "after an ERROR the session must go on: {next}"
                );
                within(5, a.client.simple_query("ROLLBACK")).await.unwrap();
                assert_eq!(
                    who_and_count(&a.client).await.unwrap(),
                    (Tenant::A.id().to_owned(), 2)
                );
            }
            // FATAL precedes a close.
            "FATAL" => {
                let _ = within(5, a.task).await;
                assert!(a.client.is_closed());
            }
            other => panic!("severity {other:?}: {message}"),
        }
        // The only backend then serves B as B.
        let b = h.connect(Tenant::B).await;
        assert_eq!(
            who_and_count(&b).await.unwrap(),
            (Tenant::B.id().to_owned(), 1)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_and_discard_all_fall_back_to_the_clients_own_identity() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let own_a = (Tenant::A.id().to_owned(), 2);
        let own_b = (Tenant::B.id().to_owned(), 1);

        for reset in ["RESET ALL", "DISCARD ALL", "reset all", "Discard All"] {
            a.simple_query(reset).await.unwrap();
            assert_eq!(who_and_count(&a).await.unwrap(), own_a, "after {reset}");
            assert_eq!(
                who_and_count(&b).await.unwrap(),
                own_b,
                "B after A's {reset}"
            );
            assert_eq!(
                who_and_count(&a).await.unwrap(),
                own_a,
                "A again after {reset}"
            );
        }
        // Within the statement string that resets, the value is neutral, never another identity.
        let after = simple_value(
            &a,
            "RESET ALL; SELECT current_setting('app.current_user_id', true)",
        )
        .await
        .unwrap();
        assert!(after.is_empty() || after == Tenant::A.id(), "{after:?}");
        assert_eq!(who_and_count(&a).await.unwrap(), own_a);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_53300_after_the_acquire_timeout() {
    within(120, async {
        let h = Harness::start(
            "  mode: transaction\n  size: 1\n  min_idle: 1\n  acquire_timeout: 500ms",
        )
        .await;
        let a = connect_when_upstream_ready(&h, Tenant::A).await;
        let b = connect_when_upstream_ready(&h, Tenant::B).await;
        a.simple_query("BEGIN").await.unwrap();
        assert_eq!(who_and_count(&a).await.unwrap().1, 2);

        let started = Instant::now();
        let err = b.simple_query("SELECT 1").await.unwrap_err();
        let waited = started.elapsed();
        let (code, severity, message) = db_error(&err);
        assert_eq!(code, "53300", "{message}");
        assert!(message.contains("pool exhausted"), "{message}");
        assert!(
            waited >= Duration::from_millis(400) && waited <= Duration::from_secs(2),
            "answered after {waited:?}"
        );

        a.simple_query("COMMIT").await.unwrap();
        assert_eq!(
            who_and_count(&b).await.unwrap(),
            (Tenant::B.id().to_owned(), 1),
            "the same client connection works once the backend is free"
        );
        // The session went on, so the error must not claim to be FATAL.
        assert_eq!(severity, "ERROR", "{message}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_closes_its_client_with_08006_and_the_pool_goes_on() {
    within(120, async {
        let h =
            Harness::start("  mode: transaction\n  size: 2\n  min_idle: 2\n  acquire_timeout: 5s")
                .await;
        let a = connect_watched(h.addr, h.client_tls(h.tenant_files(Tenant::A)))
            .await
            .unwrap();
        a.client.simple_query("BEGIN").await.unwrap();
        let pid = simple_value(&a.client, "SELECT pg_backend_pid()")
            .await
            .unwrap();
        let terminated = admin(&h, &format!("SELECT pg_terminate_backend({pid}, 10000)"));
        assert_eq!(terminated.trim(), "t");

        let err = a.client.simple_query("SELECT 1").await.unwrap_err();
        // pgcordon may report before the statement arrives: then the error ends the connection task.
        let reported = match err.as_db_error() {
            Some(_) => db_error(&err),
            None => match within(10, a.task).await.expect("connection task") {
                Err(e) => db_error(&e),
                Ok(()) => panic!("connection ended without an error; statement error: {err}"),
            },
        };
        assert_eq!(reported.0, "08006", "{reported:?}");
        assert_eq!(reported.1, "FATAL", "{reported:?}");
        assert!(
            reported.2.contains("database session was lost"),
            "{reported:?}"
        );
        assert!(a.client.is_closed());

        // Both pool slots still serve: two transactions open at once on two live backends.
        let b = h.connect(Tenant::B).await;
        let a2 = h.connect(Tenant::A).await;
        b.simple_query("BEGIN").await.unwrap();
        a2.simple_query("BEGIN").await.unwrap();
        let pid_b = simple_value(&b, "SELECT pg_backend_pid()").await.unwrap();
        let pid_a = simple_value(&a2, "SELECT pg_backend_pid()").await.unwrap();
        assert!(pid_a != pid && pid_b != pid && pid_a != pid_b);
        assert_eq!(
            who_and_count(&b).await.unwrap(),
            (Tenant::B.id().to_owned(), 1)
        );
        assert_eq!(
            who_and_count(&a2).await.unwrap(),
            (Tenant::A.id().to_owned(), 2)
        );
        b.simple_query("COMMIT").await.unwrap();
        a2.simple_query("COMMIT").await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_heals_after_a_postgresql_restart() {
    within(120, async {
        let mut h =
            Harness::start("  mode: transaction\n  size: 3\n  min_idle: 3\n  acquire_timeout: 2s")
                .await;
        let idle_client = h.connect(Tenant::B).await;
        assert_eq!(who_and_count(&idle_client).await.unwrap().1, 1);

        tokio::task::block_in_place(|| h.stack.cluster.restart()).expect("restart PostgreSQL");
        let restarted = Instant::now();

        let mut failures = Vec::new();
        let deadline = restarted + Duration::from_secs(5);
        loop {
            let a = h.connect(Tenant::A).await;
            match who_and_count(&a).await {
                Ok(seen) => {
                    assert_eq!(seen, (Tenant::A.id().to_owned(), 2));
                    break;
                }
                Err(e) => failures.push(db_error(&e)),
            }
            assert!(
                Instant::now() < deadline,
                "no working transaction 5 s after the restart: {failures:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "first transaction worked {:?} after the restart; failures before: {failures:?}",
            restarted.elapsed()
        );

        // Healed: every transaction now works, on fresh and on pre-restart client connections.
        let clients = [h.connect(Tenant::A).await, h.connect(Tenant::B).await];
        for round in 0..10 {
            for (c, expected) in clients.iter().zip([(Tenant::A, 2), (Tenant::B, 1)]) {
                let seen = who_and_count(c).await;
                assert_eq!(
                    seen.map_err(|e| db_error(&e)),
                    Ok((expected.0.id().to_owned(), expected.1)),
                    "round {round}"
                );
            }
        }
        assert_eq!(
            who_and_count(&idle_client).await.map_err(|e| db_error(&e)),
            Ok((Tenant::B.id().to_owned(), 1)),
            "a client idle during the restart holds no backend and goes on"
        );
    })
    .await;
}

fn parse_row(row: &[Option<String>]) -> (String, i64, i32) {
    let col = |i: usize| row[i].clone().expect("not null");
    (
        col(0),
        col(1).parse().expect("count"),
        col(2).parse().expect("pid"),
    )
}
