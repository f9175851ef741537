//! The classifier (`pgcordon_sql::Classifier`): session effects (called by the session on
//! every Query and Parse text) and route (called by the router for a transaction's first
//! statement) on arbitrary text, turned into a string the way the proxy does (lossy UTF-8;
//! interior NULs kept, as a Query body may hold them).
//!
//! Checks, besides "no panic" and "no hang": the cheap pass and the parsed path agree on
//! session effects for every text that parses; a text the cheap pass sends to a replica is
//! also sent there by the parsed path; and asking again (from the route cache) gives the
//! same route.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgcordon_sql::{Classifier, PinReason, PrimaryReason, Route};

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(Classifier::new)
}

/// Functions declared read-only, as `routing.allow_functions` would list them.
fn allowed() -> &'static [String] {
    static ALLOWED: OnceLock<[String; 2]> = OnceLock::new();
    ALLOWED.get_or_init(|| ["my_read_fn".to_owned(), "reporting.summary".to_owned()])
}

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let classifier = classifier();
    let allowed = allowed();

    // A text the parser rejects is rejected by the server as a whole too (a simple Query is
    // parsed before any of it runs, and a NUL ends the text there), so "unparsable" on the
    // parsed path is no disagreement.
    let effects = classifier.session_effects(&sql);
    let parsed = classifier.session_effects_parsed(&sql);
    if parsed.pins != Some(PinReason::Other("unparsable")) {
        assert_eq!(effects, parsed);
    }

    let route = classifier.route(&sql, allowed);
    if route == Route::Replica {
        // As above: a text that does not parse is refused by the server wherever it goes.
        let parsed = classifier.route_parsed(&sql, allowed);
        if parsed != Route::Primary(PrimaryReason::Unparsable) {
            assert_eq!(parsed, Route::Replica);
        }
    }
    assert_eq!(classifier.route(&sql, allowed), route);
});
