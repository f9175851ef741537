//! The statement guard's policy through the real proxy: SET ROLE, SET SESSION AUTHORIZATION,
//! ALTER ROLE and ALTER SYSTEM are refused by default with SQLSTATE 42501 over the simple and
//! the extended protocol, the refusal names the statement kind, nothing reaches PostgreSQL
//! (the app role is a member of a role it could otherwise become), and the session goes on.
//! With `guard.allow` the listed kinds reach the server and work, and the others stay refused.

use std::future::Future;
use std::time::Duration;

use pgcordon_devkit::stack::APP_ROLE;
use pgcordon_e2e::raw::{self, db_error};
use pgcordon_e2e::{sqlstate, Tenant, POOL_TX};

/// A role the app role is a member of: `SET ROLE reporting` would succeed at the server.
const GRANT_REPORTING: &str = "CREATE ROLE reporting NOLOGIN; GRANT reporting TO pgcordon_app;";

/// The app role's name, password hash and stored defaults, as the superuser sees them.
const ROLE_STATE: &str = "SELECT a.rolname, a.rolpassword, r.rolconfig FROM pg_authid a \
                          JOIN pg_roles r USING (oid) WHERE a.rolname = 'pgcordon_app'";

async fn within<T>(seconds: u64, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), work)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {seconds} s"))
}

/// Asserts a refusal by pgcordon's guard (not by PostgreSQL) naming `kind` and its SQL.
fn assert_policy_refusal(err: &tokio_postgres::Error, kind: &str, sql_words: &str, what: &str) {
    let (severity, code, message) = db_error(err);
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("ERROR", "42501"),
        "{what}: {message}"
    );
    assert!(
        message.starts_with("pgcordon: ")
            && message.contains(&format!("\"{kind}\""))
            && message.contains(sql_words),
        "{what}: {message}"
    );
}

/// The session's role and identity, read through pgcordon.
async fn who(client: &tokio_postgres::Client) -> (String, String) {
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('app.current_user_id')",
            &[],
        )
        .await
        .expect("who query");
    (row.get(0), row.get(1))
}

/// (statement, kind, SQL words of the kind); each is refused by default.
const REFUSED: [(&str, &str, &str); 12] = [
    ("SET ROLE reporting", "set_role", "SET ROLE"),
    ("set local role reporting", "set_role", "SET ROLE"),
    ("RESET ROLE", "set_role", "SET ROLE"),
    ("/* c */ sEt \"role\" = 'reporting'", "set_role", "SET ROLE"),
    (
        "SELECT set_config('role', 'reporting', false)",
        "set_role",
        "SET ROLE",
    ),
    (
        "SET SESSION AUTHORIZATION postgres",
        "set_session_authorization",
        "SET SESSION AUTHORIZATION",
    ),
    (
        "RESET SESSION AUTHORIZATION",
        "set_session_authorization",
        "SET SESSION AUTHORIZATION",
    ),
    (
        "ALTER ROLE pgcordon_app PASSWORD 'stolen'",
        "alter_role",
        "ALTER ROLE",
    ),
    (
        "ALTER USER CURRENT_USER SET work_mem = '2MB'",
        "alter_role",
        "ALTER ROLE",
    ),
    (
        "ALTER ROLE pgcordon_app RENAME TO x",
        "alter_role",
        "ALTER ROLE",
    ),
    (
        "ALTER SYSTEM SET work_mem = '2MB'",
        "alter_system",
        "ALTER SYSTEM",
    ),
    ("SELECT 1; SET ROLE reporting", "set_role", "SET ROLE"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_statements_are_refused_by_default_and_the_session_goes_on() {
    within(180, async {
        let h = raw::harness(POOL_TX, "").await;
        h.admin(GRANT_REPORTING);
        let password_before = h.admin(ROLE_STATE);
        let client = h.connect(Tenant::A).await;
        let own = (APP_ROLE.to_owned(), Tenant::A.id().to_owned());
        assert_eq!(who(&client).await, own);

        for (sql, kind, words) in REFUSED {
            let err = client.simple_query(sql).await.unwrap_err();
            assert_policy_refusal(&err, kind, words, &format!("simple {sql}"));
            assert_eq!(who(&client).await, own, "after simple {sql}");
            if sql.contains(';') {
                continue; // one statement per Parse
            }
            let err = client.prepare(sql).await.unwrap_err();
            assert_policy_refusal(&err, kind, words, &format!("Parse of {sql}"));
            let err = client.execute(sql, &[]).await.unwrap_err();
            assert_policy_refusal(&err, kind, words, &format!("extended {sql}"));
            assert_eq!(who(&client).await, own, "after extended {sql}");
        }

        // Inside a transaction the refusal aborts it like any error; ROLLBACK ends it.
        client.simple_query("BEGIN").await.unwrap();
        let err = client
            .simple_query("SET LOCAL ROLE reporting")
            .await
            .unwrap_err();
        assert_policy_refusal(&err, "set_role", "SET ROLE", "inside BEGIN");
        let err = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("25P02"), "{err}");
        client.simple_query("ROLLBACK").await.unwrap();
        assert_eq!(who(&client).await, own);

        // Nothing reached the server: the role's password, defaults and name are unchanged,
        // and the log names the refused kinds.
        let password_after = h.admin(ROLE_STATE);
        assert_eq!(password_after, password_before);
        assert!(
            !password_after.trim().is_empty(),
            "the app role still exists"
        );
        for kind in [
            "set_role",
            "set_session_authorization",
            "alter_role",
            "alter_system",
        ] {
            raw::wait_for_log(
                &[
                    "statement refused by the guard",
                    &format!("reason=\"{kind}\""),
                ],
                Duration::from_secs(5),
            )
            .await
            .or_else(|_| {
                let bare = format!("reason={kind}");
                raw::log_lines(&["statement refused by the guard", &bare])
                    .into_iter()
                    .next()
                    .ok_or(format!("no refusal logged with reason {kind}"))
            })
            .unwrap();
        }
        assert!(raw::log_lines(&["panicked"]).is_empty());

        // A new client still connects (the pool's password was not changed) and works.
        let other = h.connect(Tenant::B).await;
        assert_eq!(
            who(&other).await,
            (APP_ROLE.to_owned(), Tenant::B.id().to_owned())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_lets_the_listed_kinds_reach_the_server() {
    within(180, async {
        let h = raw::harness(POOL_TX, "").await;
        h.admin(GRANT_REPORTING);
        let allowing = raw::start_variant(&h, POOL_TX, |base| {
            format!("{base}guard:\n  allow: [set_role, alter_role]\n")
        })
        .await;
        let tls = h.client_tls(h.tenant_files(Tenant::A));
        let client = raw::connect_tls(&raw::pg_config(allowing.addr.port(), "app"), tls)
            .await
            .expect("connect to the allowing proxy");
        let tenant = Tenant::A.id().to_owned();

        // SET ROLE runs at the server (simple protocol), keeps the identity, and is undone.
        client.simple_query("SET ROLE reporting").await.unwrap();
        assert_eq!(who(&client).await, ("reporting".to_owned(), tenant.clone()));
        client.simple_query("RESET ROLE").await.unwrap();
        assert_eq!(who(&client).await, (APP_ROLE.to_owned(), tenant.clone()));

        // The same over the extended protocol.
        client.execute("SET ROLE reporting", &[]).await.unwrap();
        assert_eq!(who(&client).await, ("reporting".to_owned(), tenant.clone()));
        client.execute("RESET ROLE", &[]).await.unwrap();

        // A role PostgreSQL refuses is now PostgreSQL's error, not pgcordon's.
        let err = client.simple_query("SET ROLE postgres").await.unwrap_err();
        let (_, code, message) = db_error(&err);
        assert_eq!(code, "42501", "{message}");
        assert!(!message.starts_with("pgcordon"), "{message}");

        // ALTER ROLE reaches the server: the role's default is stored, then removed.
        client
            .simple_query("ALTER ROLE CURRENT_USER SET work_mem = '3MB'")
            .await
            .unwrap();
        let config = h.admin(&format!(
            "SELECT rolconfig FROM pg_roles WHERE rolname = '{APP_ROLE}'"
        ));
        assert!(config.contains("work_mem=3MB"), "{config}");
        client
            .simple_query("ALTER ROLE CURRENT_USER RESET work_mem")
            .await
            .unwrap();

        // Kinds not listed stay refused, and the identity stays protected inside allowed ones.
        let err = client
            .simple_query("SET SESSION AUTHORIZATION postgres")
            .await
            .unwrap_err();
        assert_policy_refusal(
            &err,
            "set_session_authorization",
            "SET SESSION AUTHORIZATION",
            "not listed",
        );
        let err = client
            .simple_query("ALTER SYSTEM SET work_mem = '2MB'")
            .await
            .unwrap_err();
        assert_policy_refusal(&err, "alter_system", "ALTER SYSTEM", "not listed");
        let err = client
            .simple_query("ALTER ROLE CURRENT_USER SET app.current_user_id = 'x'")
            .await
            .unwrap_err();
        let (_, code, message) = db_error(&err);
        assert_eq!(code, "42501");
        assert!(message.contains("\"app.current_user_id\""), "{message}");
        assert_eq!(who(&client).await, (APP_ROLE.to_owned(), tenant.clone()));

        // The default proxy on the same stack still refuses SET ROLE.
        let strict = h.connect(Tenant::A).await;
        let err = strict.simple_query("SET ROLE reporting").await.unwrap_err();
        assert_policy_refusal(&err, "set_role", "SET ROLE", "default proxy");
    })
    .await;
}
