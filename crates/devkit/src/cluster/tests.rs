//! Tests against real PostgreSQL servers: TLS with SCRAM from a real psql, client certificates
//! and a CRL enforced by the server, a streaming replica, restart, and stop on drop.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::*;
use crate::pki::{CertAuthority, ClientSpec};

/// A psql connection over TCP with the given conninfo, as a client (not through the socket).
fn tcp_psql(conninfo: &str, password: Option<&str>, sql: &str) -> Output {
    let psql = find_pg_bindir().unwrap().join("psql");
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo]);
    // Keep anything from the caller's environment out of the connection.
    for var in [
        "PGPASSWORD",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLMODE",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "psql unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn is_ready(port: u16) -> bool {
    let tool = find_pg_bindir().unwrap().join("pg_isready");
    let out = Command::new(tool)
        .args(["-h", HOST, "-p", &port.to_string(), "-t", "3"])
        .output()
        .unwrap();
    out.status.success()
}

fn tls_options(ca: &CertAuthority) -> ClusterOptions {
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    ClusterOptions {
        server_tls: Some((server.cert_pem, server.key_pem)),
        ..ClusterOptions::default()
    }
}

fn write_ca(ca: &CertAuthority, dir: &Path) -> String {
    let path = dir.join("ca.crt");
    std::fs::write(&path, ca.cert_pem()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Polls `f` until it returns true or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn tls_scram_and_streaming_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CertAuthority::new("devkit cluster test CA").unwrap();
    let ca_file = write_ca(&ca, tmp.path());
    let primary = Cluster::init_and_start(&tmp.path().join("primary"), &tls_options(&ca)).unwrap();
    assert_eq!(primary.host(), "127.0.0.1");
    assert!(primary.socket_dir().starts_with(tmp.path()));

    primary
        .psql("postgres", "CREATE ROLE alice LOGIN PASSWORD 'wonderland';")
        .unwrap();
    let stored = primary
        .psql(
            "postgres",
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'alice';",
        )
        .unwrap();
    assert_eq!(stored.trim(), "t");

    // Full verification of the server certificate against our CA, then SCRAM.
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=postgres user=alice sslmode=verify-full \
         sslrootcert={ca_file}",
        primary.port()
    );
    let sql = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();";
    assert_eq!(
        stdout(&tcp_psql(&conninfo, Some("wonderland"), sql)),
        "alice|t"
    );
    let wrong = stderr(&tcp_psql(&conninfo, Some("looking-glass"), sql));
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    // The default pg_hba.conf rejects plaintext TCP.
    let plain = format!(
        "host=127.0.0.1 port={} dbname=postgres user=alice sslmode=disable",
        primary.port()
    );
    let refused = stderr(&tcp_psql(&plain, Some("wonderland"), "SELECT 1;"));
    assert!(refused.contains("no encryption"), "{refused}");

    // A replica follows the primary over TLS.
    let replica = Cluster::start_replica(&primary, &tmp.path().join("replica")).unwrap();
    assert_ne!(replica.port(), primary.port());
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery();")
            .unwrap()
            .trim(),
        "t"
    );
    assert_eq!(
        primary
            .psql("postgres", "SELECT pg_is_in_recovery();")
            .unwrap()
            .trim(),
        "f"
    );

    primary
        .psql(
            "postgres",
            "CREATE TABLE pets (name text); INSERT INTO pets VALUES ('dinah');",
        )
        .unwrap();
    let seen = eventually(Duration::from_secs(15), || {
        replica
            .psql("postgres", "SELECT name FROM pets;")
            .is_ok_and(|rows| rows.trim() == "dinah")
    });
    assert!(
        seen,
        "the replica never saw the row inserted on the primary"
    );
    let streaming = primary
        .psql(
            "postgres",
            "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
             WHERE r.state = 'streaming';",
        )
        .unwrap();
    assert_eq!(streaming.trim(), "t");

    // A replica is read-only, and psql errors carry the server's message.
    let err = replica
        .psql("postgres", "INSERT INTO pets VALUES ('cheshire');")
        .unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");

    let replica_port = replica.port();
    drop(replica);
    assert!(!is_ready(replica_port));
    assert!(is_ready(primary.port()));
}

#[test]
fn client_certificates_and_crl_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CertAuthority::new("devkit client CA").unwrap();
    let ca_file = write_ca(&ca, tmp.path());
    let dir = tmp.path().join("certs");
    let mut opts = tls_options(&ca);
    opts.client_ca_pem = Some(ca.cert_pem().to_string());
    opts.hba = vec![
        "local all all trust".into(),
        "hostssl all all 127.0.0.1/32 cert".into(),
        "hostnossl all all 0.0.0.0/0 reject".into(),
    ];
    let cluster = Cluster::init_and_start(&tmp.path().join("pg"), &opts).unwrap();
    cluster
        .psql(
            "postgres",
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;",
        )
        .unwrap();

    std::fs::create_dir(&dir).unwrap();
    let issue = |cn: &str, spec: ClientSpec| {
        let spec = ClientSpec {
            common_name: Some(cn.into()),
            ..spec
        };
        ca.issue_client(&spec).unwrap()
    };
    let alice = issue("alice", ClientSpec::default());
    let bob = issue("bob", ClientSpec::default());
    let now = time::OffsetDateTime::now_utc();
    let expired = issue(
        "alice",
        ClientSpec {
            not_before: Some(now - time::Duration::days(2)),
            not_after: Some(now - time::Duration::days(1)),
            ..ClientSpec::default()
        },
    );
    let connect = |user: &str, stem: &str, cert: &crate::pki::IssuedCert| {
        let (crt, key) = cert.write(&dir, stem).unwrap();
        let conninfo = format!(
            "host=127.0.0.1 port={} dbname=postgres user={user} sslmode=verify-full \
             sslrootcert={ca_file} sslcert={} sslkey={}",
            cluster.port(),
            crt.display(),
            key.display()
        );
        tcp_psql(&conninfo, None, "SELECT current_user;")
    };

    assert_eq!(stdout(&connect("alice", "alice", &alice)), "alice");
    assert_eq!(stdout(&connect("bob", "bob", &bob)), "bob");
    // The certificate's CN must match the role.
    let mismatch = stderr(&connect("bob", "alice", &alice));
    assert!(
        mismatch.contains("certificate authentication failed"),
        "{mismatch}"
    );
    let old = stderr(&connect("alice", "expired", &expired));
    assert!(old.contains("expired"), "{old}");

    // Revoke bob; the server picks up the CRL on reload.
    let crl_path = cluster.data_dir().parent().unwrap().join("revoked.crl");
    std::fs::write(
        &crl_path,
        ca.crl(&[&bob], Duration::from_secs(600)).unwrap(),
    )
    .unwrap();
    let sql = format!(
        "ALTER SYSTEM SET ssl_crl_file = {}; SELECT pg_reload_conf();",
        conf::quote(crl_path.to_str().unwrap())
    );
    cluster.psql("postgres", &sql).unwrap();
    let revoked = eventually(Duration::from_secs(10), || {
        !connect("bob", "bob", &bob).status.success()
    });
    assert!(revoked, "bob's revoked certificate was still accepted");
    assert!(stderr(&connect("bob", "bob", &bob)).contains("revoked"));
    assert_eq!(stdout(&connect("alice", "alice", &alice)), "alice");
}

#[test]
fn restart_keeps_data_and_drop_stops_even_on_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster =
        Cluster::init_and_start(&tmp.path().join("pg"), &ClusterOptions::default()).unwrap();
    let port = cluster.port();
    cluster
        .psql(
            "postgres",
            "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7);",
        )
        .unwrap();
    let started = cluster
        .psql("postgres", "SELECT pg_postmaster_start_time();")
        .unwrap();

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster
            .psql("postgres", "SELECT n FROM kept;")
            .unwrap()
            .trim(),
        "7"
    );
    let restarted = cluster
        .psql("postgres", "SELECT pg_postmaster_start_time();")
        .unwrap();
    assert_ne!(started, restarted);

    cluster.stop().unwrap();
    assert!(!is_ready(port));
    assert!(cluster.psql("postgres", "SELECT 1;").is_err());
    cluster.stop().unwrap();
    cluster.start().unwrap();
    assert!(is_ready(port));

    // Without TLS there is nothing for a replica to connect with.
    let no_tls = Cluster::start_replica(&cluster, &tmp.path().join("replica"));
    assert!(matches!(no_tls, Err(DevkitError::Invalid(_))));

    let pid_file = cluster.data_dir().join("postmaster.pid");
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = cluster;
        panic!("a test failing while it holds a cluster");
    }));
    assert!(unwound.is_err());
    assert!(!is_ready(port));
    assert!(!pid_file.exists());
}

#[test]
fn a_broken_config_reports_the_server_log() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        extra_conf: vec!["shared_buffers = 'lots'".into()],
        ..ClusterOptions::default()
    };
    let err = Cluster::init_and_start(&tmp.path().join("pg"), &opts).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("shared_buffers"), "{text}");
}
