//! Shared table runner for the guard's tests: every case is checked through `check` (with
//! the prefilter) and through `check_parsed` (always parsed), and the two must agree, so each
//! table also proves the prefilter lets nothing through that the parser would stop.

// Each test file is its own crate and uses only part of these helpers.
#![allow(dead_code)]

use pgcordon_sql::{Guard, GuardPolicy, RefusalReason, Verdict};

/// The outcome a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Resets,
    Refuse(RefusalReason),
}

/// The names protected in these tests: the identity and a tenant, as a deployment might.
pub const PROTECTED: [&str; 2] = ["app.current_user_id", "app.tenant_id"];

pub fn guard() -> Guard {
    let names: Vec<String> = PROTECTED.iter().map(|s| s.to_string()).collect();
    Guard::new(&names).expect("the test names are valid")
}

/// A guard for the same names whose policy lets every privileged statement kind through.
pub fn guard_with(policy: GuardPolicy) -> Guard {
    let names: Vec<String> = PROTECTED.iter().map(|s| s.to_string()).collect();
    Guard::with_policy(&names, policy).expect("the test names are valid")
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Allow => "Allow".to_owned(),
        Verdict::AllowResetsIdentity => "Resets".to_owned(),
        Verdict::Refuse(refusal) => format!("Refuse({:?})", refusal.reason),
    }
}

/// Whether `verdict` is what `expect` asks for; a refusal must also carry a message that
/// names a protected setting, or for a policy refusal the statement kind and its SQL.
fn meets(verdict: &Verdict, expect: Expect) -> bool {
    match (verdict, expect) {
        (Verdict::Allow, Expect::Allow) => true,
        (Verdict::AllowResetsIdentity, Expect::Resets) => true,
        (Verdict::Refuse(refusal), Expect::Refuse(reason)) => {
            let names_it = match reason.statement() {
                Some(kind) => {
                    refusal.message.contains(&format!("\"{kind}\""))
                        && refusal.message.contains(kind.sql())
                }
                None => PROTECTED
                    .iter()
                    .any(|name| refusal.message.contains(&format!("\"{name}\""))),
            };
            refusal.reason == reason && refusal.message.starts_with("pgcordon: ") && names_it
        }
        _ => false,
    }
}

/// Runs every case and reports all mismatches at once.
pub fn run_table(cases: &[(&str, Expect)]) {
    run_table_with(&guard(), cases)
}

/// [`run_table`] with a given guard.
pub fn run_table_with(guard: &Guard, cases: &[(&str, Expect)]) {
    let mut failures = Vec::new();
    for &(sql, expect) in cases {
        let quick = guard.check(sql);
        if !meets(&quick, expect) {
            failures.push(format!(
                "{sql:?}: expected {expect:?}, got {}",
                describe(&quick)
            ));
        }
        let full = guard.check_parsed(sql);
        if full != quick {
            failures.push(format!(
                "{sql:?}: prefilter changed the outcome: check {} vs check_parsed {}",
                describe(&quick),
                describe(&full)
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

/// Asserts that `sql` is refused for any reason.
pub fn assert_refused(guard: &Guard, sql: &str) {
    let verdict = guard.check(sql);
    assert!(
        matches!(verdict, Verdict::Refuse(_)),
        "{sql:?} was not refused: {verdict:?}"
    );
}
