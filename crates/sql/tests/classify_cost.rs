//! The cheap paths: ordinary statements are classified without the parser, whatever their
//! size, and a parsed routing answer is cached.

use pgcordon_sql::{Classifier, PinReason, PrimaryReason, Route, SessionEffects};

/// Statements an application sends all day.
const ORDINARY: [&str; 10] = [
    "SELECT id, name FROM users WHERE id = $1",
    "SELECT count(*) FROM orders WHERE customer_id = $1 AND created_at > now() - $2::interval",
    "SELECT o.id, sum(i.price * i.qty) FROM orders o JOIN items i ON i.order_id = o.id GROUP BY o.id LIMIT 10 OFFSET 20",
    "INSERT INTO orders (tenant_id, total) VALUES ($1, $2) RETURNING id",
    "UPDATE orders SET total = $1, updated_at = now() WHERE id = $2",
    "UPDATE orders\nSET status = 'done'\nWHERE id = $1",
    "DELETE FROM sessions WHERE expires_at < now()",
    "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "SELECT current_setting('app.current_user_id', true)::uuid",
    "SELECT * FROM docs WHERE body ->> 'title' = $1 ORDER BY id DESC",
];

#[test]
fn ordinary_statements_skip_the_parser() {
    let classifier = Classifier::new();
    for sql in ORDINARY {
        assert_eq!(
            classifier.session_effects(sql),
            SessionEffects::default(),
            "{sql}"
        );
        let route = classifier.route(sql, &[]);
        let writes = ["INSERT", "UPDATE", "DELETE"]
            .iter()
            .any(|w| sql.starts_with(w));
        let expected = if writes {
            Route::Primary(PrimaryReason::Write)
        } else {
            Route::Replica
        };
        assert_eq!(route, expected, "{sql}");
    }
    assert_eq!(classifier.parse_count(), 0);
    assert_eq!(classifier.cached_routes(), 0);

    assert_eq!(
        classifier.route("BEGIN", &[]),
        Route::Primary(PrimaryReason::Transaction)
    );
    assert_eq!(classifier.route("SHOW TimeZone", &[]), Route::Replica);
    assert_eq!(classifier.parse_count(), 0);
}

/// About 1 MB of a multi-row INSERT with strings, JSON and backslashes.
fn large_insert(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO events (id, kind, payload) VALUES ");
    for id in 0..rows {
        if id > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            r#"({id}, 'page_view', '{{"path": "/items/{id}", "note": "a\nb"}}')"#
        ));
    }
    sql
}

#[test]
fn a_large_insert_is_classified_without_a_parse() {
    let classifier = Classifier::new();
    let sql = large_insert(17_000);
    assert!(sql.len() > 1_000_000, "{} bytes", sql.len());
    assert_eq!(classifier.session_effects(&sql), SessionEffects::default());
    assert_eq!(
        classifier.route(&sql, &[]),
        Route::Primary(PrimaryReason::Write)
    );
    assert_eq!(classifier.parse_count(), 0);
}

#[test]
fn session_state_at_the_end_of_a_large_text_is_found() {
    let classifier = Classifier::new();
    let sql = format!("{}; LISTEN jobs", large_insert(2_000));
    let effects = classifier.session_effects(&sql);
    assert_eq!(effects.pins, Some(PinReason::Listen));
    // The text holds backslashes, so both readings were parsed.
    assert_eq!(classifier.parse_count(), 2);
}

#[test]
fn parsed_routes_are_cached() {
    let classifier = Classifier::new();
    let sql = "WITH r AS (SELECT * FROM t) SELECT nextval('s') FROM r";
    assert_eq!(
        classifier.route(sql, &[]),
        Route::Primary(PrimaryReason::Function)
    );
    assert_eq!(classifier.parse_count(), 1);
    assert_eq!(classifier.cached_routes(), 1);

    // The cache keeps the analysis, not the answer: another allow-list applies at once.
    assert_eq!(
        classifier.route(sql, &["nextval".to_owned()]),
        Route::Replica
    );
    assert_eq!(
        classifier.route(sql, &[]),
        Route::Primary(PrimaryReason::Function)
    );
    assert_eq!(classifier.parse_count(), 1);

    // A hint is part of the text, so a hinted text is its own entry.
    let hinted = format!("/* pgcordon:replica */ {sql}");
    assert_eq!(classifier.route(&hinted, &[]), Route::Replica);
    assert_eq!(classifier.parse_count(), 2);
    assert_eq!(classifier.cached_routes(), 2);
}

#[test]
fn the_cache_stays_bounded() {
    let classifier = Classifier::new();
    for n in 0..1_500 {
        let sql = format!("WITH r AS (SELECT {n}) SELECT * FROM r");
        assert_eq!(classifier.route(&sql, &[]), Route::Replica);
    }
    assert_eq!(classifier.cached_routes(), 1024);
}
