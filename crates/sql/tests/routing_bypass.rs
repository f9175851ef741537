//! Routing hints, and texts written to get a write or a writing function past the read-only
//! check: odd case, comments, quoting, statements after a harmless first one, dollar quoting
//! and backslash or Unicode escapes. None may reach a replica.

mod classify_support;

use classify_support::{primary, run_routes, run_routes_allowing, REPLICA};
use pgcordon_sql::PrimaryReason::{
    Ddl, Function, HintIgnored, Hinted, Locking, SelectInto, Statement, Transaction, Unparsable,
    Write,
};
use pgcordon_sql::{Classifier, Route};

#[test]
fn hints_override_when_they_lead_the_text() {
    run_routes(&[
        ("/* pgcordon:primary */ SELECT 1", primary(Hinted)),
        ("  /*pgcordon:primary*/SELECT 1", primary(Hinted)),
        ("/* PGCORDON:PRIMARY */ SELECT 1", primary(Hinted)),
        (
            "/* pgcordon:primary */ INSERT INTO t VALUES (1)",
            primary(Hinted),
        ),
        ("/* pgcordon:replica */ SELECT nextval('s')", REPLICA),
        ("/* pgcordon:replica */ SELECT my_report(1)", REPLICA),
        ("/* pgcordon:replica */ CALL report()", REPLICA),
        ("/* pgcordon:replica */ BEGIN", REPLICA),
        ("/* pgcordon:replica */ SELECT 1", REPLICA),
        // The replica hint never moves a text that writes.
        (
            "/* pgcordon:replica */ INSERT INTO t VALUES (1)",
            primary(HintIgnored),
        ),
        (
            "/* pgcordon:replica */ update t set a = 1",
            primary(HintIgnored),
        ),
        ("/* pgcordon:replica */ DELETE FROM t", primary(HintIgnored)),
        (
            "/* pgcordon:replica */ MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
            primary(HintIgnored),
        ),
        (
            "/* pgcordon:replica */ CREATE TABLE t (a int)",
            primary(HintIgnored),
        ),
        ("/* pgcordon:replica */ DROP TABLE t", primary(HintIgnored)),
        (
            "/* pgcordon:replica */ WITH d AS (DELETE FROM t RETURNING 1) SELECT 1",
            primary(HintIgnored),
        ),
        (
            "/* pgcordon:replica */ SELECT 1; DELETE FROM t",
            primary(HintIgnored),
        ),
        (
            "/* pgcordon:replica */ SELECT * INTO t2 FROM t",
            primary(HintIgnored),
        ),
        (
            "/* pgcordon:replica */ SELECT * FROM t FOR UPDATE",
            primary(HintIgnored),
        ),
        ("/* pgcordon:replica */ SELEC 1", primary(Unparsable)),
        // Not the first token, or not exactly the hint: no hint.
        ("SELECT 1 /* pgcordon:primary */", REPLICA),
        (
            "SELECT nextval('s') /* pgcordon:replica */",
            primary(Function),
        ),
        (
            "-- pgcordon:replica\nSELECT nextval('s')",
            primary(Function),
        ),
        (
            "/* pgcordon:replica please */ SELECT nextval('s')",
            primary(Function),
        ),
        (
            "/* x */ /* pgcordon:replica */ SELECT nextval('s')",
            primary(Function),
        ),
        (
            "/* pgcordon:replica /* nested */ */ SELECT nextval('s')",
            primary(Function),
        ),
    ]);
}

#[test]
fn case_comments_and_quoting() {
    run_routes(&[
        ("InSeRt InTo t VaLuEs (1)", primary(Write)),
        ("/* x */ INSERT INTO t VALUES (1)", primary(Write)),
        ("-- x\nDELETE FROM t", primary(Write)),
        ("SELECT NEXTVAL('s')", primary(Function)),
        ("SELECT nextval /* x */ ('s')", primary(Function)),
        ("SELECT \"nextval\"('s')", primary(Function)),
        ("SELECT pg_catalog.\"nextval\"('s')", primary(Function)),
        ("SELECT pg_catalog . nextval('s')", primary(Function)),
        ("SELECT 1 fOr UpDaTe", primary(Locking)),
        ("SELECT 1 FOR/**/UPDATE", primary(Locking)),
        ("SELECT 1 INTO/**/t", primary(SelectInto)),
        // A keyword-looking call: FILTER and OVER are function names when not after `)`.
        ("SELECT filter(1)", primary(Function)),
        ("SELECT over (1)", primary(Function)),
        ("SELECT 1 AS x, left(name, 2) FROM t", REPLICA),
    ]);
}

#[test]
fn writes_after_a_harmless_first_statement() {
    run_routes(&[
        ("SELECT 1; DELETE FROM t", primary(Write)),
        ("SELECT 1;DROP TABLE t", primary(Ddl)),
        ("SELECT ';'; DELETE FROM t", primary(Write)),
        ("SELECT 1 -- \n; UPDATE t SET a = 1", primary(Write)),
        ("SHOW x; DELETE FROM t", primary(Write)),
        ("BEGIN READ ONLY; INSERT INTO t VALUES (1)", primary(Write)),
        ("BEGIN READ ONLY; SELECT nextval('s')", primary(Function)),
        ("SELECT 1; SELECT setval('s', 1)", primary(Function)),
        ("TABLE t; TRUNCATE t", primary(Ddl)),
        ("SELECT (1; DELETE FROM t; SELECT 1)", primary(Unparsable)),
    ]);
}

#[test]
fn dollar_quoting_and_strings() {
    run_routes(&[
        ("SELECT $$;$$; DELETE FROM t", primary(Write)),
        ("SELECT $a$ $$ $a$, nextval('s')", primary(Function)),
        ("SELECT $a$ x $a$ FROM t", REPLICA),
        ("SELECT $tag$ nextval('s') $tag$", REPLICA),
        ("SELECT 'it''s', nextval('s')", primary(Function)),
        ("SELECT 'nextval(''s'')'", REPLICA),
        // `x$a$` is an identifier, not the start of a dollar quote.
        ("SELECT 1 AS x$a$, nextval('s') AS y$a$", primary(Function)),
        ("SELECT $1, nextval('s')", primary(Function)),
    ]);
}

#[test]
fn escapes_and_unicode() {
    run_routes(&[
        // With standard_conforming_strings off the call is inside the string; with it on (the
        // default) it runs. Both readings must allow a replica, so this stays on the primary.
        (r"SELECT 'x\', nextval('s') -- '", primary(Function)),
        (r"SELECT E'\'', nextval('s')", primary(Function)),
        (r"SELECT E'\\', nextval('s') -- '", primary(Function)),
        (r"SELECT 'a\b' FROM t", REPLICA),
        (r"SELECT E'a\nb', lower('X')", REPLICA),
        (r#"SELECT U&"nextv\0061l"('s')"#, primary(Function)),
        (r#"SELECT U&'\0041'"#, REPLICA),
        (r#"SELECT U&"\0063ount"(*) FROM t"#, REPLICA),
    ]);
}

#[test]
fn glued_tokens_are_left_to_the_parser() {
    run_routes(&[
        ("SELECT 1from t", primary(Unparsable)),
        ("SELECT 1for update", primary(Unparsable)),
        ("SELECT 0x1F", REPLICA),
    ]);
}

#[test]
fn allowed_functions_cannot_hide_a_write() {
    run_routes_allowing(
        &["my_report"],
        &[
            ("SELECT my_report(1) FOR UPDATE", primary(Locking)),
            (
                "WITH d AS (DELETE FROM t RETURNING id) SELECT my_report(id) FROM d",
                primary(Write),
            ),
            (
                "SELECT my_report(1); INSERT INTO t VALUES (1)",
                primary(Write),
            ),
            ("SELECT my_report(1) INTO t2", primary(SelectInto)),
            ("BEGIN; SELECT my_report(1)", primary(Transaction)),
            ("CALL my_report(1)", primary(Statement)),
        ],
    );
}

#[test]
fn the_cheap_pass_does_not_check_grammar() {
    // Routed to a replica without a parse; the server rejects it there, writing nothing.
    let classifier = Classifier::new();
    assert_eq!(classifier.route("SELECT FROM WHERE", &[]), Route::Replica);
    assert_eq!(
        classifier.route_parsed("SELECT FROM WHERE", &[]),
        Route::Primary(Unparsable)
    );
    assert_eq!(classifier.parse_count(), 1);
}
