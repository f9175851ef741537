//! DO blocks and function bodies: code the SQL parser does not see. A body that could mention
//! a protected setting or set_config is refused; other bodies pass.

mod common;

use common::{run_table, Expect, Expect::Allow, Expect::Refuse};
use pgcordon_sql::RefusalReason::CodeBodyMention;

const BODY: Expect = Refuse(CodeBodyMention);

#[test]
fn do_blocks_that_mention_a_protected_setting() {
    run_table(&[
        (
            "DO $$ BEGIN PERFORM set_config('app.current_user_id', '1', false); END $$",
            BODY,
        ),
        (
            "DO $$BEGIN EXECUTE 'SET app.current_user_id = 1'; END$$",
            BODY,
        ),
        (
            "DO $body$ BEGIN PERFORM set_config('app.' || 'current_user_id', '1', false); \
             END $body$",
            BODY,
        ),
        (
            "DO LANGUAGE plpgsql $$ BEGIN SET app.tenant_id = '1'; END $$",
            BODY,
        ),
        (
            "DO $$ BEGIN RESET app.current_user_id; END $$ LANGUAGE plpgsql",
            BODY,
        ),
        (
            "DO 'BEGIN PERFORM set_config(''app.current_user_id'', ''1'', false); END'",
            BODY,
        ),
        (
            "do $X$ begin perform SET_CONFIG('APP.X', '1', false); end $X$",
            BODY,
        ),
        (
            "SELECT 1; DO $$ BEGIN PERFORM set_config('app.x', '1', false); END $$",
            BODY,
        ),
        (
            r#"DO $$ BEGIN EXECUTE 'SET "app"."current_user_id" = 1'; END $$"#,
            BODY,
        ),
    ]);
}

#[test]
fn do_blocks_that_hide_the_mention_in_escapes() {
    run_table(&[
        // E'' escapes: \137 is '_', so the body the server runs calls set_config.
        (
            r"DO E'BEGIN PERFORM set\137config(''app.x'', ''1'', false); END'",
            BODY,
        ),
        (r"DO E'BEGIN SET app.current\x5fuser_id = 1; END'", BODY),
        // The same as a plain string in a session with standard_conforming_strings off
        // (checked on PostgreSQL 15).
        (
            r"DO 'BEGIN PERFORM set\137config(''app.x'', ''1'', false); END'",
            BODY,
        ),
        (
            r"DO U&'BEGIN PERFORM set\005fconfig(''app.x'', ''1'', false); END'",
            BODY,
        ),
    ]);
}

#[test]
fn function_bodies_that_mention_a_protected_setting() {
    run_table(&[
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM set_config('app.current_user_id', '1', false); END $$",
            BODY,
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE sql AS $$ SET app.current_user_id = '1' $$",
            BODY,
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS \
             'SELECT set_config(''app.x'', ''1'', false)'",
            BODY,
        ),
        (
            "CREATE FUNCTION f() RETURNS text LANGUAGE internal AS 'set_config_by_name'",
            BODY,
        ),
        (
            r"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS E'BEGIN PERFORM set\137config(''a.b'', ''1'', false); END'",
            BODY,
        ),
    ]);
}

#[test]
fn bodies_that_do_not_mention_it_pass() {
    run_table(&[
        ("DO $$ BEGIN RAISE NOTICE 'hello'; END $$", Allow),
        ("DO 'BEGIN NULL; END'", Allow),
        // Reading the identity is what row-level-security helper functions do.
        (
            "CREATE FUNCTION me() RETURNS text LANGUAGE sql STABLE AS \
             $$ SELECT current_setting('app.current_user_id', true) $$",
            Allow,
        ),
        (
            "DO $$ BEGIN RAISE NOTICE '%', current_setting('app.tenant_id', true); END $$",
            Allow,
        ),
        (r"DO E'BEGIN RAISE NOTICE ''a\tb''; END'", Allow),
        (
            "DO $$ BEGIN UPDATE t SET note = 'x' WHERE id = 1; END $$",
            Allow,
        ),
        (
            "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b'",
            Allow,
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS \
             $$ BEGIN SET LOCAL search_path = public; RETURN 1; END $$",
            Allow,
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = public \
             AS 'SELECT 1'",
            Allow,
        ),
    ]);
}
