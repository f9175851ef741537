//! Per-client limits: sessions per identity, idle clients, idle transactions, total connections.

use std::time::{Duration, Instant};

use pgcordon_e2e::{metric, sqlstate, Harness, Tenant};

const POOL: &str = "  mode: transaction\n  size: 2\n  min_idle: 1\n  acquire_timeout: 5s";
const LIMITS: &str = "pgcordon_limits_reached_total";

fn reached(h: &Harness, limit: &str) -> f64 {
    metric(&h.obs, LIMITS, &[("limit", limit)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_identity_are_capped_with_53300() {
    let h = Harness::start_with(POOL, "limits:\n  max_connections_per_identity: 2\n").await;
    let _a1 = h.connect(Tenant::A).await;
    let a2 = h.connect(Tenant::A).await;
    let err = h
        .try_connect_with(h.client_tls(h.tenant_files(Tenant::A)), "app")
        .await
        .expect_err("a third session of A is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    assert_eq!(reached(&h, "max_connections_per_identity"), 1.0);
    assert_eq!(reached(&h, "max_client_connections"), 0.0);
    // Other identities are not affected, and a freed slot can be used again.
    let _b = h.connect(Tenant::B).await;
    drop(a2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match h
            .try_connect_with(h.client_tls(h.tenant_files(Tenant::A)), "app")
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot not released: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transaction_is_ended_and_rolled_back() {
    let extra = "limits:\n  idle_in_transaction_timeout: 500ms\n  client_idle_timeout: 1500ms\n";
    let h = Harness::start_with(POOL, extra).await;
    let a = h.connect(Tenant::A).await;
    a.batch_execute("BEGIN; INSERT INTO documents (title) VALUES ('abandoned')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = a
        .batch_execute("COMMIT")
        .await
        .expect_err("the session was ended");
    assert!(a.is_closed() || sqlstate(&err).is_some(), "{err}");
    let n = h.admin("SELECT count(*) FROM documents WHERE title = 'abandoned'");
    assert_eq!(n.trim(), "0", "the transaction was rolled back");
    assert_eq!(reached(&h, "idle_in_transaction_timeout"), 1.0);
    assert_eq!(reached(&h, "client_idle_timeout"), 0.0);

    // An idle session (between transactions) is ended after client_idle_timeout, and not before.
    let idle = h.connect(Tenant::B).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    idle.batch_execute("SELECT 1")
        .await
        .expect("still open after 600 ms");
    let closed_by = Instant::now() + Duration::from_secs(5);
    while !idle.is_closed() && Instant::now() < closed_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(idle.is_closed(), "the idle session was closed");
    assert_eq!(reached(&h, "client_idle_timeout"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_a_client_is_told_53300() {
    let h = Harness::start_with(POOL, "limits:\n  max_client_connections: 2\n").await;
    let _one = h.connect(Tenant::A).await;
    let _two = h.connect(Tenant::B).await;
    let err = h
        .try_connect_with(h.client_tls(h.tenant_files(Tenant::A)), "app")
        .await
        .expect_err("a third connection is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    assert_eq!(reached(&h, "max_client_connections"), 1.0);
}
