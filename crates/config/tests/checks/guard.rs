//! The `guard` section: the allow-list of privileged statement kinds.

use crate::{ok, plus, problems, refused, BASE};
use pgcordon_config::GuardAllow;

#[test]
fn absent_guard_refuses_every_kind() {
    let config = ok(BASE);
    assert!(config.guard.allow.is_empty());
    assert!(
        config.summary().contains(
            "guard: SET ROLE, SET SESSION AUTHORIZATION, ALTER ROLE and ALTER SYSTEM refused\n"
        ),
        "{}",
        config.summary()
    );
    assert!(ok(&plus("guard:\n")).guard.allow.is_empty());
    assert!(ok(&plus("guard:\n  allow: []\n")).guard.allow.is_empty());
}

#[test]
fn every_kind_name_is_read_in_file_order() {
    let config = ok(&plus(
        "guard:\n  allow: [alter_system, set_role, set_session_authorization, alter_role]\n",
    ));
    assert_eq!(
        config.guard.allow,
        [
            GuardAllow::AlterSystem,
            GuardAllow::SetRole,
            GuardAllow::SetSessionAuthorization,
            GuardAllow::AlterRole,
        ]
    );
    assert!(config
        .summary()
        .contains("guard: allows alter_system, set_role, set_session_authorization, alter_role\n"));
}

#[test]
fn an_unknown_kind_names_its_index_and_the_known_kinds() {
    let problem = refused(
        &plus("guard:\n  allow:\n    - set_role\n    - set_roles\n"),
        "guard.allow[1]",
        "one of set_role, set_session_authorization, alter_role, alter_system",
    );
    assert_eq!(problem.found, "\"set_roles\"");
    let position = problem.position.expect("the entry is located");
    assert_eq!(position.line, BASE.lines().count() as u64 + 4);

    // Names are exact: the SQL spelling and other cases are not accepted.
    refused(
        &plus("guard:\n  allow: [SET_ROLE]\n"),
        "guard.allow[0]",
        "one of set_role",
    );
    refused(
        &plus("guard:\n  allow: ['SET ROLE']\n"),
        "guard.allow[0]",
        "one of",
    );
}

#[test]
fn a_kind_listed_twice_is_refused() {
    let problem = refused(
        &plus("guard:\n  allow: [alter_role, set_role, alter_role]\n"),
        "guard.allow[2]",
        "each kind listed once",
    );
    assert_eq!(problem.found, "\"alter_role\" a second time");
}

#[test]
fn unknown_guard_keys_and_wrong_types_are_refused() {
    let found = problems(&plus("guard:\n  allow_all: true\n"));
    assert_eq!(found[0].key, "guard.allow_all", "{found:#?}");
    assert!(found[0].expected.contains("allow"), "{found:#?}");
    let found = problems(&plus("guard:\n  allow: set_role\n"));
    assert_eq!(found[0].key, "guard.allow", "{found:#?}");
}
