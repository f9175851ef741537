//! Named prepared statements under transaction pooling: prepared once by the client, usable on
//! whichever backend session serves its later transactions, never confused between clients.

use pgcordon_e2e::{Harness, Tenant};

const POOL_3: &str = "  mode: transaction\n  size: 3\n  min_idle: 3\n  acquire_timeout: 5s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_follow_the_client_across_backends() {
    let h = Harness::start(POOL_3).await;
    let a = h.connect(Tenant::A).await;
    let b = h.connect(Tenant::B).await;

    // tokio-postgres prepares named statements ("s0", "s1", ...) for query() and prepare().
    let count = a
        .prepare("SELECT count(*)::int8, current_setting('app.current_user_id') FROM documents")
        .await
        .unwrap();
    let pid = a.prepare("SELECT pg_backend_pid()").await.unwrap();

    // Hold backends in other clients' transactions so `a` lands on different sessions.
    let mut seen_pids = std::collections::HashSet::new();
    for round in 0..6 {
        let holder = h.connect(Tenant::B).await;
        if round % 2 == 0 {
            holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        let row = a.query_one(&count, &[]).await.unwrap();
        let who: String = row.get(1);
        assert_eq!(
            row.get::<_, i64>(0),
            2,
            "tenant A sees its two rows (round {round}, identity {who})"
        );
        assert_eq!(row.get::<_, String>(1), Tenant::A.id());
        let backend: i32 = a.query_one(&pid, &[]).await.unwrap().get(0);
        seen_pids.insert(backend);
        if round % 2 == 0 {
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert!(
        seen_pids.len() >= 2,
        "statements were used on {} backend(s) only",
        seen_pids.len()
    );

    // Client b uses the same statement names (s0, s1) for different SQL: no collision.
    let other = b
        .prepare("SELECT title FROM documents ORDER BY 1")
        .await
        .unwrap();
    let rows = b.query(&other, &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "tenant B: payroll");
    let again = a.query_one(&count, &[]).await.unwrap();
    assert_eq!(again.get::<_, String>(1), Tenant::A.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_with_parameters_inside_transactions_and_after_errors() {
    let h = Harness::start(POOL_3).await;
    let a = h.connect(Tenant::A).await;

    let insert = a
        .prepare("INSERT INTO documents (title) VALUES ($1) RETURNING owner_id")
        .await
        .unwrap();
    let by_title = a
        .prepare("SELECT count(*)::int8 FROM documents WHERE title = $1")
        .await
        .unwrap();

    a.batch_execute("BEGIN").await.unwrap();
    let owner: String = a.query_one(&insert, &[&"draft"]).await.unwrap().get(0);
    assert_eq!(
        owner,
        Tenant::A.id(),
        "the row is stamped with the client's identity"
    );
    let err = a.query_one("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(pgcordon_e2e::sqlstate(&err).as_deref(), Some("22012"));
    a.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = a.query_one(&by_title, &[&"draft"]).await.unwrap().get(0);
    assert_eq!(n, 0, "rolled back");

    let owner: String = a.query_one(&insert, &[&"kept"]).await.unwrap().get(0);
    assert_eq!(owner, Tenant::A.id());
    let n: i64 = a.query_one(&by_title, &[&"kept"]).await.unwrap().get(0);
    assert_eq!(n, 1);

    // Statements the client never prepared are unknown, with the server's SQLSTATE.
    drop(by_title);
    let fresh = a.prepare("SELECT 42::int4").await.unwrap();
    let v: i32 = a.query_one(&fresh, &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
}
