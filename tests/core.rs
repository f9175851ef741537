//! The core path end to end: mTLS in, SCRAM over TLS out, identity on every transaction.

use pgcordon_e2e::{Harness, Tenant, POOL_TX};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_own_rows() {
    let h = Harness::start(POOL_TX).await;
    let a = h.connect(Tenant::A).await;
    let b = h.connect(Tenant::B).await;

    let rows = a
        .simple_query("SELECT title FROM documents ORDER BY title")
        .await
        .unwrap();
    let titles: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(titles, vec!["tenant A: invoices", "tenant A: roadmap"]);

    let row = b
        .query_typed_one("SELECT count(*), min(title) FROM documents", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "tenant B: payroll");

    let who = a
        .query_typed_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .unwrap();
    assert_eq!(who.get::<_, String>(0), Tenant::A.id());
}
