//! SET and RESET of a protected setting, at top level and inside other statements, in every
//! spelling the PostgreSQL grammar accepts.

mod common;

use common::{run_table, Expect, Expect::Refuse};
use pgcordon_sql::RefusalReason::{ResetProtected, SetProtected};

const SET: Expect = Refuse(SetProtected);
const RESET: Expect = Refuse(ResetProtected);

#[test]
fn plain_set_forms() {
    run_table(&[
        ("SET app.current_user_id = '42'", SET),
        ("set app.current_user_id to 42", SET),
        ("SET SESSION app.current_user_id = 'x'", SET),
        ("SET LOCAL app.current_user_id = 'x'", SET),
        ("SET app.current_user_id TO DEFAULT", SET),
        ("SET app.current_user_id = DEFAULT", SET),
        ("SET app.current_user_id FROM CURRENT", SET),
        ("SET app.current_user_id = 'a', 'b'", SET),
        ("SET app.tenant_id = 7", SET),
        ("SET app.current_user_id = ''", SET),
    ]);
}

#[test]
fn case_and_quoting_games() {
    run_table(&[
        ("SeT ApP.CuRrEnT_UsEr_Id = 'x'", SET),
        ("SET APP.CURRENT_USER_ID = 'x'", SET),
        (r#"SET "app"."current_user_id" = 'x'"#, SET),
        (r#"SET "APP"."CURRENT_USER_ID" = 'x'"#, SET),
        (r#"SET "app.current_user_id" = 'x'"#, SET),
        (r#"SET app."current_user_id" = 'x'"#, SET),
        (r#"SET "App".current_user_id = 'x'"#, SET),
        (r#"SET U&"app\002ecurrent_user_id" = 'x'"#, SET),
        (r#"SET U&"app".U&"current\005fuser\005fid" = 'x'"#, SET),
        (r#"SET u&"\0061pp".u&"\0063urrent_user_id" = 'x'"#, SET),
        (
            r#"SET U&"app!002ecurrent!005fuser!005fid" UESCAPE '!' = 'x'"#,
            SET,
        ),
        (r#"SET app.U&"\+000063urrent_user_id" = 'x'"#, SET),
    ]);
}

#[test]
fn comments_and_whitespace_between_tokens() {
    run_table(&[
        ("SET app /* a */ . /* b */ current_user_id = 'x'", SET),
        ("SET app.\n  current_user_id\n=\n'x'", SET),
        ("SET -- comment\n app.current_user_id = 'x'", SET),
        (
            "SET /* outer /* nested */ still a comment */ app.current_user_id = 'x'",
            SET,
        ),
        ("\tSET\tapp.current_user_id\tTO\t'x'", SET),
        ("\r\nSET\r\napp . current_user_id\r\nTO\r\n'x'\r\n", SET),
        ("SET app --x\n.--y\ncurrent_user_id = 1", SET),
        ("/* SELECT */ SET app.current_user_id = 1 -- trailing", SET),
        ("RESET/**/app.current_user_id", RESET),
    ]);
}

#[test]
fn inside_multi_statement_strings() {
    run_table(&[
        ("SELECT 1; SET app.current_user_id = 'x'", SET),
        ("SELECT 1;SET app.current_user_id='x';SELECT 2", SET),
        ("BEGIN; SET LOCAL app.current_user_id = 'x'; COMMIT", SET),
        ("SELECT 'a;b'; SET app.tenant_id = 1", SET),
        ("SELECT $$;$$; SET app.current_user_id = 1", SET),
        ("RESET ALL; SET app.current_user_id = '1'", SET),
        ("SET search_path = public; RESET app.current_user_id", RESET),
    ]);
}

#[test]
fn reset_forms() {
    run_table(&[
        ("RESET app.current_user_id", RESET),
        ("reset \"APP\".current_user_id", RESET),
        ("SELECT 1; RESET app.tenant_id", RESET),
        (r#"RESET U&"app\002ecurrent_user_id""#, RESET),
    ]);
}

#[test]
fn inside_other_statements() {
    run_table(&[
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql \
             SET app.current_user_id = '1' AS 'SELECT 1'",
            SET,
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE sql \
             SET app.current_user_id FROM CURRENT AS 'SELECT 1'",
            SET,
        ),
        ("ALTER FUNCTION f() SET app.current_user_id = '1'", SET),
        ("ALTER FUNCTION f() RESET app.current_user_id", RESET),
        (
            "ALTER PROCEDURE p() SET app.current_user_id TO DEFAULT",
            SET,
        ),
        ("ALTER ROUTINE r SET app.current_user_id = '1'", SET),
        ("ALTER ROLE app_user SET app.current_user_id = '1'", SET),
        ("ALTER USER app_user SET app.tenant_id = '1'", SET),
        (
            "ALTER ROLE ALL IN DATABASE db SET app.current_user_id = '1'",
            SET,
        ),
        (
            "ALTER ROLE app_user IN DATABASE db RESET app.current_user_id",
            RESET,
        ),
        ("ALTER DATABASE db SET app.current_user_id = '1'", SET),
        ("ALTER DATABASE db RESET app.current_user_id", RESET),
        ("ALTER SYSTEM SET app.current_user_id = '1'", SET),
        ("ALTER SYSTEM RESET app.current_user_id", RESET),
    ]);
}
