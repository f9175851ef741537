//! The tamper-proof identity mode: an identity changed behind the statement guard's back (by a
//! function created earlier) no longer verifies, so row-level security shows nothing. Without
//! the mode, the same function really does switch the identity: docs/security.md says so.

use pgcordon_devkit::stack::{Stack, TENANT_A, TENANT_B};
use pgcordon_e2e::{launch, Harness, Tenant};

/// 48 hex characters: the shared secret in the key file and in the database.
const SECRET: &str = "9f2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e0b2d4f6a8c0e2a4c";

const SCHEMA: &str = include_str!("../docs/sql/tamper-proof.sql");

/// A function the guard cannot see into: it builds the setting name at run time.
const SWITCH: &str = "CREATE FUNCTION public.switch_identity(t text) RETURNS text \
    LANGUAGE plpgsql AS $f$ BEGIN \
    PERFORM set_config('app.' || 'current_user_id', t, false); RETURN t; END $f$; \
    GRANT EXECUTE ON FUNCTION public.switch_identity(text) TO pgcordon_app;";

async fn count_and_identity(client: &tokio_postgres::Client) -> (i64, String) {
    let row = client
        .query_typed_one(
            "SELECT count(*), current_setting('app.current_user_id') FROM documents",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_proofs_a_switched_identity_sees_nothing() {
    let pool = "  mode: transaction\n  size: 1\n  min_idle: 1\n  acquire_timeout: 5s";
    let mut h = Harness::start(pool).await;
    let key_file = h.stack.dir.join("proof.key");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    h.admin(&SCHEMA.replace(":'proof_key'", &format!("'{SECRET}'")));
    h.admin(SWITCH);

    // Restart pgcordon with the proof mode on.
    let old_listen = format!("127.0.0.1:{}", h.addr.port());
    let new_listen = Stack::free_listen_addr().unwrap();
    let yaml = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(&old_listen, &new_listen)
        .replace(
            "  settings: [app.current_user_id]\n",
            &format!(
                "  settings: [app.current_user_id]\n  proof:\n    key_file: {}\n",
                key_file.display()
            ),
        );
    let config_path = h.stack.dir.join("pgcordon-proof.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let running = launch(&config_path).await;
    h.addr = running.addr;

    let a = h.connect(Tenant::A).await;
    assert_eq!(
        count_and_identity(&a).await,
        (2, TENANT_A.to_string()),
        "a proven identity works"
    );
    let inserted: String = a
        .query_typed_one(
            "INSERT INTO documents (title) VALUES ('proven') RETURNING owner_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(inserted, TENANT_A);

    // Tenant A switches to B's identity through the function: the setting says B, the proof
    // does not verify, and no row of anyone is visible.
    a.batch_execute("BEGIN").await.unwrap();
    a.query_typed_one(
        "SELECT public.switch_identity($1)",
        &[(&TENANT_B, tokio_postgres::types::Type::TEXT)],
    )
    .await
    .unwrap();
    let (count, identity) = count_and_identity(&a).await;
    assert_eq!(identity, TENANT_B, "the function did change the setting");
    assert_eq!(count, 0, "but B's rows stay hidden: the proof is A's");
    let err = a
        .query_typed_one(
            "INSERT INTO documents (title) VALUES ('forged') RETURNING id",
            &[],
        )
        .await
        .expect_err("a write as B must fail the policy");
    assert!(
        err.to_string().contains("row-level security") || err.as_db_error().is_some(),
        "{err}"
    );
    a.batch_execute("ROLLBACK").await.unwrap();

    // The proof and nonce settings are protected like the identity.
    let err = a
        .batch_execute("SET app.identity_proof = 'x'")
        .await
        .unwrap_err();
    assert_eq!(pgcordon_e2e::sqlstate(&err).as_deref(), Some("42501"));

    let b = h.connect(Tenant::B).await;
    assert_eq!(count_and_identity(&b).await, (1, TENANT_B.to_string()));
    let _ = running.shutdown.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_proofs_such_a_function_does_switch_the_identity() {
    let h = Harness::start("  mode: transaction\n  size: 1\n  min_idle: 1").await;
    h.admin(SWITCH);
    let a = h.connect(Tenant::A).await;
    a.batch_execute("BEGIN").await.unwrap();
    a.query_typed_one(
        "SELECT public.switch_identity($1)",
        &[(&TENANT_B, tokio_postgres::types::Type::TEXT)],
    )
    .await
    .unwrap();
    // This is the documented limit of the guard alone (docs/security.md): B's row is visible.
    assert_eq!(count_and_identity(&a).await, (1, TENANT_B.to_string()));
    a.batch_execute("ROLLBACK").await.unwrap();
}
