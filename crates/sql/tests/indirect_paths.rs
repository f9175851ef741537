//! Paths to set_config that are not a direct call in the statement: objects that will call
//! it later (aggregates, triggers, casts), and the update rule of the pg_settings view.

mod common;

use common::{run_table, Expect, Expect::Refuse};
use pgcordon_sql::RefusalReason::{SetConfigIndirect, SettingsViewUpdate};

const INDIRECT: Expect = Refuse(SetConfigIndirect);

#[test]
fn references_that_are_not_direct_calls() {
    run_table(&[
        // The aggregate's state starts as the protected name and each row calls
        // set_config(state, value, is_local): this set the identity on PostgreSQL 15.
        (
            "CREATE AGGREGATE agg(text, boolean) \
             (SFUNC = set_config, STYPE = text, INITCOND = 'app.current_user_id')",
            INDIRECT,
        ),
        (
            "CREATE AGGREGATE agg(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text)",
            INDIRECT,
        ),
        (
            "CREATE AGGREGATE agg(text, boolean) (SFUNC = 'set_config', STYPE = text)",
            INDIRECT,
        ),
        (
            "ALTER FUNCTION set_config(text, text, boolean) SECURITY DEFINER",
            INDIRECT,
        ),
        (
            "ALTER FUNCTION pg_catalog.set_config(text, text, boolean) OWNER TO x",
            INDIRECT,
        ),
        (
            "CREATE CAST (text AS int) WITH FUNCTION set_config(text, text, boolean)",
            INDIRECT,
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION set_config()",
            INDIRECT,
        ),
        (
            "GRANT EXECUTE ON FUNCTION set_config(text, text, boolean) TO PUBLIC",
            INDIRECT,
        ),
        (
            "CREATE FUNCTION set_config(a int) RETURNS int LANGUAGE sql AS 'SELECT 1'",
            INDIRECT,
        ),
        // Conservative: a column of that name is refused too.
        ("SELECT set_config FROM t", INDIRECT),
    ]);
}

#[test]
fn updating_the_settings_view() {
    // Custom settings that no module defines are not rows of pg_settings (checked on
    // PostgreSQL 15, also after a SET), but a module-defined one would be; refuse the path.
    let view = Refuse(SettingsViewUpdate);
    run_table(&[
        (
            "UPDATE pg_settings SET setting = 'x' WHERE name = 'app.current_user_id'",
            view,
        ),
        (
            "UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name LIKE 'app.%'",
            view,
        ),
        ("update PG_SETTINGS set setting = 'x'", view),
        (r#"UPDATE "pg_settings" SET setting = 'x'"#, view),
        (
            "WITH u AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT 1",
            view,
        ),
        (
            "SELECT name, setting FROM pg_settings WHERE name LIKE 'app.%'",
            Expect::Allow,
        ),
        ("UPDATE my_settings SET v = 1", Expect::Allow),
    ]);
}
