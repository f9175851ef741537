//! A "primary" that is really a standby (a failover half done, or a configuration pointing at
//! the wrong server): pgcordon's health check finds it in recovery, logs an error, and refuses
//! writes with 25006 and a message naming it, instead of sending them anywhere else. Reads that
//! provably only read still run (there, since no healthy replica is left).

use std::time::Duration;

use pgcordon_devkit::stack::{ReplicaEntry, Stack};
use pgcordon_e2e::raw::{capture_logs, wait_for_log};
use pgcordon_e2e::routing_kit::ran_on_replica;
use pgcordon_e2e::tenants::within;
use pgcordon_e2e::{client_tls, launch, sqlstate, POOL_TX};

const ROUTING: &str = "routing:\n  mode: auto\n  check_interval: 200ms\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_in_recovery_refuses_writes_loudly_and_sends_them_nowhere_else() {
    capture_logs();
    within(90, async {
        let dir = tempfile::Builder::new()
            .prefix("pgcordon-standby-primary")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let (stack, standby) = tokio::task::spawn_blocking(move || {
            let stack = Stack::start(&root).expect("start the PostgreSQL stack");
            let standby = stack.start_replica().expect("start a streaming replica");
            (stack, standby)
        })
        .await
        .expect("stack task");

        // The configuration swaps the roles: `primary` is the standby, and the real primary is
        // listed as a replica (which its check finds not in recovery: out of rotation too).
        let listen = Stack::free_listen_addr().expect("free port");
        let real_primary = ReplicaEntry {
            name: "real-primary".into(),
            port: stack.cluster.port(),
        };
        let yaml = stack.config_yaml_with_replicas(&listen, POOL_TX, &[real_primary], ROUTING);
        let primary_line = format!("primary: 127.0.0.1:{}", stack.cluster.port());
        assert!(yaml.contains(&primary_line), "{yaml}");
        let yaml = yaml.replace(
            &primary_line,
            &format!("primary: 127.0.0.1:{}", standby.port()),
        );
        let config_path = stack.dir.join("standby-primary.yaml");
        std::fs::write(&config_path, yaml).expect("write configuration");
        let proxy = launch(&config_path).await;

        let logged = wait_for_log(
            &["primary is in recovery", "writes fail"],
            Duration::from_secs(10),
        )
        .await;
        assert!(logged.is_ok(), "no error logged: {logged:?}");

        let mut config = tokio_postgres::Config::new();
        config
            .host("localhost")
            .port(proxy.addr.port())
            .user("api")
            .dbname("app")
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = client_tls(&stack.files.ca, Some(&stack.files.tenant_a));
        let (client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .expect("connect through pgcordon");
        tokio::spawn(connection);

        let before = stack
            .cluster
            .psql("app", "SELECT count(*) FROM documents")
            .expect("count on the real primary");
        for write in [
            "INSERT INTO documents (title) VALUES ('must not land')",
            "BEGIN; INSERT INTO documents (title) VALUES ('must not land'); COMMIT",
            "SELECT nextval('documents_id_seq')",
        ] {
            let err = client
                .simple_query(write)
                .await
                .expect_err("a write while the primary is in recovery");
            assert_eq!(sqlstate(&err).as_deref(), Some("25006"), "{write}: {err:?}");
            let message = err
                .as_db_error()
                .map(|e| e.message().to_owned())
                .unwrap_or_default();
            assert!(
                message.contains("primary") && message.contains("in recovery"),
                "{write}: {message}"
            );
        }
        // The session stays usable, a provable read runs (on the standby, the only target in
        // recovery), and nothing reached the real primary.
        assert!(ran_on_replica(&client, "SELECT pg_is_in_recovery()")
            .await
            .expect("a read while the primary is in recovery"));
        let after = stack
            .cluster
            .psql("app", "SELECT count(*) FROM documents")
            .expect("count on the real primary");
        assert_eq!(
            before, after,
            "a write reached the server listed as a replica"
        );

        drop(client);
        drop(proxy);
        drop(standby);
        drop(stack);
    })
    .await;
}
