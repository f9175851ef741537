//! The statement guard (`pgcordon_sql::Guard::check`, called by the session on every Query
//! and Parse text) on arbitrary text, under every guard policy. The first input byte chooses
//! the policy (its low four bits are the allowed privileged kinds, in the order of
//! `PrivilegedStatement::ALL`; 0 is the default, refuse all); the rest is the statement text,
//! turned into a string the way the session does (lossy UTF-8; interior NULs kept, as a Query
//! body may hold them).
//!
//! Checks, besides "no panic" and "no hang":
//! - the linear prefilter never lets through a text that the full parse-based judgement
//!   refuses for a reason other than "does not parse", nor one that resets the identity
//!   (`RESET ALL`, `DISCARD ALL`): the prefilter's contract in crates/sql/src/lib.rs;
//! - a refusal for a privileged statement kind only happens when the policy refuses that kind.
#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgcordon_sql::{Guard, GuardPolicy, PrivilegedStatement, RefusalReason, Verdict};

/// One guard per policy (16), built on first use.
fn guards() -> &'static [(GuardPolicy, Guard)] {
    static GUARDS: OnceLock<Vec<(GuardPolicy, Guard)>> = OnceLock::new();
    GUARDS.get_or_init(|| {
        let names = [
            "app.current_user_id".to_owned(),
            "app.tenant_proof".to_owned(),
        ];
        (0u8..16)
            .map(|bits| {
                let policy = PrivilegedStatement::ALL
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .fold(GuardPolicy::refuse_all(), |p, (_, kind)| p.allow(kind));
                let guard = Guard::with_policy(&names, policy).expect("fixed names are valid");
                (policy, guard)
            })
            .collect()
    })
}

fn check_policy(policy: GuardPolicy, verdict: &Verdict) {
    if let Verdict::Refuse(refusal) = verdict {
        if let Some(kind) = refusal.reason.statement() {
            assert!(
                !policy.allows(kind),
                "refused {kind}, which the policy allows"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let (policy, guard) = &guards()[usize::from(selector & 0x0f)];
    let sql: Cow<'_, str> = String::from_utf8_lossy(text);

    let verdict = guard.check(&sql);
    check_policy(*policy, &verdict);
    if guard.needs_parse(&sql) {
        // `check` is `check_parsed` for these texts; nothing more to compare.
        return;
    }
    assert_eq!(verdict, Verdict::Allow);

    let parsed = guard.check_parsed(&sql);
    check_policy(*policy, &parsed);
    match parsed {
        Verdict::Allow => {}
        Verdict::Refuse(r) if r.reason == RefusalReason::UnparsableMention => {}
        other => panic!("prefilter skipped a text the parser judges {other:?}"),
    }
});
