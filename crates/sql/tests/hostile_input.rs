//! Texts built to confuse the guard: invalid SQL that mentions a protected setting, nesting
//! deep enough to exhaust a parser, and mechanical rewrites of refused statements (case,
//! whitespace, comments, surrounding statements) that must all stay refused.

mod common;

use common::{assert_refused, guard, run_table, Expect::Refuse};
use pgcordon_sql::{RefusalReason::UnparsableMention, Verdict};

#[test]
fn unparsable_mentions_fail_closed() {
    let unparsable = Refuse(UnparsableMention);
    run_table(&[
        ("SET app.current_user_id = ", unparsable),
        (
            "SELECT set_config('app.current_user_id', '1', false",
            unparsable,
        ),
        ("SET app.current_user_id = 'x'; SELEC", unparsable),
        (
            "SELECT set_config('app.other', 'x', false) FROM",
            unparsable,
        ),
        ("SET app.current_user_id = 'unterminated", unparsable),
        ("RESET ALL garbage", unparsable),
        (
            "DO $$ BEGIN PERFORM set_config('a.b', '1', false); END",
            unparsable,
        ),
        (
            "SELECT set_config('app.current_user_id', '1', false)\0",
            unparsable,
        ),
    ]);
}

#[test]
fn unparsable_text_without_a_mention_is_left_to_the_server() {
    // The prefilter alone allows these; the server reports the syntax error. Forcing a parse
    // shows the difference: `check_parsed` refuses whatever does not parse.
    let guard = guard();
    for sql in ["SELEC 1", "INSERT INTO", "SELECT 'unterminated"] {
        assert!(!guard.needs_parse(sql), "{sql}");
        assert_eq!(guard.check(sql), Verdict::Allow, "{sql}");
        let forced = guard.check_parsed(sql);
        assert!(
            matches!(forced, Verdict::Refuse(ref r) if r.reason == UnparsableMention),
            "{sql}"
        );
    }
    assert_eq!(guard.parse_count(), 3);
}

#[test]
fn nesting_too_deep_to_analyse_is_refused_when_it_could_mention() {
    let guard = guard();
    let concatenations = format!(
        "SELECT set_config('app.other', 'a'{}, false)",
        " || 'b'".repeat(200)
    );
    let parentheses = format!(
        "SELECT set_config({}'app.other'{}, '1', false)",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let subqueries = format!(
        "SELECT set_config('app.other', {}'1'{}, false)",
        "(SELECT ".repeat(2_000),
        ")".repeat(2_000)
    );
    let arrays = format!(
        "SELECT set_config({}1{})",
        "ARRAY[".repeat(5_000),
        "]".repeat(5_000)
    );

    // A small stack, like a busy runtime thread, must not overflow: the parser checks its own
    // depth and the tree decoder limits nesting.
    let outcome = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            [concatenations, parentheses, subqueries, arrays]
                .iter()
                .map(|sql| (sql.len(), guard.check(sql)))
                .collect::<Vec<_>>()
        })
        .expect("spawn a checking thread")
        .join()
        .expect("checking thread did not crash");

    for (len, verdict) in outcome {
        let Verdict::Refuse(refusal) = verdict else {
            panic!("a {len}-byte nested text was not refused: {verdict:?}");
        };
        assert_eq!(refusal.reason, UnparsableMention, "{len}-byte text");
    }
}

/// Refused statements without backslashes (so that changing case keeps escapes valid).
const REFUSED: &[&str] = &[
    "SET app.current_user_id = '42'",
    "SET LOCAL app.tenant_id TO DEFAULT",
    "RESET app.current_user_id",
    r#"SET "app"."current_user_id" = 'x'"#,
    "SELECT set_config('app.current_user_id', '42', false)",
    "SELECT pg_catalog.set_config('app.tenant_id', '42', true) FROM t WHERE a = 1",
    "SELECT set_config($1, $2, false)",
    "WITH x AS (SELECT set_config('app.current_user_id', '1', false)) SELECT * FROM x",
    "ALTER ROLE app_user SET app.current_user_id = '1'",
    "CREATE AGGREGATE agg(text, boolean) (SFUNC = set_config, STYPE = text)",
    "DO $$ BEGIN PERFORM set_config('app.current_user_id', '1', false); END $$",
    "DO $$ BEGIN EXECUTE 'SET app.current_user_id = 1'; END $$",
];

/// Rewrites that PostgreSQL reads as the same statement (or, where a rewrite lands inside a
/// string constant, as one that is still refused).
fn rewrites(sql: &str) -> Vec<String> {
    vec![
        sql.to_ascii_uppercase(),
        sql.to_ascii_lowercase(),
        sql.replace(' ', "\n"),
        sql.replace(' ', "\r\n\t "),
        sql.replace(' ', " /* c */ "),
        sql.replace(' ', " /* a /* nested */ b */ "),
        sql.replace(' ', " -- line comment\n"),
        format!("SELECT 1; {sql}"),
        format!("{sql}; SELECT 2"),
        format!("SELECT 'a;b';{sql};SELECT $$;$$"),
        format!("/* leading */ {sql} -- trailing"),
        format!("{sql};"),
    ]
}

#[test]
fn rewritten_refusals_stay_refused() {
    let guard = guard();
    for sql in REFUSED {
        assert_refused(&guard, sql);
        for rewritten in rewrites(sql) {
            assert_refused(&guard, &rewritten);
        }
    }
}

#[test]
fn long_benign_statements_with_many_clauses_are_allowed() {
    let guard = guard();
    let columns: Vec<String> = (0..2_000).map(|i| format!("c{i}")).collect();
    let wide = format!("SELECT {} FROM t WHERE tenant_id = $1", columns.join(", "));
    assert_eq!(guard.check(&wide), Verdict::Allow);

    // Long and parsed: it updates a column named like the setting's last part.
    let assignments: Vec<String> = (0..2_000).map(|i| format!("c{i} = {i}")).collect();
    let update = format!("UPDATE t SET {}, tenant_id = 1", assignments.join(", "));
    assert!(guard.needs_parse(&update));
    assert_eq!(guard.check(&update), Verdict::Allow);
}
