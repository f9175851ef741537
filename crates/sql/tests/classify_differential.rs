//! Differential check of the cheap passes against the parser on many generated texts: random
//! sequences of SQL fragments (keywords, strings in every quoting, comments, dollar quotes,
//! escapes, half-open quotes, statement separators). For every text:
//! - the session effects with the cheap pass equal those with the parser forced, except for
//!   texts that do not parse, which the cheap pass may leave alone (the server rejects them,
//!   so they change nothing) while the forced parse pins;
//! - a replica chosen without the parser is one the parser also allows, or a text that does
//!   not parse at all (which the server rejects wherever it runs);
//! - a replica chosen by the parser is chosen with the cheap pass too.
//!
//! The generator is a fixed-seed linear congruential one, so a failure reproduces.

use pgcordon_sql::{Classifier, PinReason, PrimaryReason, Route, SessionEffects};

const FRAGMENTS: [&str; 92] = [
    "SELECT",
    "select",
    "1",
    "x",
    "t",
    "=",
    ",",
    ";",
    "(",
    ")",
    "'a'",
    "'a\\'",
    "E'\\''",
    "'it''s'",
    "$$ x $$",
    "$a$",
    "$1",
    "\"q\"",
    "\"for\"",
    "U&\"x\"",
    "--c\n",
    "/*c*/",
    "/*",
    "*/",
    "'",
    "\"",
    "$",
    "\\",
    "e",
    "FROM",
    "WHERE",
    "FOR UPDATE",
    "INTO",
    "WITH",
    "nextval('s')",
    "count(*)",
    "lower(x)",
    "my_fn(1)",
    "pg_catalog.lower(x)",
    "pg_advisory_lock(1)",
    "set_config('a.b', 'c', false)",
    "set_config('search_path', 'a', false)",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET x = 1",
    "DELETE FROM t",
    "LISTEN x",
    "SET work_mem = 1",
    "SET search_path = a",
    "SET LOCAL x = 1",
    "RESET ALL",
    "DISCARD ALL",
    "TEMP",
    "pg_temp.t",
    "CREATE TEMP TABLE t ()",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "PREPARE p AS SELECT 1",
    "DO $$ SET x $$",
    "BEGIN",
    "READ ONLY",
    "SHOW x",
    "TABLE t",
    "OVER ()",
    "/* pgcordon:replica */",
    "1for",
    "0x1F",
    "1.5e3",
    "$b$ $a$",
    "\"a\"\"b\"",
    "E'",
    "N'\\'",
    "B'01'",
    "X'ff'",
    "u&'x'",
    "a$b$",
    "$_$",
    "$1x",
    "\"nextval\"('s')",
    "pg_catalog . nextval('s')",
    "filter(1)",
    "over(1)",
    "LEFT(x, 1)",
    "exists(select 1)",
    "ANY($1)",
    "t.col",
    "x::int",
    "ARRAY[1]",
    "[",
    "]",
    "SET ROLE r",
    "SELECT * INTO TEMP x",
    "pg_try_advisory_lock(1)",
    "\"pg_temp\".t",
];

const SEPARATORS: [&str; 4] = [" ", "", "\n", " ; "];

/// A small deterministic generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound
    }
}

fn generate(rng: &mut Lcg) -> String {
    let mut text = String::new();
    // Start with a leading word often, so the SELECT and SET paths are exercised.
    if rng.below(2) == 0 {
        text.push_str(
            [
                "SELECT ",
                "SET ",
                "BEGIN ",
                "/* pgcordon:replica */ SELECT ",
            ][rng.below(4)],
        );
    }
    for _ in 0..1 + rng.below(7) {
        text.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        text.push_str(SEPARATORS[rng.below(SEPARATORS.len())]);
    }
    text
}

#[test]
fn cheap_passes_agree_with_the_parser() {
    let classifier = Classifier::new();
    let allow = vec!["my_fn".to_owned()];
    let mut rng = Lcg(0x5eed);
    let mut failures = Vec::new();
    let mut replicas = 0;
    for _ in 0..20_000 {
        let sql = generate(&mut rng);

        let quick = classifier.session_effects(&sql);
        let parsed = classifier.session_effects_parsed(&sql);
        let rejected = SessionEffects {
            pins: Some(PinReason::Other("unparsable")),
            ..SessionEffects::default()
        };
        let skipped_invalid = quick.is_empty() && parsed == rejected;
        if quick != parsed && !skipped_invalid {
            failures.push(format!("{sql:?}: effects {quick:?} vs parsed {parsed:?}"));
        }

        let routed = classifier.route(&sql, &allow);
        let parsed = classifier.route_parsed(&sql, &allow);
        let unparsable = Route::Primary(PrimaryReason::Unparsable);
        if routed == Route::Replica && parsed != Route::Replica && parsed != unparsable {
            failures.push(format!("{sql:?}: replica, but the parser says {parsed:?}"));
        }
        if parsed == Route::Replica && routed != Route::Replica {
            failures.push(format!(
                "{sql:?}: {routed:?}, but the parser allows a replica"
            ));
        }
        replicas += usize::from(routed == Route::Replica);
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The generator must reach the replica path often enough to mean something.
    assert!(
        replicas > 100,
        "only {replicas} texts were routed to a replica"
    );
}
