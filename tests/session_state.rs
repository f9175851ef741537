//! Session state under transaction pooling: what cannot be carried between backend sessions
//! pins the client to its backend; tracked settings follow the client to every backend.

use std::collections::HashSet;
use std::time::Duration;

use pgcordon_e2e::{sqlstate, Harness, Tenant};

const POOL_3: &str = "  mode: transaction\n  size: 3\n  min_idle: 3\n  acquire_timeout: 5s";

fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> String {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

/// Runs `sql` in `rounds` transactions while other clients hold backends, returning the set of
/// backend pids that served them.
async fn pids_over_rounds(
    h: &Harness,
    client: &tokio_postgres::Client,
    rounds: usize,
) -> HashSet<String> {
    let mut pids = HashSet::new();
    for round in 0..rounds {
        let holder = h.connect(Tenant::B).await;
        if round % 2 == 0 {
            holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        pids.insert(first_value(
            &client
                .simple_query("SELECT pg_backend_pid()")
                .await
                .unwrap(),
        ));
        if round % 2 == 0 {
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_pins_the_client_and_notifications_arrive() {
    let h = Harness::start(POOL_3).await;
    let (listener, mut notifications) = h.connect_listening(Tenant::A).await;
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let pids = pids_over_rounds(&h, &listener, 6).await;
    assert_eq!(
        pids.len(),
        1,
        "a listening client keeps its backend: {pids:?}"
    );

    // NOTIFY from another client, on another backend, reaches the idle pinned listener.
    let other = h.connect(Tenant::B).await;
    other.batch_execute("NOTIFY jobs, 'hello'").await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("notification within 5 s")
        .expect("notification channel open");
    assert_eq!((note.channel(), note.payload()), ("jobs", "hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_pin_and_stay_usable() {
    let h = Harness::start(POOL_3).await;
    let client = h.connect(Tenant::A).await;
    client
        .batch_execute("CREATE TEMP TABLE scratch (v int); INSERT INTO scratch VALUES (7)")
        .await
        .unwrap();
    let pids = pids_over_rounds(&h, &client, 4).await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    let v = first_value(&client.simple_query("SELECT v FROM scratch").await.unwrap());
    assert_eq!(v, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_search_path_follows_the_client_and_a_rolled_back_one_does_not() {
    let h = Harness::start(POOL_3).await;
    h.admin(
        "CREATE SCHEMA IF NOT EXISTS tenant_extra; \
         GRANT USAGE ON SCHEMA tenant_extra TO pgcordon_app",
    );
    let client = h.connect(Tenant::A).await;
    client
        .batch_execute("SET search_path TO tenant_extra, public")
        .await
        .unwrap();
    let mut pids = HashSet::new();
    for round in 0..6 {
        let holder = h.connect(Tenant::B).await;
        if round % 2 == 0 {
            holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        let rows = client
            .simple_query("SELECT current_setting('search_path'), pg_backend_pid()")
            .await
            .unwrap();
        let row = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned()))
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(row.0, "tenant_extra, public", "round {round}");
        pids.insert(row.1);
        if round % 2 == 0 {
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert!(
        pids.len() >= 2,
        "the setting must be replayed on other backends: {pids:?}"
    );

    client
        .batch_execute("BEGIN; SET search_path TO public; ROLLBACK")
        .await
        .unwrap();
    let after = first_value(
        &client
            .simple_query("SELECT current_setting('search_path')")
            .await
            .unwrap(),
    );
    assert_eq!(
        after, "tenant_extra, public",
        "a rolled-back SET is not replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_that_can_hide_quotes_is_refused_mid_session() {
    let h = Harness::start(POOL_3).await;
    let client = h.connect(Tenant::A).await;
    let err = client
        .batch_execute("SET client_encoding TO 'SJIS'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    let who = client
        .query_typed_one("SELECT current_setting('client_encoding')", &[])
        .await
        .unwrap();
    assert_eq!(who.get::<_, String>(0), "UTF8");

    // For one transaction only, by SET LOCAL or set_config(..., true), or to a value computed
    // at run time: refused just the same, and the transaction can go on.
    for sql in [
        "SET LOCAL client_encoding TO 'SJIS'",
        "SET LOCAL NAMES 'BIG5'",
        "SELECT set_config('client_encoding', 'GBK', true)",
        "SELECT set_config('client_encoding', lower('SJIS'), true)",
    ] {
        client.batch_execute("BEGIN").await.unwrap();
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{sql}: {err}");
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    let who = client
        .query_typed_one("SELECT current_setting('client_encoding')", &[])
        .await
        .unwrap();
    assert_eq!(who.get::<_, String>(0), "UTF8");
}

/// An encoding change no statement inspection sees (dynamic SQL in a DO block) is caught
/// when the server reports it: the session ends with 0A000 and its backend is closed, so no
/// later statement is read by the server in that encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_encoding_reported_by_the_server_ends_the_session() {
    let h = Harness::start(POOL_3).await;
    let client = h.connect(Tenant::A).await;
    let pid_before = client
        .query_typed_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    let err = client
        .batch_execute("DO $$ BEGIN EXECUTE 'SET client_' || 'encoding = ''SJIS'''; END $$")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("SJIS"), "{message}");
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());

    // The backend session that switched encodings is gone; the pool serves others in UTF8.
    let other = h.connect(Tenant::B).await;
    let row = other
        .query_typed_one("SELECT current_setting('client_encoding')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "UTF8");
    let alive = h.admin(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid_before}"
    ));
    assert_eq!(alive.trim(), "0", "the SJIS backend session was closed");
}
