//! Everything pgcordon must refuse before a client reaches a backend session: plaintext, bad or
//! missing certificates, certificates without an identity, startup parameters it does not pass,
//! protocol tricks before TLS, silent clients, and wildcard listeners in the configuration.
//! Each refusal is checked from the client side (SQLSTATE and message, or a closed connection
//! without any PostgreSQL byte) and, where cheap, from PostgreSQL's side: pg_stat_activity for
//! the app role must not change, so a refused client caused no backend work.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use pgcordon_devkit::stack::{spiffe_id, tenant_cert, TENANT_A, TENANT_B};
use pgcordon_devkit::{CertAuthority, ClientSpec, IssuedCert};
use pgcordon_e2e::raw::{self, ALPN_POSTGRESQL};
use pgcordon_e2e::{client_tls, Harness, Tenant};
use pgcordon_tls::rustls::AlertDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

/// Transaction pooling without warm sessions: any backend work shows in pg_stat_activity.
const POOL_COLD: &str = "  mode: transaction\n  size: 5\n  min_idle: 0\n  acquire_timeout: 2s";
const DAY: Duration = Duration::from_secs(86_400);

/// Writes `cert` into the stack directory and returns (cert, key) paths.
fn write_cert(h: &Harness, cert: &IssuedCert, stem: &str) -> (PathBuf, PathBuf) {
    let dir = h.stack.dir.join("refusals");
    std::fs::create_dir_all(&dir).expect("cert dir");
    cert.write(&dir, stem).expect("write cert")
}

/// Tenant A's SPIFFE ID, valid only between `not_before` and `not_after`.
fn tenant_a_valid(ca: &CertAuthority, not_before: SystemTime, not_after: SystemTime) -> IssuedCert {
    ca.issue_client(&ClientSpec {
        san_uris: vec![spiffe_id(TENANT_A)],
        not_before: Some(not_before.into()),
        not_after: Some(not_after.into()),
        ..ClientSpec::default()
    })
    .expect("issue cert")
}

/// The identity a session runs with, read through pgcordon.
async fn identity_of(client: &tokio_postgres::Client) -> String {
    client
        .query_typed_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .expect("identity query")
        .get(0)
}

/// A working client after the refusals: the proxy is healthy, so refusals were not accidents.
async fn still_serves(h: &Harness, addr_port: u16, cert: &(PathBuf, PathBuf), tenant: &str) {
    let client = raw::connect_tls(&raw::pg_config(addr_port, "app"), h.client_tls(cert))
        .await
        .expect("a valid client connects after the refusals");
    assert_eq!(identity_of(&client).await, tenant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_pre_tls_tricks_are_refused_before_any_backend_work() {
    let h = raw::harness(POOL_COLD, "").await;
    let before = raw::backend_snapshot(&h);
    let port = h.addr.port();

    // tokio-postgres without TLS: FATAL 28000 telling what to do.
    let mut config = raw::pg_config(port, "app");
    config.ssl_mode(SslMode::Disable);
    let err = config
        .connect(NoTls)
        .await
        .err()
        .expect("plaintext refused");
    let (severity, code, message) = raw::db_error(&err);
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "28000"));
    assert!(
        message.contains("requires TLS with a client certificate"),
        "{message}"
    );

    // psql sslmode=disable: the same FATAL reaches libpq's user.
    let conninfo = format!("host=127.0.0.1 port={port} dbname=app user=api sslmode=disable");
    let (ok, _, stderr) = raw::psql(&conninfo, "SELECT 1", &[]).await;
    assert!(!ok, "psql succeeded in plaintext");
    assert!(stderr.contains("FATAL:"), "{stderr}");
    assert!(
        stderr.contains("pgcordon requires TLS with a client certificate"),
        "{stderr}"
    );

    // Raw: one ErrorResponse, then the connection is closed; the refusal is logged.
    let mut tcp = raw::tcp(h.addr).await;
    let local = tcp.local_addr().unwrap().port();
    tcp.write_all(&raw::app_startup()).await.unwrap();
    let reply = raw::read_message(&mut tcp).await.expect("an ErrorResponse");
    assert_eq!(reply.tag, b'E');
    assert_eq!(reply.error().severity, "FATAL");
    assert_eq!(reply.error().code, "28000");
    raw::expect_closed_silently(&mut tcp, "after the FATAL").await;
    raw::expect_refusal_logged(local, "plaintext").await;

    // Plaintext queued right behind SSLRequest (CVE-2021-23214 class): no 'S', closed.
    let mut tcp = raw::tcp(h.addr).await;
    let local = tcp.local_addr().unwrap().port();
    let mut injected = raw::SSL_REQUEST.to_vec();
    injected.extend_from_slice(&raw::app_startup());
    tcp.write_all(&injected).await.unwrap();
    raw::expect_closed_silently(&mut tcp, "plaintext behind SSLRequest").await;
    raw::expect_refusal_logged(local, "plaintext_injection").await;

    // Oversized startup packets: refused on the length alone, before the body arrives.
    for len in [20_000i32, 10_001] {
        let mut tcp = raw::tcp(h.addr).await;
        let local = tcp.local_addr().unwrap().port();
        let mut head = len.to_be_bytes().to_vec();
        head.extend_from_slice(&raw::PROTOCOL_3_0.to_be_bytes());
        tcp.write_all(&head).await.unwrap();
        raw::expect_closed_silently(&mut tcp, &format!("startup length {len}")).await;
        raw::expect_refusal_logged(local, "bad_packet").await;
    }

    // The same length inside TLS, after a valid handshake.
    let tls = raw::tls_config(&h.stack.files.ca, Some(h.tenant_files(Tenant::A)), &[]);
    let tcp = raw::tcp(h.addr).await;
    let local = tcp.local_addr().unwrap().port();
    let mut stream = raw::tls_after_ssl_request(tcp, tls)
        .await
        .expect("handshake");
    let mut head = 20_000i32.to_be_bytes().to_vec();
    head.extend_from_slice(&raw::PROTOCOL_3_0.to_be_bytes());
    stream.write_all(&head).await.unwrap();
    stream.flush().await.unwrap();
    // Inside TLS the client is told why (as PostgreSQL does), then the connection closes.
    let refusal = raw::read_message(&mut stream)
        .await
        .expect("an ErrorResponse");
    let fields = refusal.error();
    assert_eq!(
        (refusal.tag, fields.severity.as_str(), fields.code.as_str()),
        (b'E', "FATAL", "08P01"),
        "{fields:?}"
    );
    assert!(fields.message.contains("over the limit"), "{fields:?}");
    raw::expect_closed_silently(&mut stream, "after the 08P01").await;
    raw::expect_refusal_logged(local, "bad_packet").await;

    raw::assert_no_backend_work(&h, &before, "refused clients");
    still_serves(&h, port, h.tenant_files(Tenant::A), TENANT_A).await;
    assert_ne!(
        raw::backend_snapshot(&h),
        before,
        "the probe misses backend work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_fail_verification_are_refused_in_the_handshake() {
    let h = raw::harness(POOL_COLD, "").await;
    let ca = &h.stack.ca;
    let now = SystemTime::now();
    let foreign = CertAuthority::new("someone else's CA").unwrap();
    let foreign_cert = write_cert(&h, &tenant_cert(&foreign, TENANT_A).unwrap(), "foreign");
    let expired = write_cert(&h, &tenant_a_valid(ca, now - 2 * DAY, now - DAY), "expired");
    let future = write_cert(&h, &tenant_a_valid(ca, now + DAY, now + 2 * DAY), "future");
    let revoked_cert = tenant_cert(ca, TENANT_A).unwrap();
    let revoked = write_cert(&h, &revoked_cert, "revoked");
    let kept = write_cert(&h, &tenant_cert(ca, TENANT_B).unwrap(), "kept");

    // A second proxy on the same stack whose configuration lists a CRL revoking one cert.
    let crl = ca.crl(&[&revoked_cert], Duration::from_secs(3600)).unwrap();
    let crl_path = h.stack.dir.join("refusals-ca.crl");
    std::fs::write(&crl_path, crl).unwrap();
    let crl_line = format!("crl: [{}]", crl_path.display());
    let with_crl = raw::start_variant(&h, POOL_COLD, |c| raw::with_tls_lines(c, &[crl_line])).await;

    let before = raw::backend_snapshot(&h);
    use AlertDescription as Alert;
    let cases = [
        (
            None,
            h.addr,
            "no_client_certificate",
            Alert::CertificateRequired,
        ),
        (
            Some(&foreign_cert),
            h.addr,
            "unknown_issuer",
            Alert::UnknownCA,
        ),
        (Some(&expired), h.addr, "expired", Alert::CertificateExpired),
        (
            Some(&future),
            h.addr,
            "not_yet_valid",
            Alert::CertificateExpired,
        ),
        (
            Some(&revoked),
            with_crl.addr,
            "revoked",
            Alert::CertificateRevoked,
        ),
    ];
    for (cert, addr, reason, alert) in cases {
        let name = reason;
        let tls = raw::tls_config(&h.stack.files.ca, cert, &[]);
        let refusal = raw::attempt_tls_startup(addr, tls).await;
        assert!(
            refusal.received().is_empty(),
            "{name}: got PostgreSQL bytes: {refusal:?}"
        );
        assert_eq!(refusal.alert(), Some(alert), "{name}: {refusal:?}");
        raw::expect_refusal_logged(refusal.local_port, reason).await;

        // tokio-postgres sees a failed connection, never a database error.
        let mut config = raw::pg_config(addr.port(), "app");
        config.connect_timeout(Duration::from_secs(5));
        let tls = client_tls(&h.stack.files.ca, cert);
        let err = raw::connect_tls(&config, tls).await.err();
        let err = err.unwrap_or_else(|| panic!("{name}: tokio-postgres connected"));
        assert!(err.as_db_error().is_none(), "{name}: {err:?}");
    }
    raw::assert_no_backend_work(&h, &before, "refused handshakes");

    // The CRL is the reason: the revoked cert works where no CRL is configured, and another
    // cert of the same CA works where it is.
    still_serves(&h, h.addr.port(), &revoked, TENANT_A).await;
    still_serves(&h, with_crl.addr.port(), &kept, TENANT_B).await;
    still_serves(
        &h,
        with_crl.addr.port(),
        h.tenant_files(Tenant::A),
        TENANT_A,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refusals_carry_the_documented_sqlstate_and_message() {
    let h = raw::harness(POOL_COLD, "").await;
    let port = h.addr.port();
    let ca = &h.stack.ca;
    let cn_only = ca
        .issue_client(&ClientSpec {
            common_name: Some(format!("tenant {TENANT_A}")),
            ..ClientSpec::default()
        })
        .unwrap();
    let other_domain = ca
        .issue_client(&ClientSpec {
            san_uris: vec![format!("spiffe://attacker.test/tenant/{TENANT_A}")],
            ..ClientSpec::default()
        })
        .unwrap();
    let no_uri = write_cert(&h, &cn_only, "cn-only");
    let wrong_domain = write_cert(&h, &other_domain, "other-domain");
    let a = h.tenant_files(Tenant::A).clone();
    let before = raw::backend_snapshot(&h);

    // Certificates that verify but carry no acceptable identity: FATAL 28000 naming the problem.
    for (name, cert) in [
        ("no SAN URI", &no_uri),
        ("other trust domain", &wrong_domain),
    ] {
        let err = raw::connect_tls(&raw::pg_config(port, "app"), h.client_tls(cert))
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: connected without an identity"));
        let (severity, code, message) = raw::db_error(&err);
        assert_eq!(
            (severity.as_str(), code.as_str()),
            ("FATAL", "28000"),
            "{name}"
        );
        assert!(
            message.contains("does not carry an acceptable identity")
                && message.contains("SAN URI")
                && message.contains("identity pattern"),
            "{name}: {message}"
        );
    }

    // A database other than the configured one: 3D000.
    let err = raw::connect_tls(&raw::pg_config(port, "postgres"), h.client_tls(&a))
        .await
        .expect_err("unknown database refused");
    let (severity, code, message) = raw::db_error(&err);
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "3D000"));
    assert_eq!(message, "database \"postgres\" does not exist");

    // `options` that would set the identity, in every spelling PostgreSQL accepts: 42501.
    for options in [
        format!("-c app.current_user_id={TENANT_B}"),
        format!("-capp.current_user_id={TENANT_B}"),
        format!("--app.current_user_id={TENANT_B}"),
        format!("-c APP.Current_User_Id={TENANT_B}"),
        format!("-c search_path=public -c app.current_user_id={TENANT_B}"),
    ] {
        let mut config = raw::pg_config(port, "app");
        config.options(&options);
        let err = raw::connect_tls(&config, h.client_tls(&a))
            .await
            .err()
            .unwrap_or_else(|| panic!("options {options:?} accepted"));
        let (severity, code, message) = raw::db_error(&err);
        assert_eq!(
            (severity.as_str(), code.as_str()),
            ("FATAL", "42501"),
            "{options}"
        );
        assert!(
            message.contains("\"app.current_user_id\" is managed by pgcordon"),
            "{message}"
        );
    }
    let (ok, _, stderr) = raw::psql(
        &h.conninfo(Tenant::A),
        "SELECT current_setting('app.current_user_id')",
        &[("PGOPTIONS", &format!("-c app.current_user_id={TENANT_B}"))],
    )
    .await;
    assert!(!ok, "psql with PGOPTIONS setting the identity succeeded");
    assert!(
        stderr.contains("\"app.current_user_id\" is managed by pgcordon"),
        "{stderr}"
    );

    // Raw startup parameters: the protected setting itself (42501) and an unknown one (0A000).
    let cases = [
        (
            "app.current_user_id",
            TENANT_B,
            "42501",
            "is managed by pgcordon",
        ),
        (
            "x_unknown",
            "1",
            "0A000",
            "startup parameter \"x_unknown\" is not supported",
        ),
    ];
    for (param, value, want_code, want_message) in cases {
        let tls = raw::tls_config(&h.stack.files.ca, Some(&a), &[]);
        let mut stream = raw::tls_after_ssl_request(raw::tcp(h.addr).await, tls)
            .await
            .unwrap();
        let startup = raw::startup_message(&[("user", "api"), ("database", "app"), (param, value)]);
        stream.write_all(&startup).await.unwrap();
        stream.flush().await.unwrap();
        let messages = raw::read_until_ready_or_error(&mut stream).await.unwrap();
        assert_eq!(messages.len(), 1, "{param}: {messages:?}");
        let fields = messages[0].error();
        assert_eq!(
            (fields.severity.as_str(), fields.code.as_str()),
            ("FATAL", want_code)
        );
        assert!(fields.message.contains(want_message), "{param}: {fields:?}");
        raw::expect_closed_silently(&mut stream, param).await;
    }

    // libpq's replication=database is a startup parameter pgcordon does not pass: 0A000.
    let conninfo = format!("{} replication=database", h.conninfo(Tenant::A));
    let (ok, _, stderr) = raw::psql(&conninfo, "SELECT 1", &[]).await;
    assert!(!ok, "replication connection accepted");
    assert!(
        stderr.contains("startup parameter \"replication\" is not supported"),
        "{stderr}"
    );

    raw::assert_no_backend_work(&h, &before, "refused startups");
    still_serves(&h, port, &a, TENANT_A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_and_direct_tls_openings() {
    let h = raw::harness(POOL_COLD, "").await;
    let ca = &h.stack.files.ca;
    let a = h.tenant_files(Tenant::A).clone();

    // GSSENCRequest is declined with 'N'; SSLRequest on the same socket then works.
    let mut tcp = raw::tcp(h.addr).await;
    tcp.write_all(&raw::GSSENC_REQUEST).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');
    let tls = raw::tls_config(ca, Some(&a), &[]);
    let mut stream = raw::tls_after_ssl_request(tcp, tls)
        .await
        .expect("TLS after 'N'");
    stream.write_all(&raw::app_startup()).await.unwrap();
    let greeting = raw::read_until_ready_or_error(&mut stream).await.unwrap();
    assert!(
        greeting.iter().any(raw::Message::is_auth_ok),
        "{greeting:?}"
    );
    assert_eq!(greeting.last().map(|m| m.tag), Some(b'Z'), "{greeting:?}");
    let who = raw::simple_query(&mut stream, "SELECT current_setting('app.current_user_id')");
    assert_eq!(who.await.unwrap(), Ok(vec![Some(TENANT_A.to_owned())]));

    // Direct TLS with ALPN postgresql: AuthenticationOk, and the identity is in force.
    let tls = raw::tls_config(ca, Some(&a), &[ALPN_POSTGRESQL]);
    let mut stream = raw::direct_tls(raw::tcp(h.addr).await, tls)
        .await
        .expect("direct TLS");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_POSTGRESQL));
    stream.write_all(&raw::app_startup()).await.unwrap();
    let greeting = raw::read_until_ready_or_error(&mut stream).await.unwrap();
    assert!(
        greeting.iter().any(raw::Message::is_auth_ok),
        "{greeting:?}"
    );
    let who = raw::simple_query(&mut stream, "SELECT current_setting('app.current_user_id')");
    assert_eq!(who.await.unwrap(), Ok(vec![Some(TENANT_A.to_owned())]));

    // Direct TLS without ALPN: refused after the handshake, nothing answered.
    let before = raw::backend_snapshot(&h);
    let tcp = raw::tcp(h.addr).await;
    let local = tcp.local_addr().unwrap().port();
    let tls = raw::tls_config(ca, Some(&a), &[]);
    if let Ok(mut stream) = raw::direct_tls(tcp, tls).await {
        let _ = stream.write_all(&raw::app_startup()).await;
        let _ = stream.flush().await;
        raw::expect_closed_silently(&mut stream, "direct TLS without ALPN").await;
    }
    raw::expect_refusal_logged(local, "no_alpn").await;

    // Direct TLS offering only another protocol: no common ALPN, refused in the handshake.
    let tcp = raw::tcp(h.addr).await;
    let local = tcp.local_addr().unwrap().port();
    let tls = raw::tls_config(ca, Some(&a), &[b"http/1.1"]);
    let err = raw::direct_tls(tcp, tls)
        .await
        .expect_err("ALPN http/1.1 refused");
    assert_eq!(
        raw::alert_of(&err),
        Some(AlertDescription::NoApplicationProtocol),
        "{err:?}"
    );
    raw::expect_refusal_logged(local, "no_alpn").await;
    raw::assert_no_backend_work(&h, &before, "refused direct TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_after_the_handshake_timeout() {
    let h = raw::harness(POOL_COLD, "").await;
    let lines = ["handshake_timeout: 1s".to_owned()];
    let quick = raw::start_variant(&h, POOL_COLD, |c| raw::with_tls_lines(c, &lines)).await;

    // A session that completed its handshake in time is not affected by the timeout.
    let a = h.tenant_files(Tenant::A).clone();
    let established = raw::connect_tls(&raw::pg_config(quick.addr.port(), "app"), h.client_tls(&a))
        .await
        .expect("connect to the 1s-timeout proxy");

    // Silent TCP clients on both proxies; and one that stops after the 'S'.
    let start = std::time::Instant::now();
    let mut silent = raw::tcp(quick.addr).await;
    let silent_port = silent.local_addr().unwrap().port();
    let mut patient = raw::tcp(h.addr).await; // default handshake_timeout: 5s
    let mut stalled = raw::tcp(quick.addr).await;
    stalled.write_all(&raw::SSL_REQUEST).await.unwrap();
    assert_eq!(stalled.read_u8().await.unwrap(), b'S');

    raw::expect_closed_silently(&mut silent, "silent client").await;
    let lived = start.elapsed();
    assert!(
        lived >= Duration::from_millis(990),
        "closed after {lived:?}, before the 1s handshake timeout"
    );
    raw::expect_refusal_logged(silent_port, "timeout").await;
    raw::expect_closed_silently(&mut stalled, "client stalled after S").await;

    // The proxy with the default 5s is still waiting for its silent client.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), patient.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "the 5s-timeout proxy closed a silent client early: {early:?}"
    );

    // More than the handshake timeout has passed since the established session's handshake.
    assert_eq!(identity_of(&established).await, TENANT_A);
}

#[test]
fn wildcard_listen_addresses_are_refused_by_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = |listen: &str, allow: &str| {
        format!(
            "listen:\n  - address: {listen}\n{allow}\
             tls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n\
             identity:\n  from: san_uri\n  \
             pattern: '^spiffe://pgcordon\\.test/tenant/([0-9a-f-]{{36}})$'\n\
             upstream:\n  database: app\n  user: pgcordon_app\n  password_file: pw\n  \
             primary: 127.0.0.1:5432\n  tls:\n    ca: ca.crt\n"
        )
    };
    let load = |text: String| {
        let path = dir.path().join("pgcordon.yaml");
        std::fs::write(&path, text).unwrap();
        pgcordon_config::load(&path)
    };

    for listen in ["0.0.0.0:6432", "\"[::]:6432\""] {
        let err = load(config(listen, "")).err();
        let err = err.unwrap_or_else(|| panic!("{listen} accepted without allow_wildcard"));
        let text = err.to_string();
        assert!(text.contains("listen[0].address"), "{text}");
        assert!(text.contains("allow_wildcard"), "{text}");
        assert_eq!(err.problems().len(), 1, "{text}");
    }
    // The same file loads when wildcards are allowed, and with a specific address.
    let allowed = load(config("0.0.0.0:6432", "allow_wildcard: true\n")).expect("allowed");
    assert!(allowed.allow_wildcard);
    load(config("127.0.0.1:6432", "")).expect("a loopback address loads");
}

/// A resumed TLS session skips certificate verification; pgcordon still refuses it once the
/// certificate it carries has expired (the full handshake would fail with an alert instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_with_a_certificate_expired_since_is_refused() {
    let h = raw::harness(POOL_COLD, "").await;
    let now = SystemTime::now();
    let short = tenant_a_valid(&h.stack.ca, now - DAY, now + Duration::from_secs(3));
    let short = write_cert(&h, &short, "short-lived");
    // One client configuration, so both connections share its session cache.
    let tls = h.client_tls(&short);
    let config = raw::pg_config(h.addr.port(), "app");

    let first = raw::connect_tls(&config, tls.clone())
        .await
        .expect("the certificate is still valid");
    assert_eq!(identity_of(&first).await, TENANT_A);
    drop(first);

    let expires = now + Duration::from_secs(4);
    tokio::time::sleep(
        expires
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    let err = raw::connect_tls(&config, tls)
        .await
        .expect_err("an expired certificate is refused, resumed or not");
    let (severity, code, message) = raw::db_error(&err);
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "28000"),
        "a resumed handshake reaches startup, where the expiry is checked: {err:?}"
    );
    assert!(message.contains("expired"), "{message}");
}
