//! Micro benchmarks of the per-statement SQL work: the statement guard and the classifier's
//! two questions, each with its cheap pass in front of the parser.
//!
//! For every simple Query and Parse text the session calls `Guard::check` and then
//! `Classifier::session_effects`; at a transaction start with routing on it also calls
//! `Classifier::route`. Each statement below is timed through those entry points, and through
//! `pg_query::parse` of the same text as the baseline: a ratio well below 1 means the cheap pass
//! settled the text, a ratio near or above 1 means the parser ran. `route` answers parsed texts
//! from its cache after the first call (applications repeat their texts), so `route_uncached`
//! (`Classifier::route_parsed`) shows what a cache miss costs. See docs/benchmarks-micro.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgcordon_sql::{Classifier, Guard, Route, Verdict};

/// The identity setting of config/pgcordon.yaml.
const PROTECTED: &str = "app.current_user_id";

/// The statements, named for the path each is expected to take.
fn statements() -> Vec<(&'static str, String)> {
    let mut long = String::from("BEGIN;");
    for i in 0..12 {
        long.push_str(&format!(
            " INSERT INTO order_lines (order_id, sku, qty) VALUES (1001, 'SKU-{i:03}', {q}); \
             UPDATE stock SET reserved = reserved + {q} WHERE sku = 'SKU-{i:03}'; \
             SELECT on_hand - reserved FROM stock WHERE sku = 'SKU-{i:03}';",
            q = i + 1
        ));
    }
    long.push_str(" COMMIT;");

    vec![
        (
            "select_plain",
            "SELECT id, email, created_at FROM accounts WHERE tenant_id = $1 AND id = $2".into(),
        ),
        (
            "select_function",
            "SELECT o.id, o.total, billing.tax_for(o.total) FROM orders o \
             WHERE o.owner = current_setting('app.current_user_id')::uuid"
                .into(),
        ),
        (
            "write",
            "UPDATE accounts SET email = $1, updated_at = now() WHERE id = $2".into(),
        ),
        ("set_tracked", "SET search_path TO app, public".into()),
        (
            "set_config",
            "SELECT set_config('app.current_user_id', 'someone-else', false)".into(),
        ),
        ("multi_statement", long),
    ]
}

/// What the session does with one text: the guard, then (unless refused) the session effects
/// and the route.
fn proxy_path(guard: &Guard, classifier: &Classifier, sql: &str) -> Option<Route> {
    if let Verdict::Refuse(refusal) = guard.check(sql) {
        black_box(refusal);
        return None;
    }
    black_box(classifier.session_effects(sql));
    Some(classifier.route(sql, &[]))
}

/// One line per statement on which path it takes, so the figures can be read against it.
fn describe(guard: &Guard, name: &str, sql: &str) {
    let verdict = match guard.check(sql) {
        Verdict::Allow => "allow".to_owned(),
        Verdict::AllowResetsIdentity => "allow (resets identity)".to_owned(),
        Verdict::Refuse(refusal) => format!("refuse ({})", refusal.reason.as_str()),
    };
    let fresh = Classifier::new();
    let effects = fresh.session_effects(sql);
    let effects_parses = fresh.parse_count();
    let route = fresh.route(sql, &[]);
    let route_parses = fresh.parse_count() - effects_parses;
    eprintln!(
        "classify: {name}: {} bytes; guard prefilter needs parse: {}; guard: {verdict}; \
         session effects parses: {effects_parses}, sets: {:?}; \
         route: {route:?} after {route_parses} parse(s)",
        sql.len(),
        guard.needs_parse(sql),
        effects.sets,
    );
}

fn classify(c: &mut Criterion) {
    let guard = Guard::new(&[PROTECTED.to_owned()]).expect("guard");
    let classifier = Classifier::new();
    let statements = statements();

    // The fast path and the refusal are what these cases exist to time.
    assert!(!guard.needs_parse(&statements[0].1));
    assert!(matches!(guard.check(&statements[4].1), Verdict::Refuse(_)));
    for (name, sql) in &statements {
        assert!(pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).is_ok());
        describe(&guard, name, sql);
    }

    for (name, sql) in &statements {
        let mut group = c.benchmark_group(format!("classify/{name}"));
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_function("pg_query_parse", |b| {
            b.iter(|| pg_query::parse(black_box(sql), pg_query::ParserOptions::DEFAULT))
        });
        group.bench_function("guard_check", |b| b.iter(|| guard.check(black_box(sql))));
        group.bench_function("session_effects", |b| {
            b.iter(|| classifier.session_effects(black_box(sql)))
        });
        group.bench_function("route", |b| {
            b.iter(|| classifier.route(black_box(sql), &[]))
        });
        group.bench_function("route_uncached", |b| {
            b.iter(|| classifier.route_parsed(black_box(sql), &[]))
        });
        group.bench_function("proxy_path", |b| {
            b.iter(|| proxy_path(&guard, &classifier, black_box(sql)))
        });
        group.finish();
    }
}

criterion_group!(benches, classify);
criterion_main!(benches);
