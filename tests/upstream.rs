//! pgcordon's side towards PostgreSQL, against real servers: SCRAM-SHA-256-PLUS by default and
//! plain SCRAM when channel binding is disabled, a wrong password (08001 for clients, recovery
//! when the rotated file is right again), a server that asks for MD5, and a server that is down.

use std::path::Path;
use std::time::{Duration, Instant};

use pgcordon_devkit::stack::APP_ROLE;
use pgcordon_devkit::{CertAuthority, Cluster, ClusterOptions};
use pgcordon_e2e::raw;
use pgcordon_e2e::{Harness, Tenant, POOL_TX};
use pgcordon_upstream::{
    connect, ChannelBindingPolicy, PasswordSource, Secret, UpstreamError, UpstreamSettings,
};
use tokio::io::AsyncWriteExt;

const CLIENT_MESSAGE_08001: &str = "pgcordon: could not open a session to the database";

/// Settings for connecting to 127.0.0.1:`port` with verify-full against `ca` as localhost.
fn settings(ca: &Path, port: u16, user: &str, database: &str, pw: &Path) -> UpstreamSettings {
    let (tls, server_name) = pgcordon_tls::upstream_config(&pgcordon_tls::UpstreamTlsSettings {
        ca: ca.to_path_buf(),
        server_name: "localhost".into(),
        client_cert: None,
    })
    .expect("upstream TLS config");
    UpstreamSettings {
        host: "127.0.0.1".into(),
        port,
        database: database.into(),
        user: user.into(),
        password: PasswordSource::File(pw.to_path_buf()),
        tls,
        server_name,
        connect_timeout: Duration::from_secs(10),
        channel_binding: ChannelBindingPolicy::Prefer,
        allow_cleartext_password: false,
        allow_md5_password: false,
        startup_params: vec![("application_name".into(), "pgcordon-e2e".into())],
    }
}

fn stack_settings(h: &Harness) -> UpstreamSettings {
    let f = &h.stack.files;
    settings(&f.ca, h.stack.cluster.port(), APP_ROLE, "app", &f.password)
}

/// What PostgreSQL says about the session with this pid: "user|ssl".
fn server_view(cluster: &Cluster, db: &str, pid: i32) -> String {
    let sql = format!(
        "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.pid = {pid}"
    );
    cluster
        .psql(db, &sql)
        .expect("server view")
        .trim()
        .to_owned()
}

/// Polls `sql` (as superuser, database app) until it prints `want`, for at most 10 s.
async fn wait_for_admin(h: &Harness, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = h.admin(sql);
        if got.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} gave {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn identity_of(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let rows = client
        .simple_query("SELECT current_setting('app.current_user_id')")
        .await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("one row"))
}

/// Checks an "upstream unavailable" error as a client sees it (its severity has its own test).
fn check_08001(err: &tokio_postgres::Error, secrets: &[&str]) {
    let (_, code, message) = raw::db_error(err);
    assert_eq!(code, "08001", "{err:?}");
    assert_eq!(message, CLIENT_MESSAGE_08001);
    for secret in secrets {
        assert!(!message.contains(secret), "client message leaks {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_by_default_plain_scram_when_disabled() {
    let h = raw::harness(POOL_TX, "").await;
    let mut s = stack_settings(&h);

    for (policy, bound) in [
        (ChannelBindingPolicy::Prefer, true),
        (ChannelBindingPolicy::Require, true),
        (ChannelBindingPolicy::Disable, false),
    ] {
        s.channel_binding = policy;
        let backend = connect(&s)
            .await
            .unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        assert_eq!(backend.channel_bound, bound, "{policy:?}");
        assert_eq!(backend.addr.port(), h.stack.cluster.port());
        // PostgreSQL knows this session: our role, over TLS.
        let view = server_view(&h.stack.cluster, "app", backend.process_id);
        assert_eq!(view, format!("{APP_ROLE}|t"), "{policy:?}");
    }

    // The server checks the proof: a wrong password is refused by PostgreSQL with 28P01.
    s.channel_binding = ChannelBindingPolicy::Prefer;
    s.password = PasswordSource::Value(Secret::new("not the password"));
    match connect(&s).await {
        Err(UpstreamError::Server { code, message, .. }) => {
            assert_eq!(code, "28P01", "{message}");
            assert!(
                message.contains("password authentication failed"),
                "{message}"
            );
        }
        other => panic!("wrong password: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gives_08001_and_the_rotated_file_is_reread() {
    let h = raw::harness(POOL_TX, "").await;
    let password_file = h.stack.files.password.clone();
    let a = h.connect(Tenant::A).await;
    assert_eq!(identity_of(&a).await.unwrap(), Tenant::A.id());

    // Wrong password on disk, and no upstream session left to reuse.
    std::fs::write(&password_file, "wrong-password\n").unwrap();
    h.admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pgcordon_app'",
    );
    let count = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgcordon_app'";
    wait_for_admin(&h, count, "0").await;

    let secrets = [h.stack.password.as_str(), "wrong-password"];
    let err = identity_of(&a)
        .await
        .expect_err("query without an upstream session");
    check_08001(&err, &secrets);
    // A new client still completes startup, and gets the same error on its first query.
    let b = h.connect(Tenant::B).await;
    let err = identity_of(&b)
        .await
        .expect_err("query without an upstream session");
    check_08001(&err, &secrets);

    // The operator's log says why, with the server's own code.
    let upstream = format!("127.0.0.1:{}", h.stack.cluster.port());
    let line = raw::wait_for_log(
        &["cannot open an upstream session", &upstream],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        line.contains("28P01") && line.contains("password authentication failed"),
        "{line}"
    );

    // Directly: the connector reports the server's refusal.
    match connect(&stack_settings(&h)).await {
        Err(UpstreamError::Server { code, .. }) => assert_eq!(code, "28P01"),
        other => panic!("wrong password file: {other:?}"),
    }

    // Restore the file: the next session is opened with the password read again.
    std::fs::write(&password_file, format!("{}\n", h.stack.password)).unwrap();
    assert_eq!(
        identity_of(&a).await.expect("after restore"),
        Tenant::A.id()
    );
    assert_eq!(
        identity_of(&b).await.expect("after restore"),
        Tenant::B.id()
    );
    let c = h.connect(Tenant::A).await;
    assert_eq!(identity_of(&c).await.unwrap(), Tenant::A.id());
    let sessions: u32 = h.admin(count).trim().parse().unwrap();
    assert!(sessions >= 1, "no new upstream session after the restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_md5_is_refused_unless_allowed() {
    raw::capture_logs();
    let dir = tempfile::Builder::new()
        .prefix("pgcordon-e2e-md5")
        .tempdir()
        .unwrap();
    let root = dir.path().to_path_buf();
    let password = "md5-test-password";
    let (cluster, ca_path, pw_path) = tokio::task::spawn_blocking(move || {
        let ca = CertAuthority::new("md5 test CA").unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let ca_path = root.join("ca.crt");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let pw_path = root.join("password");
        std::fs::write(&pw_path, format!("{password}\n")).unwrap();
        let options = ClusterOptions {
            server_tls: Some((server.cert_pem.clone(), server.key_pem.clone())),
            hba: [
                "local all all trust",
                "hostssl all all 127.0.0.1/32 md5",
                "hostnossl all all 0.0.0.0/0 reject",
            ]
            .map(String::from)
            .to_vec(),
            extra_conf: vec!["password_encryption = 'md5'".into()],
            ..ClusterOptions::default()
        };
        let cluster = Cluster::init_and_start(&root.join("pg"), &options).unwrap();
        cluster
            .psql(
                "postgres",
                &format!("CREATE ROLE md5_app LOGIN PASSWORD '{password}'"),
            )
            .unwrap();
        (cluster, ca_path, pw_path)
    })
    .await
    .unwrap();
    let stored = cluster
        .psql(
            "postgres",
            "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5_app'",
        )
        .unwrap();
    assert_eq!(
        stored.trim(),
        "md5",
        "the role's password is not stored as MD5"
    );

    let mut s = settings(&ca_path, cluster.port(), "md5_app", "postgres", &pw_path);
    let addr = format!("127.0.0.1:{}", cluster.port());
    for allow_cleartext in [false, true] {
        s.allow_cleartext_password = allow_cleartext;
        match connect(&s).await {
            Err(e @ UpstreamError::MethodRefused { .. }) => {
                let text = e.to_string();
                assert!(text.contains("MD5") && text.contains(&addr), "{text}");
            }
            other => panic!("MD5 not allowed (cleartext {allow_cleartext}): {other:?}"),
        }
    }

    s.allow_cleartext_password = false;
    s.allow_md5_password = true;
    let backend = connect(&s).await.expect("MD5 allowed");
    assert!(!backend.channel_bound);
    assert_eq!(
        server_view(&cluster, "postgres", backend.process_id),
        "md5_app|t"
    );

    // With channel binding required, even an allowed MD5 request is refused: only
    // SCRAM-SHA-256-PLUS binds the login to this TLS session.
    s.channel_binding = ChannelBindingPolicy::Require;
    match connect(&s).await {
        Err(e @ UpstreamError::ChannelBindingRequired { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}");
        }
        other => panic!("MD5 with channel binding required: {other:?}"),
    }
    s.channel_binding = ChannelBindingPolicy::Prefer;

    // The MD5 answer is checked by the server: a wrong password still fails.
    let right_password = std::mem::replace(
        &mut s.password,
        PasswordSource::Value(Secret::new("not the password")),
    );
    match connect(&s).await {
        Err(UpstreamError::Server { code, .. }) => assert_eq!(code, "28P01"),
        other => panic!("MD5 with a wrong password: {other:?}"),
    }
    s.password = right_password;
    drop(backend);

    // A server that lets the role in without asking anything (trust): accepted unless channel
    // binding is required, since then nothing proves the server holds the credentials.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let trusting = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
    tokio::task::block_in_place(|| {
        std::fs::write(&hba, trusting).expect("rewrite pg_hba.conf");
        cluster
            .psql("postgres", "SELECT pg_reload_conf()")
            .expect("reload");
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.allow_md5_password = false;
    let trusted = connect(&s)
        .await
        .expect("trust without channel binding required");
    assert!(!trusted.channel_bound);
    s.channel_binding = ChannelBindingPolicy::Require;
    match connect(&s).await {
        Err(UpstreamError::ChannelBindingRequired { .. }) => {}
        other => panic!("trust with channel binding required: {other:?}"),
    }
    drop(trusted);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_named_and_clients_get_08001() {
    let mut h = raw::harness(POOL_TX, "").await;
    let a = h.connect(Tenant::A).await;
    assert_eq!(identity_of(&a).await.unwrap(), Tenant::A.id());
    let port = h.stack.cluster.port();
    tokio::task::block_in_place(|| h.stack.cluster.stop()).expect("stop PostgreSQL");

    // Directly: the error names the address that refused.
    match connect(&stack_settings(&h)).await {
        Err(e @ UpstreamError::Connect { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        }
        other => panic!("connect to a stopped server: {other:?}"),
    }

    // Through pgcordon: the connected client and a new one get 08001 on their next query.
    let err = identity_of(&a)
        .await
        .expect_err("query while PostgreSQL is down");
    check_08001(&err, &[]);
    let b = h.connect(Tenant::B).await;
    let err = identity_of(&b)
        .await
        .expect_err("query while PostgreSQL is down");
    check_08001(&err, &[]);

    // A proxy that never reached the server cannot greet a client: 08001 at startup, then the
    // connection is closed (so the severity must be FATAL; checked at the end).
    let fresh = raw::start_variant(&h, POOL_TX, |c| c.replace("min_idle: 1", "min_idle: 0")).await;
    let tls = raw::tls_config(&h.stack.files.ca, Some(h.tenant_files(Tenant::A)), &[]);
    let mut stream = raw::tls_after_ssl_request(raw::tcp(fresh.addr).await, tls)
        .await
        .unwrap();
    stream.write_all(&raw::app_startup()).await.unwrap();
    let answer = raw::read_until_ready_or_error(&mut stream).await.unwrap();
    assert_eq!(answer.len(), 1, "{answer:?}");
    let startup_error = answer[0].error();
    assert_eq!(startup_error.code, "08001", "{startup_error:?}");
    assert_eq!(startup_error.message, CLIENT_MESSAGE_08001);
    let closed = raw::wait_closed(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(closed.received.is_empty(), "{closed:?}");

    // PostgreSQL back on the same port: the same client sessions work again.
    tokio::task::block_in_place(|| h.stack.cluster.start()).expect("start PostgreSQL");
    assert_eq!(
        h.stack.cluster.port(),
        port,
        "PostgreSQL came back on another port"
    );
    assert_eq!(
        identity_of(&a).await.expect("after restart"),
        Tenant::A.id()
    );
    assert_eq!(
        identity_of(&b).await.expect("after restart"),
        Tenant::B.id()
    );
    let tls = h.client_tls(h.tenant_files(Tenant::B));
    let c = raw::connect_tls(&raw::pg_config(fresh.addr.port(), "app"), tls)
        .await
        .expect("the fresh proxy greets clients once the server is up");
    assert_eq!(identity_of(&c).await.unwrap(), Tenant::B.id());

    assert_eq!(
        startup_error.severity, "FATAL",
        "an error that precedes the close of a starting connection"
    );
}

/// The session goes on after an 08001 (ReadyForQuery follows, the next query is answered), so
/// the error must be an ERROR: FATAL tells a client its session is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_unavailable_on_a_continuing_session_is_an_error_not_fatal() {
    let mut h = raw::harness(POOL_TX, "").await;
    let tls = raw::tls_config(&h.stack.files.ca, Some(h.tenant_files(Tenant::A)), &[]);
    let mut stream = raw::tls_after_ssl_request(raw::tcp(h.addr).await, tls)
        .await
        .unwrap();
    stream.write_all(&raw::app_startup()).await.unwrap();
    let greeting = raw::read_until_ready_or_error(&mut stream).await.unwrap();
    assert_eq!(greeting.last().map(|m| m.tag), Some(b'Z'), "{greeting:?}");
    let sql = "SELECT current_setting('app.current_user_id')";
    let first = raw::simple_query(&mut stream, sql).await.unwrap();
    assert_eq!(first, Ok(vec![Some(Tenant::A.id().to_owned())]));

    tokio::task::block_in_place(|| h.stack.cluster.stop()).expect("stop PostgreSQL");
    // Each answer is read through its ReadyForQuery: ErrorResponse, then 'Z', session open.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = raw::simple_query(&mut stream, sql)
            .await
            .expect("an answer and 'Z'");
        let fields = answer.expect_err("no upstream, no rows");
        assert_eq!(fields.code, "08001", "{fields:?}");
        assert_eq!(fields.message, CLIENT_MESSAGE_08001);
        answers.push(fields.severity);
    }
    tokio::task::block_in_place(|| h.stack.cluster.start()).expect("start PostgreSQL");
    let after = raw::simple_query(&mut stream, sql).await.unwrap();
    assert_eq!(
        after,
        Ok(vec![Some(Tenant::A.id().to_owned())]),
        "same session after restart"
    );
    assert_eq!(
        answers,
        ["ERROR", "ERROR"],
        "severity of 08001 on a session that continues"
    );
}
