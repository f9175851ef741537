//! Operating pgcordon, end to end: the real binary's admin listener (metrics parsed with a real
//! Prometheus text-format parser, the `prometheus-parse` crate; health and readiness), its audit
//! trail (JSON lines parsed with serde_json), live certificate rotation and revocation (in-process
//! `Reloader::reload`, SIGHUP and the file watch on the binary), the SIGTERM drain, and secrets
//! kept out of logs and the audit trail. Real PostgreSQL, real TLS, real clients throughout.
//!
//! The binary tests need `target/<profile>/pgcordon`: `cargo test --workspace` builds it; run
//! `cargo build -p pgcordon` first when running this test binary alone.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgcordon_devkit::stack::{tenant_cert, TENANT_A, TENANT_B};
use pgcordon_devkit::{CertAuthority, ClientSpec, IssuedCert};
use pgcordon_e2e::ops_kit::{
    free_addr, presented_server_cert, replace_file, Binary, ConfigEdit, Deadline, OpsStack,
    RawSession, SecretVolume, StartupFailure,
};
use pgcordon_e2e::{launch, raw, sqlstate, RunningProxy, Tenant};
use pgcordon_tls::rustls::AlertDescription;
use prometheus_parse::{Sample, Value};
use serde_json::Value as Json;

// ---- reading what pgcordon exports ---------------------------------------------------------

/// One scrape of `/metrics`, parsed by prometheus-parse.
struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
        assert!(
            !scrape.samples.is_empty(),
            "no samples parsed from:\n{text}"
        );
        Metrics {
            samples: scrape.samples,
            text: text.to_owned(),
        }
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of a counter, gauge or untyped sample, if the series exists.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match &self.find(name, labels)?.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            other => panic!("{name} is not a single value: {other:?}"),
        }
    }

    /// The value of a series that must exist.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let related: Vec<&str> = self.text.lines().filter(|l| l.starts_with(name)).collect();
            panic!("no series {name}{labels:?}; exported: {related:#?}")
        })
    }

    /// A labelled histogram's observation count (its `+Inf` bucket).
    fn histogram_count_labelled(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = self
            .find(name, labels)
            .unwrap_or_else(|| panic!("no histogram {name}{labels:?}"));
        match &sample.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map(|b| b.count)
                .unwrap_or_else(|| panic!("{name} has no +Inf bucket")),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// A histogram's observation count: its `+Inf` bucket, checked against `_count`.
    fn histogram_count(&self, name: &str) -> f64 {
        let sample = self
            .find(name, &[])
            .unwrap_or_else(|| panic!("no histogram {name}"));
        let Value::Histogram(buckets) = &sample.value else {
            panic!("{name} is not a histogram: {:?}", sample.value);
        };
        let inf = buckets
            .iter()
            .find(|b| b.less_than == f64::INFINITY)
            .unwrap_or_else(|| panic!("{name} has no +Inf bucket"))
            .count;
        assert_eq!(self.get(&format!("{name}_count"), &[]), inf, "{name}_count");
        inf
    }
}

const ATTEMPTS: &str = "pgcordon_client_connection_attempts_total";
const RELOADS: &str = "pgcordon_reloads_total";
const LAST_RELOAD_OK: &str = "pgcordon_last_reload_successful";

async fn scrape(binary: &Binary) -> Metrics {
    let response = binary.get("/metrics").await;
    assert_eq!(response.status, 200, "/metrics: {response:?}");
    Metrics::parse(&response.body)
}

/// The metrics of an in-process proxy, rendered as `/metrics` would and parsed back.
fn scrape_in_process(running: &RunningProxy) -> Metrics {
    Metrics::parse(&running.obs.metrics.render())
}

/// The audit file's complete lines (a line still being appended is left for the next read),
/// each parsed as a JSON object; every line must be one.
fn audit_lines(path: &Path) -> Vec<Json> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .filter(|l| !l.is_empty())
        .map(|line| {
            let value: Json = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
            assert!(value.is_object(), "audit line is not an object: {line}");
            // `ts` and `event` come first, in that order.
            assert!(line.starts_with("{\"ts\":\""), "ts first: {line}");
            let after_ts = &line[line[7..].find('"').map_or(0, |i| i + 8)..];
            assert!(
                after_ts.starts_with(",\"event\":\""),
                "event second: {line}"
            );
            value
        })
        .collect()
}

fn events<'a>(lines: &'a [Json], event: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// Polls the audit file until a line with `event` (and `conn`, if given) appears.
async fn wait_for_audit(path: &Path, event: &str, conn: Option<u64>) -> Json {
    let deadline = Deadline::new(format!("an audit `{event}` line"), Duration::from_secs(10));
    loop {
        let lines = audit_lines(path);
        if let Some(line) = lines
            .iter()
            .find(|l| l["event"] == event && conn.is_none_or(|c| l["conn"] == c))
        {
            return line.clone();
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        deadline.tick(format_args!("audit so far:\n{text}")).await;
    }
}

// ---- certificates --------------------------------------------------------------------------

fn first_cert_der(path: &Path) -> Vec<u8> {
    pgcordon_tls::load_certs(path).expect("certificate file")[0].to_vec()
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("X.509 certificate");
    cert.raw_serial().to_vec()
}

fn not_after_unix(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("X.509 certificate");
    cert.validity().not_after.timestamp()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The issued certificate behind a tenant's files, enough to revoke it (serial and PEM).
fn issued_from_files(files: &(std::path::PathBuf, std::path::PathBuf)) -> IssuedCert {
    let der = first_cert_der(&files.0);
    IssuedCert {
        cert_pem: std::fs::read_to_string(&files.0).expect("certificate PEM"),
        key_pem: String::new(),
        serial: serial_of(&der),
    }
}

/// A random lowercase hex string (for markers that must not collide between runs).
fn marker(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    format!("{prefix}-{}", hex(&bytes))
}

// ---- signals --------------------------------------------------------------------------------

fn signal(binary: &Binary, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(binary.pid(), sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", binary.pid());
}

// ---- configuration pieces ------------------------------------------------------------------

fn admin_section(admin: SocketAddr) -> String {
    format!("admin:\n  listen: {admin}\n")
}

fn audit_section(path: &Path) -> String {
    format!(
        "audit:\n  path: {}\n  transactions: true\n  statements: true\n",
        path.display()
    )
}

fn drain_section(timeout: &str) -> String {
    format!("shutdown:\n  drain_timeout: {timeout}\n")
}

/// Starts the binary on configuration `name` (with an admin listener added to `edit`).
fn spawn_binary(s: &OpsStack, name: &str, edit: ConfigEdit, env: &[(&str, &str)]) -> Binary {
    let addr = free_addr();
    let admin = free_addr();
    let mut edit = edit;
    edit.extra = format!("{}{}", admin_section(admin), edit.extra);
    let config = s.write_config(name, addr, &edit);
    Binary::spawn(&config, addr, Some(admin), env)
}

/// [`spawn_binary`], then waits until `/readyz` answers 200.
async fn start_binary(s: &OpsStack, name: &str, edit: ConfigEdit, env: &[(&str, &str)]) -> Binary {
    let mut binary = spawn_binary(s, name, edit, env);
    binary.wait_ready(Duration::from_secs(30)).await;
    binary
}

async fn simple_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

// ---- 1 and 2: metrics and the audit trail of the real binary --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_moving_metrics_and_a_complete_audit_trail() {
    let s = OpsStack::start().await;
    let audit = s.dir().join("audit.jsonl");
    let edit = ConfigEdit {
        extra: format!("{}{}", audit_section(&audit), drain_section("10s")),
        ..ConfigEdit::default()
    };
    let mut binary = start_binary(&s, "metrics.yaml", edit, &[("RUST_LOG", "debug")]).await;

    // Probes.
    let health = binary.get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = binary.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let response = binary.get("/metrics").await;
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "{response:?}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));

    // Every closed label set exists at zero before the first event.
    let m0 = scrape(&binary).await;
    let accepted = [("outcome", "accepted"), ("reason", "none")];
    let unknown_issuer = [
        ("outcome", "certificate_refused"),
        ("reason", "unknown_issuer"),
    ];
    let set_protected = [("reason", "set_protected")];
    let primary = [("target", "primary")];
    assert_eq!(m0.get(ATTEMPTS, &accepted), 0.0);
    assert_eq!(m0.get(ATTEMPTS, &unknown_issuer), 0.0);
    assert_eq!(
        m0.get("pgcordon_statements_refused_total", &set_protected),
        0.0
    );
    assert_eq!(m0.get(RELOADS, &[("outcome", "success")]), 0.0);
    assert_eq!(m0.get(RELOADS, &[("outcome", "failure")]), 0.0);
    assert_eq!(m0.get(LAST_RELOAD_OK, &[]), 1.0);
    assert_eq!(m0.get("pgcordon_audit_records_dropped_total", &[]), 0.0);
    assert_eq!(m0.get("pgcordon_pool_max_connections", &primary), 5.0);
    let tx0 = m0.get("pgcordon_transactions_total", &primary);
    let q0 = m0.get("pgcordon_queries_total", &primary);
    let handshakes0 = m0.histogram_count("pgcordon_tls_handshake_duration_seconds");

    // A tenant runs transactions: implicit, committed, extended protocol with a parameter,
    // rolled back; then tries to change its identity.
    let secret = marker("s3cret-param");
    let client = s
        .connect(binary.addr, Tenant::A)
        .await
        .expect("tenant A connects");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    client.simple_query("BEGIN").await.unwrap();
    let pid: i32 = simple_value(&client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM documents").await,
        "2"
    );
    client.simple_query("COMMIT").await.unwrap();
    let rows = client
        .query_typed(
            "SELECT title FROM documents WHERE title = $1",
            &[(&secret, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .expect("query with a bound parameter");
    assert!(rows.is_empty());
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("ROLLBACK").await.unwrap();
    let refused = client
        .simple_query("SET app.current_user_id = 'x'")
        .await
        .expect_err("the identity setting is protected");
    assert_eq!(sqlstate(&refused).as_deref(), Some("42501"), "{refused}");

    // A client whose certificate comes from a foreign CA.
    let foreign = CertAuthority::new("a foreign CA").unwrap();
    let foreign_files = tenant_cert(&foreign, TENANT_A)
        .unwrap()
        .write(s.dir(), "foreign-tenant")
        .unwrap();
    let foreign_attempt = RawSession::open(binary.addr, s.tls(Some(&foreign_files))).await;
    assert!(
        matches!(
            foreign_attempt,
            Err(StartupFailure::Tls(_) | StartupFailure::Io(_))
        ),
        "a foreign-CA client got in: {:?}",
        foreign_attempt.err()
    );

    // The client may see the refusal before pgcordon has counted it.
    let deadline = Deadline::new("the foreign-CA refusal counted", Duration::from_secs(5));
    let m1 = loop {
        let m = scrape(&binary).await;
        if m.get(ATTEMPTS, &unknown_issuer) >= 1.0 {
            break m;
        }
        deadline.tick("").await;
    };
    assert_eq!(m1.get(ATTEMPTS, &accepted), 1.0, "one accepted connection");
    assert_eq!(
        m1.get(ATTEMPTS, &unknown_issuer),
        1.0,
        "one foreign-CA refusal"
    );
    assert_eq!(
        m1.get("pgcordon_statements_refused_total", &set_protected),
        1.0
    );
    // Seven Query messages and one Execute forwarded; the refused SET is not.
    let queries = m1.get("pgcordon_queries_total", &primary) - q0;
    assert_eq!(queries, 8.0, "Query and Execute messages forwarded");
    assert!(m1.get("pgcordon_client_received_bytes_total", &[]) > 0.0);
    assert!(m1.get("pgcordon_client_sent_bytes_total", &[]) > 0.0);
    let handshakes = m1.histogram_count("pgcordon_tls_handshake_duration_seconds") - handshakes0;
    assert!(
        handshakes >= 1.0,
        "the accepted client's handshake is timed"
    );
    assert_eq!(
        m1.get("pgcordon_client_connections", &[("state", "idle")]),
        1.0,
        "the connected client, idle between transactions"
    );
    let acquire_waits = m1.histogram_count_labelled("pgcordon_pool_acquire_wait_seconds", &primary);
    assert!(
        acquire_waits >= 4.0,
        "pool acquisitions timed: {acquire_waits}"
    );

    // Certificate expiry, against the certificates' real notAfter.
    let now = now_unix();
    for (label, path) in [
        ("server", &s.stack.files.server_cert),
        ("client_ca", &s.stack.files.ca),
        ("upstream_ca", &s.stack.files.ca),
    ] {
        let exported = m1.get(
            "pgcordon_certificate_seconds_until_expiry",
            &[("certificate", label)],
        );
        let real = not_after_unix(&first_cert_der(path)) as f64 - now;
        assert!(
            (exported - real).abs() < 120.0,
            "{label}: exported {exported} s, certificate says {real} s"
        );
    }
    assert!(
        m1.value(
            "pgcordon_certificate_seconds_until_expiry",
            &[("certificate", "upstream_client")]
        )
        .is_none(),
        "no upstream client certificate is configured"
    );
    assert!(m1
        .value("pgcordon_crl_next_update_timestamp_seconds", &[])
        .is_none());

    // The client leaves: the closing record is written, and its byte counts are the metrics'.
    drop(client);
    let closed = wait_for_audit(&audit, "connection_closed", None).await;
    let m2 = scrape(&binary).await;
    for state in ["handshake", "startup", "idle", "waiting", "active"] {
        assert_eq!(
            m2.get("pgcordon_client_connections", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    assert_eq!(
        closed["bytes_in"].as_f64(),
        Some(m2.get("pgcordon_client_received_bytes_total", &[])),
        "bytes in: {closed}"
    );
    assert_eq!(
        closed["bytes_out"].as_f64(),
        Some(m2.get("pgcordon_client_sent_bytes_total", &[])),
        "bytes out: {closed}"
    );
    // SELECT 1, BEGIN..COMMIT, the typed query, BEGIN..ROLLBACK; the refused SET ran nowhere.
    let transactions = m2.get("pgcordon_transactions_total", &primary) - tx0;
    assert_eq!(transactions, 4.0, "transactions counted");

    signal(&binary, libc::SIGTERM);
    let status = binary.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");

    // The audit trail.
    let lines = audit_lines(&audit);
    let tenant_a = &s.stack.files.tenant_a;
    let a_der = first_cert_der(&tenant_a.0);
    let accepted = events(&lines, "connection_accepted");
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    let acc = accepted[0];
    let conn = acc["conn"].as_u64().expect("conn id");
    assert_eq!(acc["identity"], TENANT_A);
    assert_eq!(acc["serial"], hex(&serial_of(&a_der)));
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, &a_der);
    assert_eq!(acc["fingerprint_sha256"], hex(fingerprint.as_ref()));
    let client_addr: SocketAddr = acc["client_addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("client_addr: {acc}"));
    assert!(client_addr.ip().is_loopback());
    assert_eq!(acc["tls_version"], "TLSv1_3");
    assert!(
        acc["cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{acc}"
    );

    let refused = events(&lines, "connection_refused");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["reason"], "unknown_issuer");
    assert!(refused[0]["client_addr"].is_string());

    assert_eq!(closed["conn"], conn);
    assert_eq!(closed["identity"], TENANT_A);
    assert_eq!(closed["client_addr"], acc["client_addr"]);
    assert!(
        closed["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{closed}"
    );

    let txs = events(&lines, "transaction");
    assert_eq!(
        txs.len() as f64,
        transactions,
        "one audit line per counted transaction: {txs:#?}"
    );
    assert_eq!(closed["transactions"].as_u64(), Some(txs.len() as u64));
    for tx in &txs {
        assert_eq!(tx["conn"], conn);
        assert_eq!(tx["identity"], TENANT_A);
        assert_eq!(tx["target"], "primary");
        assert!(tx["backend_pid"].as_i64().is_some_and(|p| p > 0), "{tx}");
        assert!(tx["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{tx}");
    }
    assert!(
        txs.iter()
            .any(|t| t["backend_pid"] == pid && t["outcome"] == "committed"),
        "the explicit transaction on backend {pid}, committed: {txs:#?}"
    );
    assert!(
        txs.iter().any(|t| t["outcome"] == "rolled_back"),
        "the rolled back transaction: {txs:#?}"
    );

    let statements = events(&lines, "statement");
    let texts: Vec<&str> = statements
        .iter()
        .filter_map(|s| s["text"].as_str())
        .collect();
    for expected in [
        "SELECT 1",
        "SELECT pg_backend_pid()",
        "SELECT title FROM documents WHERE title = $1",
        "ROLLBACK",
        "SET app.current_user_id = 'x'",
    ] {
        assert!(texts.contains(&expected), "{expected:?} in {texts:#?}");
    }
    assert!(statements
        .iter()
        .all(|s| s["conn"] == conn && s["truncated"] == false));

    let refused_statements = events(&lines, "statement_refused");
    assert_eq!(refused_statements.len(), 1, "{refused_statements:#?}");
    assert_eq!(refused_statements[0]["reason"], "set_protected");
    assert_eq!(refused_statements[0]["identity"], TENANT_A);

    // Never a parameter value, never the upstream password; the debug log neither.
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !trail.contains(&secret),
        "a bound parameter reached the audit trail"
    );
    let log = binary.stderr();
    assert!(log.contains("DEBUG"), "the log runs at debug level");
    for (what, text) in [
        ("audit trail", &trail),
        ("stderr", &log),
        ("stdout", &binary.stdout()),
    ] {
        assert!(
            !text.contains(&s.stack.password),
            "the upstream password appears in the {what}"
        );
        assert!(
            !text.contains(&secret),
            "the bound parameter appears in the {what}"
        );
    }
}

/// The handshake histogram's help text (and docs/operations.md) say failed handshakes are
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_timed_too() {
    let s = OpsStack::start().await;
    let config = s.write_config("handshakes.yaml", free_addr(), &ConfigEdit::default());
    let running = launch(&config).await;
    let before =
        scrape_in_process(&running).histogram_count("pgcordon_tls_handshake_duration_seconds");
    let foreign = CertAuthority::new("a foreign CA").unwrap();
    let files = tenant_cert(&foreign, TENANT_B)
        .unwrap()
        .write(s.dir(), "foreign-b")
        .unwrap();
    assert!(RawSession::open(running.addr, s.tls(Some(&files)))
        .await
        .is_err());
    let deadline = Deadline::new("the refusal counted", Duration::from_secs(5));
    let m = loop {
        let m = scrape_in_process(&running);
        let refused = [
            ("outcome", "certificate_refused"),
            ("reason", "unknown_issuer"),
        ];
        if m.get(ATTEMPTS, &refused) == 1.0 {
            break m;
        }
        deadline.tick("").await;
    };
    assert_eq!(
        m.histogram_count("pgcordon_tls_handshake_duration_seconds") - before,
        1.0,
        "the refused handshake is observed"
    );
}

// ---- 3: rotation and revocation while clients stay connected --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rotates_the_server_certificate_applies_a_crl_and_survives_a_broken_file() {
    let s = OpsStack::start().await;
    let ca = &s.stack.ca;
    let files = &s.stack.files;
    // The configuration lists a CRL from the start: an empty one.
    let crl_path = s.dir().join("clients.crl");
    std::fs::write(&crl_path, ca.crl(&[], Duration::from_secs(3600)).unwrap()).unwrap();
    let edit = ConfigEdit {
        tls_lines: vec![format!("crl: [{}]", crl_path.display())],
        ..ConfigEdit::default()
    };
    let config = s.write_config("reload.yaml", free_addr(), &edit);
    let running = launch(&config).await;
    let addr = running.addr;
    let metrics = |m: &str, l: &[(&str, &str)]| scrape_in_process(&running).get(m, l);
    let tls_b = || s.tls(Some(s.tenant_files(Tenant::B)));

    let original = serial_of(&first_cert_der(&files.server_cert));
    assert_eq!(
        serial_of(&presented_server_cert(addr, tls_b()).await),
        original
    );
    let old_a = s.connect(addr, Tenant::A).await.expect("tenant A connects");
    assert_eq!(
        simple_value(&old_a, "SELECT current_setting('app.current_user_id')").await,
        TENANT_A
    );

    // Rotation: a new server certificate from the same CA, renamed into place.
    let rotated = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    assert_ne!(rotated.serial, original);
    replace_file(&files.server_cert, rotated.cert_pem.as_bytes());
    replace_file(&files.server_key, rotated.key_pem.as_bytes());
    running
        .reloader
        .reload()
        .expect("reload the rotated certificate");
    assert_eq!(metrics(RELOADS, &[("outcome", "success")]), 1.0);
    assert_eq!(metrics(LAST_RELOAD_OK, &[]), 1.0);
    assert_eq!(
        serial_of(&presented_server_cert(addr, tls_b()).await),
        rotated.serial,
        "a new handshake presents the rotated certificate"
    );
    assert_eq!(
        simple_value(&old_a, "SELECT current_setting('app.current_user_id')").await,
        TENANT_A,
        "the connection made before the rotation keeps working"
    );

    // Revocation: tenant A's certificate goes into the CRL.
    let a_issued = issued_from_files(&files.tenant_a);
    let crl = ca.crl(&[&a_issued], Duration::from_secs(3600)).unwrap();
    replace_file(&crl_path, crl.as_bytes());
    running.reloader.reload().expect("reload the CRL");
    assert_eq!(metrics(RELOADS, &[("outcome", "success")]), 2.0);
    let next_update = metrics("pgcordon_crl_next_update_timestamp_seconds", &[]);
    assert!(
        (next_update - (now_unix() + 3600.0)).abs() < 120.0,
        "CRL nextUpdate exported as {next_update}"
    );
    let refusal =
        raw::attempt_tls_startup(addr, raw::tls_config(&files.ca, Some(&files.tenant_a), &[]))
            .await;
    assert_eq!(
        refusal.alert(),
        Some(AlertDescription::CertificateRevoked),
        "tenant A's next connection: {refusal:?}"
    );
    assert!(refusal.received().is_empty(), "{refusal:?}");
    let err = s
        .connect(addr, Tenant::A)
        .await
        .expect_err("tokio-postgres as tenant A is refused");
    assert!(
        err.as_db_error().is_none(),
        "refused in TLS, not by SQL: {err}"
    );
    assert_eq!(
        metrics(
            ATTEMPTS,
            &[("outcome", "certificate_refused"), ("reason", "revoked")]
        ),
        2.0
    );
    let b = s
        .connect(addr, Tenant::B)
        .await
        .expect("tenant B still connects");
    assert_eq!(
        simple_value(&b, "SELECT current_setting('app.current_user_id')").await,
        TENANT_B
    );
    assert_eq!(
        simple_value(&old_a, "SELECT count(*) FROM documents").await,
        "2",
        "an established connection is not cut by a CRL reload"
    );

    // A broken certificate file: the reload fails, the previous material stays in force.
    replace_file(&files.server_cert, b"this is not a certificate\n");
    let err = running
        .reloader
        .reload()
        .expect_err("a broken certificate must not load");
    assert!(
        err.to_string()
            .contains(&files.server_cert.display().to_string()),
        "the error names the file: {err}"
    );
    assert_eq!(metrics(RELOADS, &[("outcome", "failure")]), 1.0);
    assert_eq!(metrics(RELOADS, &[("outcome", "success")]), 2.0);
    assert_eq!(metrics(LAST_RELOAD_OK, &[]), 0.0);
    assert_eq!(
        serial_of(&presented_server_cert(addr, tls_b()).await),
        rotated.serial,
        "new handshakes still use the last good certificate"
    );
    let refusal =
        raw::attempt_tls_startup(addr, raw::tls_config(&files.ca, Some(&files.tenant_a), &[]))
            .await;
    assert_eq!(
        refusal.alert(),
        Some(AlertDescription::CertificateRevoked),
        "the CRL stays in force"
    );

    let _ = running.shutdown.send(());
    tokio::time::timeout(Duration::from_secs(10), running.stopped)
        .await
        .expect("the proxy stops")
        .expect("proxy task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_and_when_a_secret_volume_changes() {
    let s = OpsStack::start().await;
    let ca = &s.stack.ca;
    let initial_cert = std::fs::read_to_string(&s.stack.files.server_cert).unwrap();
    let initial_key = std::fs::read_to_string(&s.stack.files.server_key).unwrap();
    let mut volume = SecretVolume::create(
        &s.dir().join("server-tls"),
        &[
            ("tls.crt", initial_cert.as_bytes()),
            ("tls.key", initial_key.as_bytes()),
        ],
    );
    let write = |volume: &mut SecretVolume, cert: &str, key: &str| {
        volume.update(&[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())]);
    };
    let edit = ConfigEdit {
        server_pair: Some((volume.path("tls.crt"), volume.path("tls.key"))),
        ..ConfigEdit::default()
    };
    let mut binary = start_binary(&s, "sighup.yaml", edit, &[]).await;
    let tls_b = || s.tls(Some(s.tenant_files(Tenant::B)));
    let original = serial_of(&first_cert_der(&s.stack.files.server_cert));
    assert_eq!(
        serial_of(&presented_server_cert(binary.addr, tls_b()).await),
        original
    );
    let old_a = s
        .connect(binary.addr, Tenant::A)
        .await
        .expect("tenant A connects");

    // SIGHUP.
    let by_signal = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    write(&mut volume, &by_signal.cert_pem, &by_signal.key_pem);
    signal(&binary, libc::SIGHUP);
    let deadline = Deadline::new("the SIGHUP reload", Duration::from_secs(10));
    loop {
        let seen = serial_of(&presented_server_cert(binary.addr, tls_b()).await);
        if seen == by_signal.serial && binary.stderr().contains("SIGHUP received") {
            break;
        }
        deadline.tick(binary.stderr()).await;
    }
    let m = scrape(&binary).await;
    assert!(m.get(RELOADS, &[("outcome", "success")]) >= 1.0);
    assert_eq!(m.get(RELOADS, &[("outcome", "failure")]), 0.0);

    // The file watch, with no signal: within two polls of 5 s.
    let by_watch = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    write(&mut volume, &by_watch.cert_pem, &by_watch.key_pem);
    let deadline = Deadline::new("the file-watch reload", Duration::from_secs(15));
    while serial_of(&presented_server_cert(binary.addr, tls_b()).await) != by_watch.serial {
        deadline.tick(binary.stderr()).await;
    }
    assert!(binary.stderr().contains("TLS files changed on disk"));
    assert_eq!(
        simple_value(&old_a, "SELECT current_setting('app.current_user_id')").await,
        TENANT_A,
        "the connection made before both rotations keeps working"
    );

    // A broken certificate in the volume: counted as a failed reload, old material kept.
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    write(&mut volume, broken, &by_watch.key_pem);
    let deadline = Deadline::new("the failed reload counted", Duration::from_secs(15));
    loop {
        let m = scrape(&binary).await;
        if m.get(RELOADS, &[("outcome", "failure")]) >= 1.0 {
            assert_eq!(m.get(LAST_RELOAD_OK, &[]), 0.0);
            break;
        }
        deadline.tick(binary.stderr()).await;
    }
    assert_eq!(
        serial_of(&presented_server_cert(binary.addr, tls_b()).await),
        by_watch.serial,
        "the last good certificate stays in force"
    );

    signal(&binary, libc::SIGTERM);
    let status = binary.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

// ---- 4: drain ------------------------------------------------------------------------------

async fn wait_draining(binary: &Binary) {
    let deadline = Deadline::new("/readyz reporting the drain", Duration::from_secs(5));
    loop {
        let r = binary.get("/readyz").await;
        if r.status == 503 {
            assert_eq!(r.body, "not ready: draining\n");
            return;
        }
        deadline.tick(format_args!("{r:?}")).await;
    }
}

async fn wait_refusing_connections(addr: SocketAddr) {
    let deadline = Deadline::new("the client listener closing", Duration::from_secs(5));
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => deadline.tick(format_args!("{other:?}")).await,
        }
    }
}

fn expect_shutdown_fatal(msg: &raw::Message, who: &str) {
    assert_eq!(msg.tag, b'E', "{who}: {msg:?}");
    let e = msg.error();
    assert_eq!(
        (e.severity.as_str(), e.code.as_str()),
        ("FATAL", "57P01"),
        "{who}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_transactions_commit_then_exits_zero() {
    let s = OpsStack::start().await;
    let edit = ConfigEdit {
        extra: drain_section("20s"),
        ..ConfigEdit::default()
    };
    let mut binary = start_binary(&s, "drain.yaml", edit, &[]).await;
    let title = marker("drained-commit");

    let writer = s
        .connect(binary.addr, Tenant::A)
        .await
        .expect("tenant A connects");
    writer.simple_query("BEGIN").await.unwrap();
    writer
        .simple_query(&format!("INSERT INTO documents (title) VALUES ('{title}')"))
        .await
        .unwrap();
    let mut idle = RawSession::open(binary.addr, s.tls(Some(s.tenant_files(Tenant::B))))
        .await
        .expect("tenant B connects");

    let sent = Instant::now();
    signal(&binary, libc::SIGTERM);
    wait_draining(&binary).await;
    wait_refusing_connections(binary.addr).await;
    assert!(
        s.connect(binary.addr, Tenant::B).await.is_err(),
        "a new connection while draining"
    );
    let fatal = idle
        .next_message(Duration::from_secs(5))
        .await
        .expect("the idle client is told");
    expect_shutdown_fatal(&fatal, "idle client");
    assert!(
        binary.exited().is_none(),
        "still draining the open transaction"
    );

    writer
        .simple_query("COMMIT")
        .await
        .expect("COMMIT while draining");
    let status = binary.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "exited within the drain timeout"
    );
    assert_eq!(
        s.admin(&format!(
            "SELECT count(*) FROM documents WHERE title = '{title}'"
        )),
        "1",
        "the row committed during the drain is there"
    );
    let log = binary.stderr();
    assert!(
        log.contains("SIGTERM received") && log.contains("draining"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_past_the_drain_timeout_is_cut_off_and_rolled_back() {
    let s = OpsStack::start().await;
    let audit = s.dir().join("cutoff-audit.jsonl");
    let edit = ConfigEdit {
        extra: format!("{}{}", drain_section("2s"), audit_section(&audit)),
        ..ConfigEdit::default()
    };
    let mut binary = start_binary(&s, "cutoff.yaml", edit, &[]).await;
    let title = marker("cut-off");

    let mut session = RawSession::open(binary.addr, s.tls(Some(s.tenant_files(Tenant::A))))
        .await
        .expect("tenant A connects");
    assert_eq!(session.query("BEGIN").await.unwrap(), Ok(vec![]));
    let insert = format!("INSERT INTO documents (title) VALUES ('{title}')");
    assert_eq!(session.query(&insert).await.unwrap(), Ok(vec![]));

    let sent = Instant::now();
    signal(&binary, libc::SIGTERM);
    wait_draining(&binary).await;
    let fatal = session
        .next_message(Duration::from_secs(10))
        .await
        .expect("the client is cut off");
    let after = sent.elapsed();
    expect_shutdown_fatal(&fatal, "client in a transaction");
    assert!(
        after >= Duration::from_millis(1900),
        "cut off after {after:?}, before the 2 s drain timeout"
    );
    let status = binary.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");

    // Its backend session is gone and the insert with it.
    let deadline = Deadline::new(
        "pgcordon's backend sessions ending",
        Duration::from_secs(10),
    );
    loop {
        let open = s.admin("SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgcordon_app'");
        if open == "0" {
            break;
        }
        deadline.tick(open).await;
    }
    assert_eq!(
        s.admin(&format!(
            "SELECT count(*) FROM documents WHERE title = '{title}'"
        )),
        "0",
        "the transaction was rolled back"
    );
    let tx = audit_lines(&audit)
        .into_iter()
        .rev()
        .find(|l| l["event"] == "transaction")
        .expect("the cut-off transaction is audited");
    assert_eq!(tx["outcome"], "interrupted", "{tx}");
}

// ---- 5: secrets never in logs --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_upstream_password_is_counted_and_no_password_is_ever_logged() {
    let s = OpsStack::start().await;
    let audit = s.dir().join("secrets-audit.jsonl");
    let edit = ConfigEdit {
        extra: audit_section(&audit),
        ..ConfigEdit::default()
    };
    let mut binary = start_binary(&s, "secrets.yaml", edit, &[("RUST_LOG", "debug")]).await;
    let password_file = &s.stack.files.password;
    let right = std::fs::read(password_file).unwrap();
    let wrong = marker("wrong-password");

    let first = s.connect(binary.addr, Tenant::A).await.expect("connect");
    assert_eq!(simple_value(&first, "SELECT 1").await, "1");
    drop(first);

    // The password is rotated wrongly; the pool's sessions are ended, so new ones must log in.
    replace_file(password_file, format!("{wrong}\n").as_bytes());
    s.admin(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = 'pgcordon_app'",
    );
    let rejected = [("target", "primary"), ("reason", "rejected")];
    let deadline = Deadline::new("a counted authentication failure", Duration::from_secs(20));
    loop {
        if let Ok(client) = s.connect(binary.addr, Tenant::A).await {
            if let Err(e) = client.simple_query("SELECT 1").await {
                let code = sqlstate(&e);
                assert!(
                    matches!(code.as_deref(), Some("08001" | "08006") | None),
                    "{e}"
                );
            }
        }
        if scrape(&binary)
            .await
            .get("pgcordon_upstream_auth_failures_total", &rejected)
            >= 1.0
        {
            break;
        }
        deadline.tick(binary.stderr()).await;
    }
    let ready = binary.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "not ready: no primary backend reachable\n")
    );

    // Fixed: the next session logs in, readiness comes back.
    replace_file(password_file, &right);
    let deadline = Deadline::new("a session after the fix", Duration::from_secs(20));
    loop {
        if let Ok(client) = s.connect(binary.addr, Tenant::A).await {
            if client.simple_query("SELECT 1").await.is_ok() {
                break;
            }
        }
        deadline.tick(binary.stderr()).await;
    }
    let ready = binary.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    signal(&binary, libc::SIGTERM);
    let status = binary.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");

    let log = binary.stderr();
    assert!(log.contains("DEBUG"), "the log runs at debug level");
    assert!(
        log.contains("password authentication failed"),
        "the failure itself is logged: {log}"
    );
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(
        trail.contains("connection_accepted"),
        "the audit trail is written"
    );
    for (what, text) in [
        ("stderr", &log),
        ("stdout", &binary.stdout()),
        ("audit trail", &trail),
    ] {
        assert!(
            !text.contains(&s.stack.password),
            "the password appears in the {what}"
        );
        assert!(
            !text.contains(&wrong),
            "the wrong password appears in the {what}"
        );
    }
}

/// `pgcordon check` loads the files as a reload does: a server certificate whose PEM block holds
/// no valid certificate must be named in the error, not blamed on the key.
#[test]
fn a_broken_server_certificate_is_named_as_the_file_at_fault() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let ca = CertAuthority::new("check CA").unwrap();
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let (cert, key) = ca
        .issue_server(&["localhost"])
        .unwrap()
        .write(dir, "server")
        .unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "unused\n").unwrap();
    let config = dir.join("check.yaml");
    let yaml = format!(
        "listen:\n  - address: {listen}\n\
         tls:\n  cert: {cert}\n  key: {key}\n  client_ca: {ca}\n\
         identity:\n  from: san_uri\n  pattern: '^spiffe://example\\.test/(.+)$'\n\
         upstream:\n  database: app\n  user: app\n  password_file: {password}\n\
         \x20 primary: 127.0.0.1:5432\n  tls:\n    ca: {ca}\n",
        listen = free_addr(),
        cert = cert.display(),
        key = key.display(),
        ca = ca_path.display(),
        password = password.display(),
    );
    std::fs::write(&config, yaml).unwrap();
    let check = |what: &str| {
        let out = std::process::Command::new(pgcordon_e2e::ops_kit::binary_path())
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("run pgcordon check");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr, what.to_owned())
    };
    let (code, stderr, _) = check("valid");
    assert_eq!(code, Some(0), "the valid configuration passes: {stderr}");

    replace_file(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let (code, stderr, _) = check("broken");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&cert.display().to_string()),
        "the error names the broken certificate {}: {stderr}",
        cert.display()
    );
}

// ---- documented behaviour the code does not have (yet) --------------------------------------

/// Starts the binary with a wrong upstream password in the password file; returns the right one.
async fn start_with_wrong_password(
    s: &OpsStack,
    name: &str,
    edit: ConfigEdit,
) -> (Binary, Vec<u8>) {
    let password_file = &s.stack.files.password;
    let right = std::fs::read(password_file).unwrap();
    replace_file(password_file, format!("{}\n", marker("wrong")).as_bytes());
    let mut binary = spawn_binary(s, name, edit, &[]);
    binary.wait_listening(Duration::from_secs(30)).await;
    // The listeners count as bound once the start-up warm-up has given up.
    let deadline = Deadline::new("the start-up warm-up giving up", Duration::from_secs(20));
    loop {
        let ready = binary.get("/readyz").await;
        if ready.body != "not ready: client listeners not bound yet\n" {
            assert_eq!(
                (ready.status, ready.body.as_str()),
                (503, "not ready: no primary backend reachable\n")
            );
            return (binary, right);
        }
        deadline.tick(format_args!("{ready:?}")).await;
    }
}

/// PgcordonUpstreamAuthFailing reads this counter; the most common misconfiguration, a wrong
/// password from the start, must move it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_before_the_first_session_are_counted() {
    let s = OpsStack::start().await;
    let (binary, _) = start_with_wrong_password(&s, "authfail.yaml", ConfigEdit::default()).await;
    let err = s
        .connect(binary.addr, Tenant::A)
        .await
        .expect_err("no session without a backend");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err}");
    let rejected = [("target", "primary"), ("reason", "rejected")];
    let deadline = Deadline::new("the failed login counted", Duration::from_secs(5));
    loop {
        let m = scrape(&binary).await;
        if m.get("pgcordon_upstream_auth_failures_total", &rejected) >= 1.0 {
            break;
        }
        deadline.tick(binary.stderr()).await;
    }
}

/// A pod whose pgcordon started before PostgreSQL accepted its login must become ready once the
/// pool can log in, without waiting for client traffic (which readiness itself holds back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_returns_once_the_primary_accepts_logins_without_client_traffic() {
    let s = OpsStack::start().await;
    // idle_timeout 4s: the pool's maintenance (and its warm-up) runs every second.
    let edit = ConfigEdit {
        pool: Some(format!("{}\n  idle_timeout: 4s", pgcordon_e2e::POOL_TX)),
        ..ConfigEdit::default()
    };
    let (binary, right) = start_with_wrong_password(&s, "recover.yaml", edit).await;
    replace_file(&s.stack.files.password, &right);
    let deadline = Deadline::new("the pool logging in again", Duration::from_secs(10));
    loop {
        let sessions =
            s.admin("SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgcordon_app'");
        if sessions != "0" {
            break;
        }
        deadline.tick(sessions).await;
    }
    let deadline = Deadline::new("/readyz answering 200", Duration::from_secs(5));
    loop {
        let ready = binary.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        deadline.tick(format_args!("{ready:?}")).await;
    }
}

/// The audit crate and docs/operations.md: `connection_refused.reason` takes the values of the
/// attempts metric's `reason` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_refusal_is_audited_with_the_metric_reason() {
    let s = OpsStack::start().await;
    let audit = s.dir().join("identity-audit.jsonl");
    let edit = ConfigEdit {
        extra: audit_section(&audit),
        ..ConfigEdit::default()
    };
    let binary = start_binary(&s, "identity.yaml", edit, &[]).await;
    let stranger = s
        .stack
        .ca
        .issue_client(&ClientSpec {
            san_uris: vec!["spiffe://elsewhere.test/tenant/nobody".to_owned()],
            ..ClientSpec::default()
        })
        .unwrap()
        .write(s.dir(), "stranger")
        .unwrap();
    let config = raw::pg_config(binary.addr.port(), "app");
    let err = raw::connect_tls(&config, s.tls(Some(&stranger)))
        .await
        .expect_err("a certificate without a matching identity is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    let no_match = [("outcome", "identity_refused"), ("reason", "no_match")];
    assert_eq!(scrape(&binary).await.get(ATTEMPTS, &no_match), 1.0);
    let refused = wait_for_audit(&audit, "connection_refused", None).await;
    assert_eq!(refused["reason"], "no_match", "{refused}");
}
