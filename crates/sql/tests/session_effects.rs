//! Session effects: which statements set tracked parameters (and to what value text), which
//! reset them all, and which pin the client to its backend, with the exact reason.

mod classify_support;

use classify_support::{
    and_pin, encodings, nothing, pin, pin_set, resets_all, run_effects, set, sets,
};
use pgcordon_sql::PinReason::{
    self, AdvisoryLock, HoldCursor, Listen, Other, SessionSet, SqlPrepare, TempTable,
};
use pgcordon_sql::TRACKED_PARAMETERS;

#[test]
fn tracked_parameters_are_values_not_pins() {
    run_effects(&[
        (
            "SET search_path = app, public",
            set("search_path", "app, public"),
        ),
        (
            r#"SET search_path = a, "B C""#,
            set("search_path", r#"a, "B C""#),
        ),
        (
            "SET search_path TO \"$user\", public",
            set("search_path", r#""$user", public"#),
        ),
        (
            "SET search_path = 'My Schema'",
            set("search_path", r#""My Schema""#),
        ),
        ("SET SCHEMA 'tenant_7'", set("search_path", "tenant_7")),
        (
            "SET TimeZone = 'Europe/Rome'",
            set("TimeZone", "Europe/Rome"),
        ),
        ("SET TIME ZONE 'UTC'", set("TimeZone", "UTC")),
        ("SET TIME ZONE -7", set("TimeZone", "-7")),
        ("SET NAMES 'UTF8'", set("client_encoding", "UTF8")),
        (
            "SET client_encoding TO 'LATIN1'",
            set("client_encoding", "LATIN1"),
        ),
        ("SET DateStyle = ISO, MDY", set("DateStyle", "iso, mdy")),
        ("SET datestyle TO 'German'", set("DateStyle", "German")),
        (
            "SET IntervalStyle = postgres_verbose",
            set("IntervalStyle", "postgres_verbose"),
        ),
        (
            "SET application_name = 'billing worker'",
            set("application_name", "billing worker"),
        ),
        (
            "SET application_name = MyApp",
            set("application_name", "myapp"),
        ),
        ("SET extra_float_digits = 3", set("extra_float_digits", "3")),
        (
            "SET extra_float_digits = -1",
            set("extra_float_digits", "-1"),
        ),
        (
            "SET standard_conforming_strings = on",
            set("standard_conforming_strings", "on"),
        ),
        (
            "SET default_transaction_read_only = true",
            set("default_transaction_read_only", "true"),
        ),
        ("SET SESSION search_path = x", set("search_path", "x")),
        ("SET search_path TO DEFAULT", sets(&[("search_path", None)])),
        ("SET TIME ZONE LOCAL", sets(&[("TimeZone", None)])),
        ("SET NAMES", sets(&[("client_encoding", None)])),
        ("RESET timezone", sets(&[("TimeZone", None)])),
        ("RESET TIME ZONE", sets(&[("TimeZone", None)])),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            set("default_transaction_read_only", "on"),
        ),
    ]);
}

#[test]
fn set_config_of_tracked_parameters() {
    run_effects(&[
        (
            "SELECT set_config('search_path', 'a, \"B\"', false)",
            set("search_path", "a, \"B\""),
        ),
        (
            "SELECT pg_catalog.set_config('TIMEZONE', 'UTC', false)",
            set("TimeZone", "UTC"),
        ),
        (
            "select set_config('application_name', 'x', 'off')",
            set("application_name", "x"),
        ),
        (
            "SELECT set_config('search_path', NULL, false)",
            sets(&[("search_path", None)]),
        ),
        (
            "SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO', false)",
            sets(&[("TimeZone", Some("UTC")), ("DateStyle", Some("ISO"))]),
        ),
        // Transaction-level: nothing outlives the transaction.
        ("SELECT set_config('search_path', 'x', true)", nothing()),
        ("SELECT set_config('search_path', 'x', 'on')", nothing()),
        // A value the proxy cannot know, or a call that may run any number of times: pin.
        (
            "SELECT set_config('search_path', $1, false)",
            pin_set("search_path"),
        ),
        (
            "SELECT set_config('TimeZone', 'UTC', $1)",
            pin_set("timezone"),
        ),
        (
            "SELECT set_config('TimeZone', 'UTC', false) FROM t",
            pin_set("timezone"),
        ),
        (
            "SELECT 1 WHERE set_config('TimeZone', 'UTC', false) <> ''",
            pin_set("timezone"),
        ),
    ]);
}

#[test]
fn other_settings_pin() {
    run_effects(&[
        ("SET statement_timeout = '5s'", pin_set("statement_timeout")),
        ("SET SESSION work_mem TO '64MB'", pin_set("work_mem")),
        ("SET app.feature_flag = 'on'", pin_set("app.feature_flag")),
        (r#"SET "App"."Flag" = 1"#, pin_set("app.flag")),
        ("SET XML OPTION DOCUMENT", pin_set("xmloption")),
        (
            "SELECT set_config('statement_timeout', '0', false)",
            pin_set("statement_timeout"),
        ),
        (
            "SELECT set_config($1, 'x', false)",
            pin(Other("set_config_dynamic")),
        ),
        ("SET SESSION AUTHORIZATION alice", pin(Other("role"))),
        ("SET ROLE reporting", pin(Other("role"))),
        ("SET ROLE NONE", pin(Other("role"))),
        (
            "SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE",
            pin_set("timezone"),
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            pin_set("default_transaction_isolation"),
        ),
        // pg_temp first in the path makes a plain CREATE TABLE temporary.
        (
            "SET search_path = pg_temp, public",
            and_pin(
                set("search_path", "pg_temp, public"),
                SessionSet("search_path".into()),
            ),
        ),
    ]);
}

#[test]
fn transaction_scoped_and_default_forms_do_not_pin() {
    run_effects(&[
        ("SET LOCAL statement_timeout = '5s'", nothing()),
        ("SET LOCAL search_path = x", nothing()),
        ("SET LOCAL ROLE reporting", nothing()),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", nothing()),
        ("SET TRANSACTION READ ONLY", nothing()),
        ("SET statement_timeout TO DEFAULT", nothing()),
        ("RESET statement_timeout", nothing()),
        ("RESET ROLE", nothing()),
        ("RESET SESSION AUTHORIZATION", nothing()),
        ("SET SESSION AUTHORIZATION DEFAULT", nothing()),
        ("UNLISTEN *", nothing()),
        ("UNLISTEN jobs", nothing()),
        ("SELECT pg_advisory_xact_lock(42)", nothing()),
        ("SELECT pg_try_advisory_xact_lock_shared(1, 2)", nothing()),
        ("SELECT pg_advisory_unlock(42)", nothing()),
        ("DECLARE c CURSOR FOR SELECT 1", nothing()),
        ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", nothing()),
        (
            "CREATE TEMP TABLE scratch (id int) ON COMMIT DROP",
            nothing(),
        ),
        ("CREATE TABLE t (id int)", nothing()),
        ("DISCARD PLANS", nothing()),
        ("DISCARD TEMP", nothing()),
        ("PREPARE TRANSACTION 'gid'", nothing()),
        ("EXECUTE stmt(1)", nothing()),
        ("DEALLOCATE ALL", nothing()),
    ]);
}

#[test]
fn session_state_pins_with_its_reason() {
    run_effects(&[
        ("LISTEN jobs", pin(Listen)),
        ("listen \"Jobs\"", pin(Listen)),
        ("CREATE TEMP TABLE scratch (id int)", pin(TempTable)),
        (
            "CREATE TEMPORARY TABLE scratch (id int) ON COMMIT DELETE ROWS",
            pin(TempTable),
        ),
        ("CREATE LOCAL TEMP TABLE s AS SELECT 1", pin(TempTable)),
        ("CREATE TEMP VIEW v AS SELECT 1", pin(TempTable)),
        ("CREATE TEMP SEQUENCE s", pin(TempTable)),
        ("CREATE TABLE pg_temp.scratch (id int)", pin(TempTable)),
        ("CREATE TABLE PG_TEMP.scratch (id int)", pin(TempTable)),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            pin(TempTable),
        ),
        ("SELECT * INTO TEMP t FROM src", pin(TempTable)),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", pin(HoldCursor)),
        (
            "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t",
            pin(HoldCursor),
        ),
        ("SELECT pg_advisory_lock(42)", pin(AdvisoryLock)),
        ("SELECT pg_advisory_lock_shared(1, 2)", pin(AdvisoryLock)),
        ("SELECT pg_try_advisory_lock(42)", pin(AdvisoryLock)),
        (
            "SELECT pg_catalog.pg_try_advisory_lock_shared(42)",
            pin(AdvisoryLock),
        ),
        (
            "SELECT id FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1",
            pin(AdvisoryLock),
        ),
        ("PREPARE q(int) AS SELECT $1", pin(SqlPrepare)),
        ("LOAD 'auto_explain'", pin(Other("load"))),
        (
            "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
            pin(Other("do_block")),
        ),
        (
            "DO $$ BEGIN EXECUTE 'LIS' || 'TEN x'; END $$",
            pin(Other("do_block")),
        ),
    ]);
}

#[test]
fn statements_without_session_state() {
    run_effects(&[
        ("SELECT 1", nothing()),
        ("INSERT INTO t VALUES (1)", nothing()),
        ("UPDATE t SET a = 1", nothing()),
        ("DELETE FROM t", nothing()),
        ("BEGIN", nothing()),
        ("COMMIT", nothing()),
        ("NOTIFY jobs", nothing()),
        ("SELECT current_setting('search_path')", nothing()),
        ("DO $$ BEGIN RAISE NOTICE 'hi'; END $$", nothing()),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT pg_advisory_lock(1)'",
            nothing(),
        ),
        ("CREATE VIEW v AS SELECT pg_advisory_lock(1)", nothing()),
        (
            "CREATE FUNCTION f() RETURNS int SET search_path = x LANGUAGE sql AS 'SELECT 1'",
            nothing(),
        ),
        ("ALTER ROLE app SET statement_timeout = '1s'", nothing()),
        ("ALTER DATABASE db SET search_path = x", nothing()),
        ("", nothing()),
    ]);
}

#[test]
fn resets_and_order_across_statements() {
    run_effects(&[
        ("RESET ALL", resets_all(&[])),
        ("DISCARD ALL", resets_all(&[])),
        ("SET search_path = a; RESET ALL", resets_all(&[])),
        (
            "RESET ALL; SET TimeZone = 'UTC'",
            resets_all(&[("TimeZone", Some("UTC"))]),
        ),
        (
            "SET search_path = a; SET TimeZone = 'UTC'; RESET search_path",
            sets(&[
                ("search_path", Some("a")),
                ("TimeZone", Some("UTC")),
                ("search_path", None),
            ]),
        ),
        (
            "SET search_path = a; LISTEN x; SET statement_timeout = 1",
            and_pin(sets(&[("search_path", Some("a"))]), Listen),
        ),
        (
            "SET statement_timeout = 1; LISTEN x",
            pin_set("statement_timeout"),
        ),
    ]);
}

#[test]
fn settings_undone_by_a_rollback_in_the_same_text() {
    run_effects(&[
        ("BEGIN; SET search_path = a; ROLLBACK", nothing()),
        (
            "BEGIN; SET search_path = a; COMMIT",
            set("search_path", "a"),
        ),
        ("BEGIN; SET search_path = a", set("search_path", "a")),
        (
            "SET search_path = b; START TRANSACTION; SET search_path = a; ABORT",
            set("search_path", "b"),
        ),
        ("BEGIN; RESET ALL; ROLLBACK", nothing()),
        (
            "BEGIN; SET search_path = a; ROLLBACK; SET TimeZone = 'UTC'",
            set("TimeZone", "UTC"),
        ),
        // A pin is kept: pinning a client that did not need it is never wrong.
        ("BEGIN; LISTEN x; ROLLBACK", pin(Listen)),
    ]);
}

#[test]
fn tracked_list_and_labels() {
    assert_eq!(TRACKED_PARAMETERS.len(), 9);
    assert!(TRACKED_PARAMETERS.contains(&"TimeZone"));
    let labels = [
        (Listen, "listen"),
        (SessionSet("work_mem".into()), "session_set"),
        (TempTable, "temp_table"),
        (HoldCursor, "hold_cursor"),
        (AdvisoryLock, "advisory_lock"),
        (SqlPrepare, "sql_prepare"),
        (Other("role"), "role"),
    ];
    for (reason, label) in labels {
        let reason: PinReason = reason;
        assert_eq!(reason.as_str(), label);
        assert_eq!(reason.to_string(), label);
    }
}

/// An encoding change that lasts only for the transaction still decides how the server reads
/// the statements after it, so every value given to client_encoding is reported.
#[test]
fn every_client_encoding_change_is_reported_even_for_one_transaction() {
    run_effects(&[
        (
            "SET LOCAL client_encoding = 'SJIS'",
            encodings(&[Some("SJIS")]),
        ),
        ("SET LOCAL NAMES 'BIG5'", encodings(&[Some("BIG5")])),
        ("SET LOCAL client_encoding TO DEFAULT", nothing()),
        (
            "SELECT set_config('client_encoding', 'SJIS', true)",
            encodings(&[Some("SJIS")]),
        ),
        (
            "SELECT set_config('CLIENT_ENCODING', 'gbk', true), 1",
            encodings(&[Some("gbk")]),
        ),
        (
            "SELECT set_config('client_encoding', current_setting('x.y'), true)",
            encodings(&[None]),
        ),
        (
            "SELECT 1; SET LOCAL client_encoding = 'LATIN1'; SELECT 2",
            encodings(&[Some("LATIN1")]),
        ),
        (
            "SELECT set_config('client_encoding', NULL, true)",
            nothing(),
        ),
    ]);
}
