//! Texts written to slip session state past the cheap pass: odd case, comments between and
//! before tokens, quoted names, statements hidden after others, dollar quoting, Unicode and
//! backslash escapes. Each must still be classified exactly; each table also runs the
//! always-parsing path and requires the same answer.

mod classify_support;

use classify_support::{nothing, pin, pin_set, run_effects, set, sets};
use pgcordon_sql::PinReason::{AdvisoryLock, HoldCursor, Listen, Other, SqlPrepare, TempTable};
use pgcordon_sql::{Classifier, SessionEffects};

#[test]
fn case_and_whitespace() {
    run_effects(&[
        ("lIsTeN jobs", pin(Listen)),
        ("\n\t  Listen\njobs", pin(Listen)),
        ("SeT StAtEmEnT_TiMeOuT = 0", pin_set("statement_timeout")),
        ("sEt SeArCh_PaTh = a", set("search_path", "a")),
        ("create TeMp table t (a int)", pin(TempTable)),
        ("SELECT PG_ADVISORY_LOCK(1)", pin(AdvisoryLock)),
        ("declare c cursor WiTh HoLd for select 1", pin(HoldCursor)),
        ("PrEpArE p AS SELECT 1", pin(SqlPrepare)),
    ]);
}

#[test]
fn comments_around_and_inside() {
    run_effects(&[
        ("/* leading */ LISTEN jobs", pin(Listen)),
        ("-- line\nLISTEN jobs", pin(Listen)),
        (
            "/* a /* nested */ comment */ SET work_mem = '1GB'",
            pin_set("work_mem"),
        ),
        ("SET/**/work_mem/**/=/**/'1GB'", pin_set("work_mem")),
        ("SELECT pg_advisory_lock /* x */ (1)", pin(AdvisoryLock)),
        (
            "SELECT pg_catalog . /* x */ pg_advisory_lock(1)",
            pin(AdvisoryLock),
        ),
        ("CREATE /* x */ TEMP /* y */ TABLE t ()", pin(TempTable)),
        // Keywords inside comments are not statements.
        ("SELECT 1 /* ; LISTEN jobs */", nothing()),
        ("SELECT 1 -- ; SET work_mem = 1", nothing()),
        ("SELECT 1 /* pg_advisory_lock(1) */", nothing()),
    ]);
}

#[test]
fn quoted_names() {
    run_effects(&[
        (r#"SELECT "pg_advisory_lock"(1)"#, pin(AdvisoryLock)),
        (
            r#"SELECT "pg_catalog"."pg_try_advisory_lock"(1)"#,
            pin(AdvisoryLock),
        ),
        (
            r#"SELECT "set_config"('work_mem', '1GB', false)"#,
            pin_set("work_mem"),
        ),
        (r#"SET "work_mem" = '1GB'"#, pin_set("work_mem")),
        (r#"SET "search_path" = x"#, set("search_path", "x")),
        (r#"SET "TimeZone" = 'UTC'"#, set("TimeZone", "UTC")),
        (r#"CREATE TABLE "pg_temp".t (a int)"#, pin(TempTable)),
        // Names inside string constants are data.
        ("SELECT 'pg_advisory_lock(1)'", nothing()),
        (
            "INSERT INTO log VALUES ('LISTEN jobs; SET work_mem = 1')",
            nothing(),
        ),
        ("SELECT 'pg_temp.t'", nothing()),
        ("SELECT \"listen\" FROM t", nothing()),
    ]);
}

#[test]
fn hidden_after_other_statements() {
    run_effects(&[
        ("SELECT 1; LISTEN jobs", pin(Listen)),
        ("SELECT 1;LISTEN jobs", pin(Listen)),
        ("SELECT ';'; LISTEN jobs", pin(Listen)),
        ("SELECT $$;$$; SET work_mem = 1", pin_set("work_mem")),
        (
            "INSERT INTO t VALUES (1); (SELECT pg_advisory_lock(1))",
            pin(AdvisoryLock),
        ),
        ("BEGIN; SET LOCAL work_mem = 1; COMMIT", nothing()),
        (
            "BEGIN; SET search_path = a; COMMIT",
            set("search_path", "a"),
        ),
        ("UPDATE t SET a = 1; SET work_mem = 1", pin_set("work_mem")),
        (
            "SELECT 1;;; DISCARD ALL",
            SessionEffects {
                resets_all: true,
                ..nothing()
            },
        ),
        // The SET of an UPDATE is not a SET statement.
        ("UPDATE t SET search_path = 1", nothing()),
        ("UPDATE t\nSET listen = 1", nothing()),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 2",
            nothing(),
        ),
    ]);
}

#[test]
fn dollar_quoting() {
    run_effects(&[
        ("SELECT $$ LISTEN jobs $$", nothing()),
        ("SELECT $tag$ $$ ; SET work_mem = 1 $tag$", nothing()),
        ("SELECT $a$ x $a$; LISTEN jobs", pin(Listen)),
        ("SELECT $a$ $b$ $a$, pg_advisory_lock(1)", pin(AdvisoryLock)),
        // `x$a$` is one identifier, so no dollar quote starts there.
        ("SELECT 1 AS x$a$; LISTEN jobs", pin(Listen)),
        ("SELECT $1; LISTEN jobs", pin(Listen)),
        (
            "DO $body$ BEGIN PERFORM set_config('work_mem', '1', false); END $body$",
            pin(Other("do_block")),
        ),
    ]);
}

#[test]
fn escapes_and_unicode() {
    run_effects(&[
        // With standard_conforming_strings off, the string runs to the last quote and nothing
        // is called; with it on (the default), the lock is taken and the rest is a comment.
        // Both readings parse and disagree, so the client is pinned.
        (
            r"SELECT 'x\', pg_advisory_lock(1) -- '",
            pin(Other("ambiguous_escapes")),
        ),
        // Here the other reading does not parse (a backslash outside a string), so the
        // server can only have run the default one.
        (r"SELECT 'a\', pg_advisory_lock(1), '\'", pin(AdvisoryLock)),
        (r"SELECT E'\'; LISTEN jobs; --'", nothing()),
        (r"SELECT E'\\'; LISTEN jobs", pin(Listen)),
        (
            r#"SELECT U&"pg\005fadvisory\005flock"(1)"#,
            pin(AdvisoryLock),
        ),
        (r#"SET U&"work\005fmem" = '1GB'"#, pin_set("work_mem")),
        (r#"SET U&"search\005fpath" = x"#, set("search_path", "x")),
        (
            r"SELECT set_config(E'search\137path', 'x', false)",
            set("search_path", "x"),
        ),
        (r"SELECT 'C:\temp'", nothing()),
    ]);
}

#[test]
fn unparsable_texts_that_could_change_state_pin() {
    run_effects(&[
        ("LISTEN", pin(Other("unparsable"))),
        ("SET work_mem =", pin(Other("unparsable"))),
        ("SELECT pg_advisory_lock(1", pin(Other("unparsable"))),
        ("SELECT 1for update; LISTEN x", pin(Other("unparsable"))),
        // The cheap pass is unsure of a hex number, the parser finds nothing.
        ("SELECT 0x1F", nothing()),
    ]);
}

#[test]
fn the_deepest_texts_fail_closed() {
    let classifier = Classifier::new();
    // Past the depth the tree decoder accepts (a chain of about 50 `||` already counts).
    let deep = format!("SET search_path = a; SELECT 'a'{}", " || 'b'".repeat(200));
    assert_eq!(classifier.session_effects(&deep), pin(Other("unparsable")));
    let shallow = format!("SET search_path = a; SELECT 'a'{}", " || 'b'".repeat(10));
    assert_eq!(
        classifier.session_effects(&shallow),
        sets(&[("search_path", Some("a"))])
    );
}
