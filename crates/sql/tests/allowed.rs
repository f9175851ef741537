//! What passes: reading the setting, other settings, ordinary statements and literals that
//! merely contain a protected name; and the statements that reset it to neutral.

mod common;

use common::{guard_with, run_table, run_table_with, Expect::Allow, Expect::Resets};
use pgcordon_sql::GuardPolicy;

#[test]
fn reading_the_setting_is_allowed() {
    run_table(&[
        ("SELECT current_setting('app.current_user_id')", Allow),
        ("SELECT current_setting('app.current_user_id', true)", Allow),
        ("SHOW app.current_user_id", Allow),
        ("SHOW ALL", Allow),
        (
            "SELECT * FROM docs WHERE owner = \
             NULLIF(current_setting('app.current_user_id', true), '')::uuid",
            Allow,
        ),
        (
            "SELECT name, setting FROM pg_settings WHERE name = 'app.current_user_id'",
            Allow,
        ),
    ]);
}

#[test]
fn other_settings_are_allowed() {
    run_table(&[
        ("SET search_path = public", Allow),
        ("SET app.other = 'x'", Allow),
        ("SET LOCAL app.other TO 1", Allow),
        ("RESET search_path", Allow),
        ("SET app.current_id = 'x'", Allow),
        ("SET app.current_user_id_2 = 'x'", Allow),
        ("SET other.current_user_id = 'x'", Allow),
        ("SET app.tenant = 'x'", Allow),
        ("SET TIME ZONE 'UTC'", Allow),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Allow),
        ("SELECT set_config('app.other', 'x', false)", Allow),
        ("SELECT set_config('search_path', 'public', false)", Allow),
        (
            "SELECT pg_catalog.set_config('app.other'::pg_catalog.text, 'x', true)",
            Allow,
        ),
        (
            "SELECT set_config('app.current_user_id_2', 'x', false)",
            Allow,
        ),
        ("ALTER DATABASE d RESET ALL", Allow),
        ("ALTER FUNCTION f() RESET ALL", Allow),
    ]);
}

#[test]
fn names_in_literals_and_comments_are_allowed() {
    run_table(&[
        ("INSERT INTO t VALUES ('app.current_user_id')", Allow),
        ("UPDATE t SET note = 'SET app.current_user_id = 1'", Allow),
        (
            "SELECT 'set_config(''app.current_user_id'', ''1'', false)'",
            Allow,
        ),
        (
            "SELECT * FROM t -- set_config('app.current_user_id', '1', false)",
            Allow,
        ),
        ("SELECT 1 /* SET app.current_user_id = 1 */", Allow),
        ("SELECT $$ SET app.current_user_id = 1 $$", Allow),
        ("SELECT E'SET app.current_user_id = 1'", Allow),
        (r"SELECT 'set\_config'", Allow),
        (
            "COMMENT ON TABLE t IS 'see set_config(''app.current_user_id'')'",
            Allow,
        ),
        ("SELECT 'set_config'::regproc", Allow),
    ]);
}

#[test]
fn ordinary_statements_are_allowed() {
    run_table(&[
        ("SELECT 1", Allow),
        ("SELECT current_user_id FROM users", Allow),
        ("SELECT * FROM t WHERE tenant_id = 1", Allow),
        ("UPDATE t SET tenant_id = 2 WHERE id = 1", Allow),
        ("UPDATE assets SET offset_x = 1 WHERE tenant_id = 3", Allow),
        (
            "INSERT INTO t (tenant_id) VALUES (1) ON CONFLICT DO NOTHING",
            Allow,
        ),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", Allow),
        ("DISCARD PLANS", Allow),
        ("DISCARD TEMP", Allow),
        ("DISCARD SEQUENCES", Allow),
        ("SELECT * FROM password_resets WHERE user_id = $1", Allow),
        ("SELECT 'a\\b', 'do not'", Allow),
    ]);
}

#[test]
fn session_authorization_keeps_custom_settings() {
    // Checked on PostgreSQL 15: after SET app.current_user_id, neither SET/RESET SESSION
    // AUTHORIZATION nor SET/RESET ROLE changes it, so when the policy allows them they do not
    // reset the identity either.
    run_table_with(
        &guard_with(GuardPolicy::allow_all()),
        &[
            ("SET SESSION AUTHORIZATION alice", Allow),
            ("SET ROLE bob", Allow),
            ("ALTER ROLE r SET search_path = public", Allow),
            ("ALTER ROLE r RESET ALL", Allow),
            ("SET SESSION AUTHORIZATION alice", Allow),
            ("SET SESSION AUTHORIZATION DEFAULT", Allow),
            ("RESET SESSION AUTHORIZATION", Allow),
            ("RESET ROLE", Allow),
        ],
    );
}

#[test]
fn reset_all_and_discard_all_reset_the_identity() {
    run_table(&[
        ("RESET ALL", Resets),
        ("reset all", Resets),
        ("DISCARD ALL", Resets),
        ("discard\n  ALL", Resets),
        ("RESET /* x */ ALL", Resets),
        ("SELECT 1; RESET ALL", Resets),
        (
            "RESET ALL; SELECT current_setting('app.current_user_id', true)",
            Resets,
        ),
        ("BEGIN; RESET ALL; COMMIT", Resets),
        ("SET search_path = public; DISCARD ALL", Resets),
    ]);
}
