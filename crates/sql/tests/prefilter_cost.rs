//! The cheap path: texts that cannot mention a protected setting are allowed without a parse,
//! whatever their size, and a mention anywhere in a large text still sends it to the parser.

mod common;

use common::{assert_refused, guard};
use pgcordon_sql::Verdict;

/// About 1 MB of a multi-row INSERT whose rows say nothing about settings.
fn large_insert(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO events (id, tenant_id, kind, payload) VALUES ");
    for id in 0..rows {
        if id > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({id}, {tenant}, 'page_view', '{{\"path\": \"/items/{id}\", \"ms\": {ms}}}')",
            tenant = id % 17,
            ms = id * 7 % 1000
        ));
    }
    sql
}

#[test]
fn a_one_megabyte_benign_insert_is_allowed_without_parsing() {
    let guard = guard();
    let sql = large_insert(17_000);
    assert!(
        sql.len() > 1_000_000,
        "the statement is {} bytes",
        sql.len()
    );

    assert!(!guard.needs_parse(&sql));
    assert_eq!(guard.check(&sql), Verdict::Allow);
    assert_eq!(guard.parse_count(), 0);
}

#[test]
fn a_protected_name_in_a_literal_alone_does_not_cost_a_parse() {
    let guard = guard();
    let sql = format!(
        "{} , (0, 0, 'app.current_user_id', '{{}}')",
        large_insert(2_000)
    );
    assert_eq!(guard.check(&sql), Verdict::Allow);
    assert_eq!(guard.parse_count(), 0);
}

#[test]
fn a_mention_at_the_end_of_a_large_text_is_found_and_parsed() {
    let guard = guard();
    let sql = format!("{}; SET app.current_user_id = 'x'", large_insert(17_000));
    assert!(guard.needs_parse(&sql));
    assert_refused(&guard, &sql);
    assert_eq!(guard.parse_count(), 1);
}

#[test]
fn the_parse_counter_counts_each_reading() {
    let guard = guard();
    assert!(guard.needs_parse("RESET ALL"));
    assert_eq!(guard.check("RESET ALL"), Verdict::AllowResetsIdentity);
    assert_eq!(guard.parse_count(), 1);

    // A backslash asks for a second reading with standard_conforming_strings off.
    let escaped = r"SELECT set_config('app\056current_user_id', '1', false)";
    assert_refused(&guard, escaped);
    assert_eq!(guard.parse_count(), 3);

    assert_eq!(guard.check("SELECT 1"), Verdict::Allow);
    assert_eq!(guard.parse_count(), 3);
}

#[test]
fn common_statements_skip_the_parser() {
    let guard = guard();
    let common = [
        "SELECT id, name FROM users WHERE id = $1",
        "INSERT INTO orders (tenant_id, total) VALUES ($1, $2) RETURNING id",
        "UPDATE orders SET total = $1 WHERE id = $2",
        "DELETE FROM sessions WHERE expires_at < now()",
        "BEGIN",
        "COMMIT",
        "SELECT current_setting('app.current_user_id', true)::uuid",
        "SET search_path = public",
        "SELECT 1 FROM t WHERE tenant_id = $1 FOR UPDATE",
    ];
    for sql in common {
        assert!(!guard.needs_parse(sql), "{sql}");
        assert_eq!(guard.check(sql), Verdict::Allow, "{sql}");
    }
    assert_eq!(guard.parse_count(), 0);

    // Reading the identity costs no parse; a SET next to the setting's name does.
    let read = "INSERT INTO docs (owner, body) VALUES (current_setting('app.current_user_id'), $1)";
    assert!(!guard.needs_parse(read));
    let write = "UPDATE docs SET current_user_id = current_setting('app.current_user_id')";
    assert!(guard.needs_parse(write));
    assert_eq!(guard.check(write), Verdict::Allow);
}
