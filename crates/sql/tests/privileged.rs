//! The statement policy: SET ROLE, SET SESSION AUTHORIZATION, ALTER ROLE and ALTER SYSTEM are
//! refused by default in every spelling and position the grammar accepts, and the allow-list
//! lets exactly the listed kinds through. Every case runs with and without the prefilter
//! (see `common`), so the tables also show that comments, quoting, case, `U&` escapes and a
//! harmless first statement do not keep a text away from the parser.

mod common;

use common::{guard, guard_with, run_table, run_table_with, Expect, Expect::Allow, Expect::Refuse};
use pgcordon_sql::RefusalReason::{
    AlterRole, AlterSystem, SetProtected, SetRole, SetSessionAuthorization,
};
use pgcordon_sql::{GuardPolicy, PrivilegedStatement, RefusalReason, Verdict};

const ROLE: Expect = Refuse(SetRole);
const AUTH: Expect = Refuse(SetSessionAuthorization);
const ALTER_ROLE: Expect = Refuse(AlterRole);
const SYSTEM: Expect = Refuse(AlterSystem);

#[test]
fn set_role_in_every_form() {
    run_table(&[
        ("SET ROLE bob", ROLE),
        ("set role bob", ROLE),
        ("SET ROLE 'bob'", ROLE),
        ("SET ROLE NONE", ROLE),
        ("SET SESSION ROLE bob", ROLE),
        ("SET LOCAL ROLE bob", ROLE),
        ("RESET ROLE", ROLE),
        ("SET role = bob", ROLE),
        ("SET role TO DEFAULT", ROLE),
        (r#"SET "role" = 'bob'"#, ROLE),
        (r#"SET "ROLE" = 'bob'"#, ROLE),
        (r#"SET U&"\0072ole" = 'bob'"#, ROLE),
        (r#"SET U&"!0072!006fle" UESCAPE '!' = 'bob'"#, ROLE),
        ("SeT rOlE bob", ROLE),
        ("SET/**/ROLE/**/bob", ROLE),
        ("SET /* a /* nested */ comment */ ROLE bob", ROLE),
        ("SET -- comment\nROLE bob", ROLE),
        ("\tSET\n\tROLE\n\tbob\n", ROLE),
    ]);
}

#[test]
fn set_session_authorization_in_every_form() {
    run_table(&[
        ("SET SESSION AUTHORIZATION alice", AUTH),
        ("SET SESSION AUTHORIZATION 'alice'", AUTH),
        ("SET SESSION AUTHORIZATION DEFAULT", AUTH),
        ("SET LOCAL SESSION AUTHORIZATION alice", AUTH),
        ("RESET SESSION AUTHORIZATION", AUTH),
        ("set session authorization alice", AUTH),
        ("SET session_authorization = 'alice'", AUTH),
        ("SET SESSION_AUTHORIZATION TO 'alice'", AUTH),
        ("RESET session_authorization", AUTH),
        ("SET /**/ SESSION /**/ AUTHORIZATION /**/ alice", AUTH),
        (r#"SET "session_authorization" = 'alice'"#, AUTH),
        (r#"SET U&"session\005fauthorization" = 'alice'"#, AUTH),
    ]);
}

#[test]
fn set_config_of_role_or_session_authorization() {
    run_table(&[
        ("SELECT set_config('role', 'bob', false)", ROLE),
        ("SELECT set_config('ROLE', 'bob', true)", ROLE),
        ("SELECT pg_catalog.set_config('role', 'bob', false)", ROLE),
        ("SELECT set_config(E'r\\157le', 'bob', false)", ROLE),
        (r"SELECT set_config(U&'\0072ole', 'bob', false)", ROLE),
        (
            "SELECT * FROM t WHERE set_config('role', 'bob', false) IS NOT NULL",
            ROLE,
        ),
        (
            "SELECT set_config('session_authorization', 'alice', false)",
            AUTH,
        ),
        ("SELECT current_setting('role')", Allow),
        ("SHOW role", Allow),
    ]);
}

#[test]
fn alter_role_in_every_form() {
    run_table(&[
        ("ALTER ROLE app SUPERUSER", ALTER_ROLE),
        ("ALTER ROLE app WITH BYPASSRLS", ALTER_ROLE),
        ("ALTER ROLE app PASSWORD 'x'", ALTER_ROLE),
        ("ALTER ROLE app PASSWORD NULL", ALTER_ROLE),
        ("ALTER ROLE app VALID UNTIL 'infinity'", ALTER_ROLE),
        ("ALTER ROLE app RENAME TO other", ALTER_ROLE),
        ("ALTER ROLE app SET search_path = public", ALTER_ROLE),
        ("ALTER ROLE app RESET ALL", ALTER_ROLE),
        (
            "ALTER ROLE app IN DATABASE app SET work_mem = '1MB'",
            ALTER_ROLE,
        ),
        ("ALTER ROLE ALL SET work_mem = '1MB'", ALTER_ROLE),
        ("ALTER ROLE CURRENT_USER SET role = 'admin'", ALTER_ROLE),
        ("ALTER USER app PASSWORD 'x'", ALTER_ROLE),
        ("ALTER USER app RENAME TO other", ALTER_ROLE),
        ("ALTER USER app SET work_mem = '1MB'", ALTER_ROLE),
        ("ALTER GROUP admins ADD USER app", ALTER_ROLE),
        ("ALTER GROUP admins DROP USER app", ALTER_ROLE),
        ("alter /* x */ role app nologin", ALTER_ROLE),
        (r#"ALTER ROLE "app" CREATEROLE"#, ALTER_ROLE),
    ]);
}

#[test]
fn alter_system_in_every_form() {
    run_table(&[
        ("ALTER SYSTEM SET work_mem = '1MB'", SYSTEM),
        ("ALTER SYSTEM RESET work_mem", SYSTEM),
        ("ALTER SYSTEM RESET ALL", SYSTEM),
        ("alter system set log_statement to 'none'", SYSTEM),
        (
            "ALTER/**/SYSTEM/**/SET shared_preload_libraries = ''",
            SYSTEM,
        ),
    ]);
}

#[test]
fn multi_statement_texts_cannot_hide_a_second_statement() {
    run_table(&[
        ("SELECT 1; SET ROLE bob", ROLE),
        ("SELECT current_setting('role'); SET ROLE bob", ROLE),
        ("BEGIN; SET LOCAL ROLE bob; SELECT * FROM t; COMMIT", ROLE),
        ("SELECT 'SET ROLE x'; RESET SESSION AUTHORIZATION", AUTH),
        ("SELECT 1; ALTER USER app PASSWORD 'x'", ALTER_ROLE),
        ("SELECT 1;\nALTER SYSTEM SET work_mem = '1MB'", SYSTEM),
        // The first refused kind in text order is named.
        ("SET ROLE bob; ALTER SYSTEM RESET ALL", ROLE),
    ]);
}

#[test]
fn nested_set_clauses_of_functions_and_databases() {
    // A function's SET clause makes every call run as that role; a database default makes
    // every new session (the pool's too) start as it.
    run_table(&[
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role TO bob AS 'SELECT 1'",
            ROLE,
        ),
        (
            "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql SET role = 'bob' AS 'SELECT 1'",
            ROLE,
        ),
        ("ALTER FUNCTION f() SET role = bob", ROLE),
        (
            "ALTER PROCEDURE p() SET session_authorization = alice",
            AUTH,
        ),
        ("ALTER DATABASE app SET role = bob", ROLE),
        ("ALTER FUNCTION f() RESET role", ROLE),
    ]);
}

#[test]
fn bodies_that_could_run_a_refused_kind() {
    run_table(&[
        ("DO $$ BEGIN SET ROLE bob; END $$", Refuse(SetRole)),
        ("DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$", Refuse(SetRole)),
        (
            "DO $$ BEGIN EXECUTE 'ALTER SYSTEM SET work_mem = ''1MB'''; END $$",
            Refuse(AlterSystem),
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SET SESSION AUTHORIZATION x $$",
            Refuse(SetSessionAuthorization),
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN ALTER USER app PASSWORD 'x'; END $$",
            Refuse(AlterRole),
        ),
        ("DO $$ BEGIN PERFORM 1; END $$", Allow),
    ]);
}

#[test]
fn a_body_refusal_says_it_could_not_check_the_body() {
    let Verdict::Refuse(refusal) = guard().check("DO $$ BEGIN SET ROLE bob; END $$") else {
        panic!("DO with SET ROLE was not refused");
    };
    assert!(
        refusal.message.contains("DO blocks and function bodies"),
        "{}",
        refusal.message
    );
    let Verdict::Refuse(refusal) = guard().check("SET ROLE bob") else {
        panic!("SET ROLE was not refused");
    };
    assert_eq!(
        refusal.message,
        "pgcordon: SET ROLE is not allowed through the proxy (statement kind \"set_role\", \
         see guard.allow)"
    );
}

#[test]
fn a_protected_setting_wins_over_the_policy() {
    // Both rules apply; the identity refusal is the one reported, and it stays when the
    // policy allows the statement kind.
    let cases = [
        ("ALTER ROLE app SET app.current_user_id = '1'", SetProtected),
        ("SET ROLE bob; SET app.current_user_id = '1'", SetProtected),
        ("ALTER SYSTEM SET app.current_user_id = '1'", SetProtected),
        (
            "SELECT set_config('role', 'bob', false), set_config('app.tenant_id', '1', false)",
            RefusalReason::SetConfigProtected,
        ),
    ];
    let allowing = guard_with(GuardPolicy::allow_all());
    for (sql, reason) in cases {
        for guard in [&guard(), &allowing] {
            match guard.check(sql) {
                Verdict::Refuse(refusal) => assert_eq!(refusal.reason, reason, "{sql:?}"),
                other => panic!("{sql:?} was not refused: {other:?}"),
            }
        }
    }
}

#[test]
fn the_allow_list_lets_exactly_the_listed_kinds_through() {
    let samples: [(PrivilegedStatement, &[&str]); 4] = [
        (
            PrivilegedStatement::SetRole,
            &[
                "SET ROLE bob",
                "RESET ROLE",
                "SELECT set_config('role', 'bob', false)",
            ],
        ),
        (
            PrivilegedStatement::SetSessionAuthorization,
            &[
                "SET SESSION AUTHORIZATION alice",
                "RESET SESSION AUTHORIZATION",
            ],
        ),
        (
            PrivilegedStatement::AlterRole,
            &["ALTER ROLE app PASSWORD 'x'", "ALTER USER a RENAME TO b"],
        ),
        (
            PrivilegedStatement::AlterSystem,
            &["ALTER SYSTEM SET work_mem = '1MB'"],
        ),
    ];
    for (allowed, _) in &samples {
        let guard = guard_with(GuardPolicy::refuse_all().allow(*allowed));
        for (kind, texts) in &samples {
            let expect = if kind == allowed {
                Allow
            } else {
                Refuse((*kind).into())
            };
            let cases: Vec<(&str, Expect)> = texts.iter().map(|t| (*t, expect)).collect();
            run_table_with(&guard, &cases);
        }
    }
}

#[test]
fn allowed_kinds_are_plain_allow_and_skip_the_parser() {
    // Role changes keep custom settings (checked on PostgreSQL 15), so they never count as
    // resetting the identity; with everything allowed they cost no parse either.
    let guard = guard_with(GuardPolicy::allow_all());
    for sql in [
        "SET ROLE bob",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION alice",
        "ALTER ROLE app PASSWORD 'x'",
        "ALTER SYSTEM SET work_mem = '1MB'",
    ] {
        assert_eq!(guard.check(sql), Verdict::Allow, "{sql:?}");
        assert!(
            !guard.needs_parse(sql),
            "{sql:?} was parsed although allowed"
        );
    }
}

#[test]
fn ordinary_statements_that_share_words_stay_allowed() {
    run_table(&[
        ("SELECT role FROM members WHERE user_id = 1", Allow),
        ("UPDATE members SET role = 'admin' WHERE id = 1", Allow),
        ("UPDATE users SET name = 'x'", Allow),
        ("ALTER TABLE users ADD COLUMN role text", Allow),
        ("ALTER TABLE system_log RENAME TO old_log", Allow),
        ("SELECT 'ALTER SYSTEM SET x = 1'", Allow),
        ("-- SET ROLE bob\nSELECT 1", Allow),
        ("SELECT current_user, session_user", Allow),
        ("CREATE ROLE other", Allow),
    ]);
}

#[test]
fn kind_names_round_trip() {
    for kind in PrivilegedStatement::ALL {
        assert_eq!(PrivilegedStatement::from_name(kind.as_str()), Some(kind));
        assert_eq!(RefusalReason::from(kind).as_str(), kind.as_str());
        assert_eq!(RefusalReason::from(kind).statement(), Some(kind));
    }
    assert_eq!(PrivilegedStatement::from_name("SET_ROLE"), None);
    assert_eq!(PrivilegedStatement::from_name("set role"), None);
}
