//! Shared table runners for the classifier's tests. Every case is checked through the public
//! entry point (cheap pass, cache) and through the always-parsing variant, so each table also
//! shows that the cheap pass never changes an answer that matters: session effects must be
//! identical, and a replica must be chosen by both or by neither.

// Each test file is its own crate and uses only part of these helpers.
#![allow(dead_code)]

use pgcordon_sql::{Classifier, PinReason, PrimaryReason, Route, SessionEffects};

/// No session effect at all.
pub fn nothing() -> SessionEffects {
    SessionEffects::default()
}

/// Only a pin.
pub fn pin(reason: PinReason) -> SessionEffects {
    SessionEffects {
        pins: Some(reason),
        ..SessionEffects::default()
    }
}

/// A pin for a session-level SET of the named (untracked) setting.
pub fn pin_set(name: &str) -> SessionEffects {
    pin(PinReason::SessionSet(name.to_owned()))
}

/// Only tracked settings, in order; `None` stands for a reset to the default.
/// A client_encoding given a value is also listed among the encodings.
pub fn sets(list: &[(&str, Option<&str>)]) -> SessionEffects {
    SessionEffects {
        sets: list
            .iter()
            .map(|(name, value)| (name.to_string(), value.map(str::to_owned)))
            .collect(),
        encodings: list
            .iter()
            .filter(|(name, value)| *name == "client_encoding" && value.is_some())
            .map(|(_, value)| value.map(str::to_owned))
            .collect(),
        ..SessionEffects::default()
    }
}

/// Only encodings (changes that last for the transaction).
pub fn encodings(list: &[Option<&str>]) -> SessionEffects {
    SessionEffects {
        encodings: list.iter().map(|v| v.map(str::to_owned)).collect(),
        ..SessionEffects::default()
    }
}

/// A single tracked setting to a value.
pub fn set(name: &str, value: &str) -> SessionEffects {
    sets(&[(name, Some(value))])
}

/// RESET ALL / DISCARD ALL, followed by `after`.
pub fn resets_all(after: &[(&str, Option<&str>)]) -> SessionEffects {
    SessionEffects {
        resets_all: true,
        ..sets(after)
    }
}

/// Checks every case and reports all mismatches at once.
pub fn run_effects(cases: &[(&str, SessionEffects)]) {
    let classifier = Classifier::new();
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let quick = classifier.session_effects(sql);
        if quick != *expected {
            failures.push(format!(
                "{sql:?}:\n  expected {expected:?}\n  got      {quick:?}"
            ));
        }
        let parsed = classifier.session_effects_parsed(sql);
        if parsed != quick {
            failures.push(format!(
                "{sql:?}: the cheap pass changed the outcome:\n  \
                 session_effects        {quick:?}\n  session_effects_parsed {parsed:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

pub const REPLICA: Route = Route::Replica;

pub const fn primary(reason: PrimaryReason) -> Route {
    Route::Primary(reason)
}

/// Checks every case with the given allowed functions. Each text is routed twice (the second
/// answer may come from the cache) and once with the parser forced.
pub fn run_routes_allowing(allow: &[&str], cases: &[(&str, Route)]) {
    let allow: Vec<String> = allow.iter().map(|name| name.to_string()).collect();
    let classifier = Classifier::new();
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let first = classifier.route(sql, &allow);
        if first != *expected {
            failures.push(format!("{sql:?}: expected {expected:?}, got {first:?}"));
        }
        let again = classifier.route(sql, &allow);
        if again != first {
            failures.push(format!(
                "{sql:?}: {first:?} first, {again:?} the second time"
            ));
        }
        let parsed = classifier.route_parsed(sql, &allow);
        if (parsed == Route::Replica) != (first == Route::Replica) {
            failures.push(format!(
                "{sql:?}: the cheap pass changed the outcome: \
                 route {first:?}, route_parsed {parsed:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

pub fn run_routes(cases: &[(&str, Route)]) {
    run_routes_allowing(&[], cases);
}

/// `effects` with a pin added.
pub fn and_pin(mut effects: SessionEffects, reason: PinReason) -> SessionEffects {
    effects.pins = Some(reason);
    effects
}
