//! The PostgreSQL protocol through pgcordon: multi-statement and failing batches, notices, large
//! streamed results, the extended protocol, prepared statements per pooling mode, transaction
//! control around the identity injection, and real libpq clients (psql, pgbench).

use std::pin::pin;

use futures_util::TryStreamExt;
use pgcordon_e2e::tenants::{
    db_error, function_call, libpq_env, rows, run, simple_value, text, who_and_count, within,
};
use pgcordon_e2e::{raw, Harness, Tenant, POOL_TX};
use tokio::io::AsyncWriteExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::SimpleQueryMessage;

/// A pool of one: consecutive transactions of A and B share a backend, so each of them starts
/// with the identity injection right before the client's own first message.
const POOL_ONE: &str = "  mode: transaction\n  size: 1\n  min_idle: 1\n  acquire_timeout: 5s";

const MILLION: i64 = 1_000_000;
const MILLION_SUM: i64 = MILLION * (MILLION + 1) / 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_queries_and_an_error_mid_batch() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;

        let messages = a
            .simple_query(
                "SELECT 1 AS one; SELECT 'two' AS two, 2.5 AS half; \
             SELECT title FROM documents ORDER BY title",
            )
            .await
            .unwrap();
        let completes: Vec<u64> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(completes, vec![1, 1, 2]);
        let strings = |row: &Vec<Option<String>>| row.iter().flatten().cloned().collect::<Vec<_>>();
        assert_eq!(
            rows(&messages).iter().map(strings).collect::<Vec<_>>(),
            vec![
                vec!["1".to_owned()],
                vec!["two".to_owned(), "2.5".to_owned()],
                vec!["tenant A: invoices".to_owned()],
                vec!["tenant A: roadmap".to_owned()],
            ]
        );

        // A COMMIT in the middle of the string: the statements after it keep the identity.
        let r = rows(
            &a.simple_query(
                "BEGIN; SELECT current_setting('app.current_user_id'); COMMIT; \
             SELECT current_setting('app.current_user_id')",
            )
            .await
            .unwrap(),
        );
        assert_eq!(r, vec![vec![Some(Tenant::A.id().to_owned())]; 2]);

        // An error mid-batch: the statements after it do not run, the session stays usable.
        let err = a
            .simple_query("SELECT 1; SELECT 1/0; SELECT 2")
            .await
            .unwrap_err();
        let (code, severity, message) = db_error(&err);
        assert_eq!((code.as_str(), severity.as_str()), ("22012", "ERROR"));
        assert!(message.contains("division by zero"), "{message}");
        let err = a
            .simple_query("INSERT INTO documents (title) VALUES ('never'); SELECT 1/0")
            .await
            .unwrap_err();
        assert_eq!(db_error(&err).0, "22012");
        assert_eq!(
            who_and_count(&a).await.unwrap(),
            (Tenant::A.id().to_owned(), 2),
            "the failed batch's INSERT was rolled back and the identity kept"
        );
        assert_eq!(simple_value(&a, "SELECT 2").await.unwrap(), "2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_stream_through_both_protocols() {
    within(120, async {
        let h = Harness::start(POOL_TX).await;
        let a = h.connect(Tenant::A).await;
        let sql = format!("SELECT g FROM generate_series(1, {MILLION}) g");

        let mut stream = pin!(a.simple_query_raw(&sql).await.unwrap());
        let (mut count, mut sum) = (0i64, 0i64);
        while let Some(message) = stream.try_next().await.unwrap() {
            if let SimpleQueryMessage::Row(row) = message {
                count += 1;
                sum += row.get(0).unwrap().parse::<i64>().unwrap();
            }
        }
        assert_eq!((count, sum), (MILLION, MILLION_SUM));

        let none: [(&(dyn ToSql + Sync), Type); 0] = [];
        let sql = format!("SELECT g::int8 FROM generate_series(1, {MILLION}) g");
        let mut stream = pin!(a.query_typed_raw(&sql, none).await.unwrap());
        let (mut count, mut sum) = (0i64, 0i64);
        while let Some(row) = stream.try_next().await.unwrap() {
            count += 1;
            sum += row.get::<_, i64>(0);
        }
        assert_eq!((count, sum), (MILLION, MILLION_SUM));
        assert_eq!(who_and_count(&a).await.unwrap().1, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_typed_parameters() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let bytes: Vec<u8> = vec![0, 1, 0xfe, 0xff];
        let missing: Option<i32> = None;
        let row = a
            .query_typed_one(
                "SELECT $1::int4 + 1, $2::text || '!', $3::float8 * 2, NOT $4::bool, \
             length($5::bytea), $6::int8 - 1, $7::int4 IS NULL, $8::text",
                &[
                    (&41i32, Type::INT4),
                    (&"héllo", Type::TEXT),
                    (&1.25f64, Type::FLOAT8),
                    (&false, Type::BOOL),
                    (&bytes, Type::BYTEA),
                    (&i64::MAX, Type::INT8),
                    (&missing, Type::INT4),
                    (&Tenant::B.id(), Type::TEXT),
                ],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        assert_eq!(row.get::<_, String>(1), "héllo!");
        assert_eq!(row.get::<_, f64>(2), 2.5);
        assert!(row.get::<_, bool>(3));
        assert_eq!(row.get::<_, i32>(4), 4);
        assert_eq!(row.get::<_, i64>(5), i64::MAX - 1);
        assert!(row.get::<_, bool>(6));
        // A parameter holding another tenant's id is data, not identity.
        assert_eq!(row.get::<_, String>(7), Tenant::B.id());

        // Parameters filter under RLS: the same title query finds A's row for A only.
        let by_title = "SELECT count(*) FROM documents WHERE title = $1 OR owner_id = $2";
        for (client, expected) in [(&a, 1i64), (&b, 0), (&a, 1)] {
            let n: i64 = client
                .query_typed_one(
                    by_title,
                    &[(&"tenant A: roadmap", Type::TEXT), (&"nobody", Type::TEXT)],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, expected);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_work_in_transaction_pooling() {
    within(120, async {
        // Named statements were refused with 0A000 until pgcordon learned to carry them from
        // backend to backend; on a pool of one shared by A and B they must keep A's identity.
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let statement = a
            .prepare_typed(
                "SELECT current_setting('app.current_user_id'), count(*) FROM documents \
                 WHERE title <> $1",
                &[Type::TEXT],
            )
            .await
            .unwrap_or_else(|e| panic!("{:?}", db_error(&e)));
        for (skip, expected) in [("tenant A: roadmap", 1i64), ("nothing", 2)] {
            assert_eq!(who_and_count(&b).await.unwrap().0, Tenant::B.id());
            let row = a.query_one(&statement, &[&skip]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), Tenant::A.id());
            assert_eq!(row.get::<_, i64>(1), expected);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_messages_are_refused_with_0a000_even_for_set_config() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let oid: u32 =
            tokio::task::block_in_place(|| h.admin("SELECT 'pg_catalog.set_config'::regproc::oid"))
                .trim()
                .parse()
                .unwrap();
        let tls = raw::tls_config(&h.stack.files.ca, Some(h.tenant_files(Tenant::A)), &[]);
        let mut s = raw::tls_after_ssl_request(raw::tcp(h.addr).await, tls)
            .await
            .unwrap();
        s.write_all(&raw::app_startup()).await.unwrap();
        let greeting = raw::read_until_ready_or_error(&mut s).await.unwrap();
        assert_eq!(greeting.last().map(|m| m.tag), Some(b'Z'), "{greeting:?}");
        let call = function_call(oid, &["app.current_user_id", Tenant::B.id(), "false"]);
        let who = "SELECT current_setting('app.current_user_id')";

        for in_transaction in [false, true] {
            if in_transaction {
                let begun = raw::simple_query(&mut s, "BEGIN").await.unwrap();
                assert_eq!(begun, Ok(vec![]));
            }
            s.write_all(&call).await.unwrap();
            let answer = raw::read_until_ready_or_error(&mut s).await.unwrap();
            let error = answer.last().unwrap().error();
            assert_eq!(
                (error.code.as_str(), error.severity.as_str()),
                ("0A000", "ERROR"),
                "{error:?}"
            );
            assert!(
                error
                    .message
                    .contains("FunctionCall protocol message is not supported"),
                "{error:?}"
            );
            let ready = raw::read_message(&mut s).await.unwrap();
            let status = if in_transaction { b'E' } else { b'I' };
            assert_eq!((ready.tag, ready.body.clone()), (b'Z', vec![status]));
            if in_transaction {
                let aborted = raw::simple_query(&mut s, "SELECT 1").await.unwrap();
                assert_eq!(aborted.map_err(|e| e.code), Err("25P02".to_owned()));
                raw::simple_query(&mut s, "ROLLBACK")
                    .await
                    .unwrap()
                    .unwrap();
            }
            let seen = raw::simple_query(&mut s, who).await.unwrap();
            assert_eq!(seen, Ok(vec![Some(Tenant::A.id().to_owned())]));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_work_in_session_pooling() {
    within(120, async {
        let h = Harness::start("  mode: session\n  size: 1\n  min_idle: 1\n  acquire_timeout: 10s")
            .await;
        let a = h.connect(Tenant::A).await;
        let statement = a
            .prepare_typed(
                "SELECT current_setting('app.current_user_id'), count(*) FROM documents \
             WHERE title <> $1",
                &[Type::TEXT],
            )
            .await
            .unwrap();
        for (skip, expected) in [("tenant A: roadmap", 1i64), ("nothing", 2)] {
            let row = a.query_one(&statement, &[&skip]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), Tenant::A.id());
            assert_eq!(row.get::<_, i64>(1), expected);
        }
        drop(statement);
        drop(a);

        // The only backend, handed on to B, carries neither A's identity nor A's statements (B's
        // driver reuses the same statement names).
        let b = h.connect(Tenant::B).await;
        let statement = b
            .prepare("SELECT current_setting('app.current_user_id'), count(*) FROM documents")
            .await
            .unwrap();
        for _ in 0..2 {
            let row = b.query_one(&statement, &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), Tenant::B.id());
            assert_eq!(row.get::<_, i64>(1), 1);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_levels_are_set_before_any_snapshot() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let probe = "SELECT current_setting('transaction_isolation'), \
                 current_setting('app.current_user_id'), (SELECT count(*) FROM documents)";

        for round in 0..2 {
            a.simple_query("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await
                .unwrap_or_else(|e| panic!("round {round}: {:?}", db_error(&e)));
            let row = a.query_typed_one(probe, &[]).await.unwrap();
            let seen: (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            assert_eq!(seen, ("serializable".into(), Tenant::A.id().into(), 2));
            a.simple_query("COMMIT").await.unwrap();

            let r = rows(
                &b.simple_query(&format!(
                    "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; {probe}; COMMIT"
                ))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {:?}", db_error(&e))),
            );
            assert_eq!(
                r,
                vec![vec![
                    Some("repeatable read".into()),
                    Some(Tenant::B.id().into()),
                    Some("1".into())
                ]]
            );

            a.query_typed(
                "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: {:?}", db_error(&e)));
            let read_only = simple_value(&a, "SHOW transaction_read_only")
                .await
                .unwrap();
            assert_eq!(read_only, "on");
            a.simple_query("COMMIT").await.unwrap();
            assert_eq!(who_and_count(&b).await.unwrap().0, Tenant::B.id());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_never_loses_the_identity() {
    within(120, async {
        let h = Harness::start(POOL_ONE).await;
        let a = h.connect(Tenant::A).await;
        let b = h.connect(Tenant::B).await;
        let own_a = (Tenant::A.id().to_owned(), 2);
        let own_b = (Tenant::B.id().to_owned(), 1);

        a.simple_query("BEGIN").await.unwrap();
        assert_eq!(who_and_count(&a).await.unwrap(), own_a);
        a.simple_query("ROLLBACK").await.unwrap();
        assert_eq!(who_and_count(&a).await.unwrap(), own_a);

        b.simple_query("BEGIN").await.unwrap();
        assert_eq!(
            db_error(&b.simple_query("SELECT 1/0").await.unwrap_err()).0,
            "22012"
        );
        b.simple_query("ROLLBACK").await.unwrap();
        assert_eq!(who_and_count(&b).await.unwrap(), own_b);

        let r = rows(
            &a.simple_query(
                "BEGIN; SELECT 1; ROLLBACK; \
             SELECT current_setting('app.current_user_id'), (SELECT count(*) FROM documents)",
            )
            .await
            .unwrap(),
        );
        assert_eq!(r[1], vec![Some(own_a.0.clone()), Some("2".into())]);

        b.simple_query("BEGIN; INSERT INTO documents (title) VALUES ('rolled back'); ROLLBACK")
            .await
            .unwrap();
        assert_eq!(who_and_count(&b).await.unwrap(), own_b);
        assert_eq!(who_and_count(&a).await.unwrap(), own_a);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_end_to_end_rows_and_notices() {
    within(120, async {
        let h = Harness::start(POOL_TX).await;
        for (tenant, expected) in [
            (Tenant::A, "tenant A: invoices\ntenant A: roadmap\n"),
            (Tenant::B, "tenant B: payroll\n"),
        ] {
            let out = run(
                "psql",
                &[
                    "-X",
                    &h.conninfo(tenant),
                    "-At",
                    "-c",
                    "SELECT title FROM documents ORDER BY 1",
                ],
                &[],
            )
            .await;
            assert!(out.status.success(), "psql: {}", text(&out.stderr));
            assert_eq!(text(&out.stdout), expected);
        }

        let out = run(
            "psql",
            &[
                "-X",
                &h.conninfo(Tenant::A),
                "-At",
                "-c",
                "DO $$ BEGIN RAISE NOTICE 'hello'; END $$",
                "-c",
                "SELECT count(*) FROM documents",
            ],
            &[],
        )
        .await;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "psql: {stderr}");
        assert!(stderr.contains("NOTICE:  hello"), "stderr: {stderr:?}");
        assert_eq!(text(&out.stdout), "DO\n2\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_through_pgcordon() {
    within(120, async {
        let h = Harness::start(POOL_TX).await;
        // Divides by zero unless the row count and the identity are A's: a wrong answer is an
        // error.
        let script = h.stack.dir.join("select-count.sql");
        std::fs::write(
            &script,
            format!(
                "SELECT 1 / (CASE WHEN count(*) = 2 AND \
             current_setting('app.current_user_id') = '{}' THEN 1 ELSE 0 END) FROM documents;\n",
                Tenant::A.id()
            ),
        )
        .unwrap();
        let script = script.display().to_string();

        for protocol in ["simple", "extended"] {
            let out = run(
                "pgbench",
                &[
                    "-n", "-c", "4", "-j", "2", "-t", "200", "-M", protocol, "-f", &script,
                ],
                &libpq_env(&h, Tenant::A),
            )
            .await;
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(
                out.status.success(),
                "pgbench -M {protocol}: {stdout}\n{stderr}"
            );
            assert!(
                stdout.contains("number of transactions actually processed: 800/800"),
                "{stdout}"
            );
            assert!(
                stdout.contains("number of failed transactions: 0 "),
                "{stdout}"
            );
        }

        // The same script as B must fail: the check above can fail.
        let out = run(
            "pgbench",
            &["-n", "-c", "1", "-t", "1", "-f", &script],
            &libpq_env(&h, Tenant::B),
        )
        .await;
        assert!(!out.status.success(), "pgbench as B passed A's check");
        assert!(
            text(&out.stderr).contains("division by zero"),
            "{}",
            text(&out.stderr)
        );
    })
    .await;
}

/// Parse and Bind, then Flush: the Bind fails (1/0 is folded while planning) before the client
/// has sent Execute and Sync. The server skips everything up to that Sync; pgcordon must expect
/// nothing for the skipped requests, so the backend is released after the Sync's
/// ReadyForQuery. Drivers that flush before syncing (pgjdbc, pgx, libpq pipelines) do this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answered_before_the_sync_was_sent_releases_the_backend() {
    use postgres_protocol::message::frontend;

    let h = Harness::start(POOL_ONE).await;
    let tls = raw::tls_config(&h.stack.files.ca, Some(h.tenant_files(Tenant::A)), &[]);
    let mut a = raw::tls_after_ssl_request(raw::tcp(h.addr).await, tls)
        .await
        .expect("TLS");
    a.write_all(&raw::app_startup()).await.expect("startup");
    let greeting = raw::read_until_ready_or_error(&mut a)
        .await
        .expect("greeting");
    assert_eq!(greeting.last().map(|m| m.tag), Some(b'Z'));

    let mut out = bytes::BytesMut::new();
    frontend::parse("", "SELECT 1 / $1::int4", [23u32], &mut out).expect("parse");
    let zero = [Some("0")];
    frontend::bind(
        "",
        "",
        [0i16],
        zero,
        |value: Option<&str>, buf| {
            buf.extend_from_slice(value.unwrap_or_default().as_bytes());
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut out,
    )
    .map_err(|_| "bind")
    .expect("bind");
    frontend::flush(&mut out);
    a.write_all(&out).await.expect("send Parse, Bind, Flush");
    let parsed = raw::read_message(&mut a).await.expect("ParseComplete");
    let failed = raw::read_message(&mut a).await.expect("ErrorResponse");
    assert_eq!((parsed.tag, failed.tag), (b'1', b'E'));
    assert_eq!(failed.error().code, "22012");

    let mut out = bytes::BytesMut::new();
    frontend::execute("", 0, &mut out).expect("execute");
    frontend::sync(&mut out);
    a.write_all(&out).await.expect("send Execute, Sync");
    let ready = raw::read_message(&mut a).await.expect("ReadyForQuery");
    assert_eq!(ready.tag, b'Z', "the skipped Execute gets no answer");
    let one = raw::simple_query(&mut a, "SELECT 1").await.expect("query");
    assert_eq!(one, Ok(vec![Some("1".to_owned())]));

    // A is idle between transactions: the pool's only backend must be free for B.
    let b = h.connect(Tenant::B).await;
    let seen = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        b.query_one("SELECT current_setting('app.current_user_id')", &[]),
    )
    .await
    .expect("B got the backend in time")
    .expect("B's query");
    assert_eq!(seen.get::<_, String>(0), Tenant::B.id());
}
