//! set_config calls: with a protected constant name anywhere in any statement, and with a
//! name the guard cannot prove constant.

mod common;

use common::{run_table, Expect, Expect::Refuse};
use pgcordon_sql::RefusalReason::{SetConfigDynamicName, SetConfigProtected};

const PROTECTED: Expect = Refuse(SetConfigProtected);
const DYNAMIC: Expect = Refuse(SetConfigDynamicName);

#[test]
fn protected_name_in_any_position() {
    run_table(&[
        (
            "SELECT set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            "select SET_CONFIG('APP.CURRENT_USER_ID', '42', false)",
            PROTECTED,
        ),
        (
            "SELECT pg_catalog.set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            r#"SELECT "pg_catalog"."set_config"('app.tenant_id', '42', false)"#,
            PROTECTED,
        ),
        (
            "SELECT * FROM t WHERE set_config('app.current_user_id', '1', false) > ''",
            PROTECTED,
        ),
        (
            "SELECT (SELECT set_config('app.current_user_id', '42', false))",
            PROTECTED,
        ),
        (
            "WITH x AS (SELECT set_config('app.current_user_id', '42', false)) SELECT * FROM x",
            PROTECTED,
        ),
        (
            "SELECT * FROM set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            "SELECT * FROM ROWS FROM (set_config('app.current_user_id', '1', false))",
            PROTECTED,
        ),
        (
            "VALUES (set_config('app.current_user_id', '42', false))",
            PROTECTED,
        ),
        (
            "SELECT coalesce(lower(set_config('app.current_user_id', '4', false)), 'x')",
            PROTECTED,
        ),
        (
            "INSERT INTO t VALUES (set_config('app.current_user_id', '42', true))",
            PROTECTED,
        ),
        (
            "UPDATE t SET a = set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            "DELETE FROM t WHERE a = set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            "SELECT 1 ORDER BY set_config('app.current_user_id', '42', false)",
            PROTECTED,
        ),
        (
            "SELECT count(*) FILTER (WHERE set_config('app.current_user_id','1',false) = '1') \
             FROM t",
            PROTECTED,
        ),
        (
            "SELECT CASE WHEN true THEN set_config('app.current_user_id','1',false) END",
            PROTECTED,
        ),
        (
            "SELECT 1 LIMIT length(set_config('app.current_user_id','1',false))",
            PROTECTED,
        ),
        (
            "SELECT 1 GROUP BY set_config('app.current_user_id','1',false)",
            PROTECTED,
        ),
        (
            "INSERT INTO t SELECT 1 ON CONFLICT (a) DO UPDATE \
             SET b = set_config('app.current_user_id','1',false)",
            PROTECTED,
        ),
        (
            "DELETE FROM t RETURNING set_config('app.current_user_id','1',false)",
            PROTECTED,
        ),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN \
             UPDATE SET a = set_config('app.current_user_id','1',false)",
            PROTECTED,
        ),
        (
            "SELECT array_agg(x) OVER (ORDER BY set_config('app.tenant_id','1',false)) FROM t",
            PROTECTED,
        ),
        (
            "PREPARE p AS SELECT set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "EXPLAIN ANALYZE SELECT set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "DECLARE c CURSOR FOR SELECT set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "COPY (SELECT set_config('app.current_user_id', '1', false)) TO STDOUT",
            PROTECTED,
        ),
        (
            "CREATE VIEW v AS SELECT set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "CREATE TABLE t (a text DEFAULT set_config('app.current_user_id', '1', false))",
            PROTECTED,
        ),
        (
            "ALTER TABLE t ADD CHECK (set_config('app.current_user_id', '1', false) <> '')",
            PROTECTED,
        ),
        (
            "CREATE POLICY p ON t USING (set_config('app.current_user_id', '1', false) <> '')",
            PROTECTED,
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO \
             SELECT set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "CREATE INDEX i ON t ((set_config('app.current_user_id', a, false)))",
            PROTECTED,
        ),
        (
            "CALL set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql \
             RETURN set_config('app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC \
             SELECT set_config('app.current_user_id', '1', false); END",
            PROTECTED,
        ),
        (
            "SELECT 1; SELECT set_config('app.current_user_id', '1', false); SELECT 2",
            PROTECTED,
        ),
    ]);
}

#[test]
fn protected_name_spelled_as_the_parser_decodes_it() {
    run_table(&[
        (
            "SELECT set_config(('app.current_user_id'), '1', false)",
            PROTECTED,
        ),
        (
            "SELECT set_config('app.current_user_id'::pg_catalog.text, '1', false)",
            PROTECTED,
        ),
        (
            "SELECT set_config(E'app.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(E'app\056current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(E'app\x2ecurrent_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(E'\u0061pp.current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(e'APP\.CURRENT_USER_ID', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(U&'app\002ecurrent_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config(U&'app!002etenant_id' UESCAPE '!', '1', false)",
            PROTECTED,
        ),
        (
            r#"SELECT U&"set\005fconfig"('app.current_user_id', '1', false)"#,
            PROTECTED,
        ),
        (
            "SELECT set_config($$app.current_user_id$$, '1', false)",
            PROTECTED,
        ),
        (
            "SELECT set_config($q$app.current_user_id$q$, '1', false)",
            PROTECTED,
        ),
        // Constants separated by a newline are one constant in SQL.
        (
            "SELECT set_config('app.current_'\n'user_id', '1', false)",
            PROTECTED,
        ),
        (
            "SELECT set_config(/* c */ 'app.current_user_id' -- x\n, '1', false)",
            PROTECTED,
        ),
        (
            "SELECT set_config\n(\n'app.current_user_id'\n,\n'1'\n,\nfalse\n)",
            PROTECTED,
        ),
    ]);
}

#[test]
fn backslashes_read_as_a_session_without_standard_conforming_strings_would() {
    run_table(&[
        // With standard_conforming_strings off, plain strings take backslash escapes.
        (
            r"SELECT set_config('app\056current_user_id', '1', false)",
            PROTECTED,
        ),
        (
            r"SELECT set_config('app\x2ecurrent_user_id', '1', false)",
            PROTECTED,
        ),
        // The same text splits into other tokens: on, this is two harmless constants; off,
        // the first constant swallows the comma and the call runs (checked on PostgreSQL 15).
        (
            r"SELECT 'x\', '; SELECT set_config($$app.current_user_id$$, $$v$$, false) --'",
            PROTECTED,
        ),
    ]);
}

#[test]
fn names_that_are_not_provably_constant() {
    run_table(&[
        ("SELECT set_config($1, $2, false)", DYNAMIC),
        (
            "PREPARE p(text) AS SELECT set_config($1, 'x', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config('app.' || 'current_user_id', '1', false)",
            DYNAMIC,
        ),
        ("SELECT set_config(name, '1', false) FROM t", DYNAMIC),
        (
            "SELECT set_config(concat('app.', 'current_user_id'), '1', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config(lower('APP.CURRENT_USER_ID'), '1', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config((SELECT 'app.current_user_id'), '1', false)",
            DYNAMIC,
        ),
        // Casts can change the text: char(n) drops trailing spaces, varchar(n) truncates
        // (both checked on PostgreSQL 15), and an unqualified `text` may be a user's type.
        (
            "SELECT set_config('app.current_user_id   '::char(30), '1', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config('app.current_user_idX'::varchar(19), '1', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config('app.current_user_id'::text, '1', false)",
            DYNAMIC,
        ),
        (
            "SELECT set_config(CAST('app.other' AS text), '1', false)",
            DYNAMIC,
        ),
        ("SELECT set_config(text 'app.other', '1', false)", DYNAMIC),
        (
            "SELECT set_config('app.x'::pg_catalog.text(5), '1', false)",
            DYNAMIC,
        ),
        (
            r#"SELECT set_config('app.current_user_id' COLLATE "C", '1', false)"#,
            DYNAMIC,
        ),
        ("SELECT set_config(NULL, '1', false)", DYNAMIC),
        (
            "SELECT set_config(VARIADIC ARRAY['app.current_user_id', '1'])",
            DYNAMIC,
        ),
        (
            "SELECT set_config(setting_name => 'app.current_user_id', \
             new_value => '1', is_local => false)",
            DYNAMIC,
        ),
        ("SELECT set_config(current_user, '1', false)", DYNAMIC),
        (
            "SELECT set_config(x.n, '1', false) FROM (VALUES ('app.tenant_id')) x(n)",
            DYNAMIC,
        ),
    ]);
}
