//! Read-only classification: what may run on a replica, and the exact reason for everything
//! that goes to the primary.

mod classify_support;

use classify_support::{primary, run_routes, run_routes_allowing, REPLICA};
use pgcordon_sql::PrimaryReason::{
    self, Ddl, Empty, Function, Locking, SelectInto, Statement, Transaction, Unparsable, Write,
};

#[test]
fn provably_read_only_texts_go_to_a_replica() {
    run_routes(&[
        ("SELECT 1", REPLICA),
        ("SELECT id, name FROM users WHERE id = $1", REPLICA),
        ("select * from orders o join items i on i.order_id = o.id where o.total > 10", REPLICA),
        ("SELECT count(*), sum(total), avg(total) FROM orders GROUP BY customer_id", REPLICA),
        ("SELECT lower(name), upper(name), length(name), substr(name, 1, 3) FROM t", REPLICA),
        ("SELECT coalesce(a, b), abs(x), round(y, 2), date_trunc('day', now()) FROM t", REPLICA),
        ("SELECT to_char(now(), 'YYYY'), current_setting('search_path')", REPLICA),
        ("SELECT array_agg(id ORDER BY id), string_agg(name, ', ') FROM t", REPLICA),
        ("SELECT jsonb_extract_path_text(doc, 'a'), jsonb_array_length(doc -> 'b') FROM t", REPLICA),
        ("SELECT * FROM generate_series(1, 10) AS g(n)", REPLICA),
        ("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", REPLICA),
        ("SELECT count(*) FILTER (WHERE done) FROM tasks", REPLICA),
        ("SELECT pg_catalog.lower('X')", REPLICA),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE u.x = ANY($1))", REPLICA),
        ("SELECT EXISTS (SELECT 1 FROM t)", REPLICA),
        ("SELECT extract(epoch FROM now()), ts AT TIME ZONE 'UTC' FROM t", REPLICA),
        ("SELECT a FROM t UNION ALL SELECT b FROM u", REPLICA),
        ("VALUES (1, 'a'), (2, 'b')", REPLICA),
        ("TABLE users", REPLICA),
        ("WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') SELECT count(*) FROM recent", REPLICA),
        ("(SELECT 1) UNION (SELECT 2)", REPLICA),
        ("SELECT 1; SELECT 2", REPLICA),
        ("SELECT 1;", REPLICA),
        ("SHOW search_path", REPLICA),
        ("SHOW ALL", REPLICA),
        ("BEGIN READ ONLY", REPLICA),
        ("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", REPLICA),
        ("START TRANSACTION READ ONLY", REPLICA),
        ("SET TRANSACTION READ ONLY", REPLICA),
        ("BEGIN READ ONLY; SELECT * FROM t; COMMIT", REPLICA),
        ("SELECT $$ FOR UPDATE $$", REPLICA),
        ("SELECT 'INSERT INTO t VALUES (1)'", REPLICA),
        ("SELECT \"for\" FROM t", REPLICA),
    ]);
}

#[test]
fn writes_and_schema_changes_go_to_the_primary() {
    run_routes(&[
        ("INSERT INTO t VALUES (1)", primary(Write)),
        ("UPDATE t SET a = 1", primary(Write)),
        ("DELETE FROM t", primary(Write)),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            primary(Write),
        ),
        (
            "WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved",
            primary(Write),
        ),
        (
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x",
            primary(Write),
        ),
        ("COPY t FROM STDIN", primary(Write)),
        ("EXPLAIN ANALYZE UPDATE t SET a = 1", primary(Write)),
        ("SELECT 1; INSERT INTO t VALUES (1)", primary(Write)),
        ("CREATE TABLE t (a int)", primary(Ddl)),
        ("ALTER TABLE t ADD COLUMN b int", primary(Ddl)),
        ("DROP TABLE t", primary(Ddl)),
        ("TRUNCATE t", primary(Ddl)),
        ("GRANT SELECT ON t TO r", primary(Ddl)),
        ("VACUUM t", primary(Ddl)),
        ("CREATE TABLE t2 AS SELECT * FROM t", primary(Ddl)),
        ("SELECT * INTO t2 FROM t", primary(SelectInto)),
        ("SELECT 1 FOR UPDATE", primary(Locking)),
        ("SELECT * FROM t FOR NO KEY UPDATE", primary(Locking)),
        ("SELECT * FROM t FOR SHARE SKIP LOCKED", primary(Locking)),
        (
            "SELECT * FROM t FOR KEY SHARE OF t NOWAIT",
            primary(Locking),
        ),
        (
            "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
            primary(Locking),
        ),
    ]);
}

#[test]
fn functions_not_on_the_list_go_to_the_primary() {
    run_routes(&[
        ("SELECT nextval('seq')", primary(Function)),
        ("SELECT setval('seq', 1)", primary(Function)),
        ("SELECT set_config('a.b', 'c', false)", primary(Function)),
        ("SELECT pg_advisory_lock(1)", primary(Function)),
        ("SELECT pg_advisory_xact_lock(1)", primary(Function)),
        ("SELECT lo_import('/tmp/x')", primary(Function)),
        ("SELECT lo_unlink(42)", primary(Function)),
        ("SELECT my_report(1)", primary(Function)),
        (
            "SELECT * FROM t WHERE id = (SELECT next_id())",
            primary(Function),
        ),
        ("SELECT app.lower('x')", primary(Function)),
        ("SELECT \"COUNT\"(*) FROM t", primary(Function)),
        (
            "SELECT count(*) FROM t WHERE touch(t.id)",
            primary(Function),
        ),
        ("SELECT txid_current()", primary(Function)),
    ]);
}

#[test]
fn the_operators_allowed_functions() {
    let allow = ["my_report", "app.safe_total"];
    run_routes_allowing(
        &allow,
        &[
            ("SELECT my_report(1)", REPLICA),
            ("SELECT MY_REPORT(1)", REPLICA),
            ("SELECT reports.my_report(1)", REPLICA),
            ("SELECT app.safe_total(2)", REPLICA),
            ("SELECT \"app\".\"safe_total\"(2)", REPLICA),
            (
                "SELECT * FROM t WHERE my_report(id) > app.safe_total(id)",
                REPLICA,
            ),
            // Qualified entries only allow calls with that schema.
            ("SELECT safe_total(2)", primary(Function)),
            ("SELECT other.safe_total(2)", primary(Function)),
            ("SELECT my_report(1), nextval('s')", primary(Function)),
        ],
    );
}

#[test]
fn transactions_and_other_statements() {
    run_routes(&[
        ("BEGIN", primary(Transaction)),
        (
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            primary(Transaction),
        ),
        ("START TRANSACTION", primary(Transaction)),
        ("BEGIN READ WRITE", primary(Transaction)),
        ("BEGIN READ ONLY, READ WRITE", primary(Transaction)),
        // A hot standby refuses serializable transactions.
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY",
            primary(Transaction),
        ),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY",
            primary(Transaction),
        ),
        ("SET TRANSACTION READ WRITE", primary(Transaction)),
        ("BEGIN; SELECT 1", primary(Transaction)),
        ("SAVEPOINT a", primary(Transaction)),
        ("SET search_path = a", primary(Statement)),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            primary(Statement),
        ),
        ("CALL refresh_stats()", primary(Statement)),
        ("DO $$ BEGIN NULL; END $$", primary(Statement)),
        ("EXPLAIN SELECT 1", primary(Statement)),
        ("COPY t TO STDOUT", primary(Statement)),
        ("LISTEN jobs", primary(Statement)),
        ("DECLARE c CURSOR FOR SELECT 1", primary(Statement)),
        ("SELECT 1; EXPLAIN SELECT 2", primary(Statement)),
    ]);
}

#[test]
fn nothing_or_nonsense_goes_to_the_primary() {
    run_routes(&[
        ("", primary(Empty)),
        ("   \n\t", primary(Empty)),
        ("-- only a comment", primary(Empty)),
        ("/* only */ /* comments */", primary(Empty)),
        (";", primary(Empty)),
        ("SELEC 1", primary(Unparsable)),
        ("SELECT (", primary(Unparsable)),
        ("SELECT 'open", primary(Unparsable)),
        ("SELECT 1 /* open", primary(Unparsable)),
        ("SELECT 1\0", primary(Unparsable)),
        ("SELECT 1; SELEC 2", primary(Unparsable)),
    ]);
}

#[test]
fn labels_are_distinct_snake_case() {
    let labels: std::collections::HashSet<&str> =
        PrimaryReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), PrimaryReason::ALL.len());
    for label in labels {
        assert!(
            label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{label}"
        );
    }
    assert_eq!(Write.to_string(), "write");
    assert_eq!(PrimaryReason::HintIgnored.as_str(), "hint_ignored");
}
