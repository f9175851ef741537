//! The client driver matrix: real drivers (psycopg 3, asyncpg, node-postgres, pgjdbc) run
//! their scenario scripts from tests/drivers/ against pgcordon (transaction pooling, a pool
//! of 4) in front of a real PostgreSQL 15, over mTLS with the tenant certificates.
//!
//! Each script connects as tenant A and tenant B, checks RLS isolation and the injected identity
//! in every transaction, reuses a driver-level prepared statement on at least three pooled
//! backends, cancels a `pg_sleep(10)`, runs COPY, recovers from an error inside a transaction,
//! and prints a JSON summary as its last line, which this file checks. What each row of
//! docs/compatibility.md claims is backed by one of these tests or by tests/pgbench.rs.
//!
//! A driver whose runtime is missing fails its test with the install step to run (the ones in
//! .ci/run), unless `PGCORDON_SKIP_DRIVERS` names it (comma-separated: psycopg, asyncpg, node,
//! jdbc, pgbench); CI ignores that variable and runs them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pgcordon_e2e::drivers_kit::{check_server_side, missing, on_path, run, skipped, POOL_4};
use pgcordon_e2e::{Harness, Tenant};

/// The RLS-free table the scripts COPY into.
const SCRATCH: &str = "driver_copy";
/// The longest one script may run (they take seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// The JVM's time zone, which pgjdbc sends as the TimeZone startup parameter.
const JDBC_ZONE: &str = "Pacific/Chatham";

/// The drivers run one at a time: two shared cores, and the cancel checks measure latency.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn drivers_dir() -> PathBuf {
    repo_root().join("tests").join("drivers")
}

/// The venv's python with `module` importable.
fn python_with(driver: &str, module: &str) -> PathBuf {
    let python = std::env::var_os("PGCORDON_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let install = "python3 -m venv .venv && .venv/bin/pip install 'psycopg[binary]' asyncpg";
    if !python.exists() {
        missing(
            driver,
            &format!("the Python venv ({})", python.display()),
            install,
        );
    }
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        missing(
            driver,
            &format!("the Python module {module} in {}", python.display()),
            install,
        );
    }
    python
}

/// A flat JSON object (string, number, true/false/null values), as the scripts print it; the
/// values as text (strings unquoted).
fn parse_summary(line: &str) -> Result<BTreeMap<String, String>, String> {
    use serde_json::Value;
    let object = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => object,
        Ok(other) => return Err(format!("not a JSON object: {other}")),
        Err(e) => return Err(e.to_string()),
    };
    object
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key, text)),
            Value::Array(_) | Value::Object(_) => Err(format!("\"{key}\" is not a scalar")),
            scalar => Ok((key, scalar.to_string())),
        })
        .collect()
}

/// The summary a script printed, with typed accessors that fail the test on a missing key.
struct Summary {
    driver: &'static str,
    fields: BTreeMap<String, String>,
}

impl Summary {
    fn str(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("{}: the summary has no \"{key}\"", self.driver))
    }

    fn int(&self, key: &str) -> i64 {
        self.str(key).parse().unwrap_or_else(|_| {
            panic!(
                "{}: \"{key}\" is not a whole number: {}",
                self.driver,
                self.str(key)
            )
        })
    }

    /// What every scenario must show.
    fn check_common(&self) {
        assert_eq!(self.str("driver"), self.driver);
        assert_eq!(
            self.int("mismatches"),
            0,
            "{}: identity/isolation mismatches: {}",
            self.driver,
            self.fields
                .get("mismatch_details")
                .map(String::as_str)
                .unwrap_or("")
        );
        assert!(
            self.int("backends_used") >= 3,
            "{}: the prepared statement ran on {} backend(s), want at least 3",
            self.driver,
            self.int("backends_used")
        );
        assert!(
            self.int("backends_used") <= 4,
            "{}: {} backends seen through a pool of 4",
            self.driver,
            self.int("backends_used")
        );
        assert_eq!(self.int("prepared_rounds"), 12, "{}", self.driver);
        assert!(
            self.int("transactions") >= 40,
            "{}: only {} transactions",
            self.driver,
            self.int("transactions")
        );
        assert_eq!(self.int("copy_in_rows"), 50, "{}", self.driver);
        assert_eq!(self.int("error_rollback"), 1, "{}", self.driver);
    }

    fn under_a_second(&self, key: &str) {
        let ms = self.int(key);
        assert!(
            (0..1000).contains(&ms),
            "{}: {key} = {ms} ms, want under 1000",
            self.driver
        );
    }
}

/// A harness with the scratch table the scripts COPY into.
async fn start() -> Harness {
    let h = Harness::start(POOL_4).await;
    h.admin(&format!(
        "CREATE TABLE {SCRATCH} (driver text NOT NULL, n int NOT NULL, label text NOT NULL);\n\
         GRANT SELECT, INSERT ON {SCRATCH} TO {};",
        pgcordon_devkit::stack::APP_ROLE
    ));
    h
}

/// The connection material, as the scripts read it.
fn script_env(h: &Harness) -> Vec<(String, String)> {
    let files = &h.stack.files;
    let mut env = vec![
        ("PGC_HOST".into(), "localhost".into()),
        ("PGC_PORT".into(), h.addr.port().to_string()),
        ("PGC_DBNAME".into(), "app".into()),
        ("PGC_USER".into(), "api".into()),
        ("PGC_CA".into(), files.ca.display().to_string()),
        ("PGC_SCRATCH".into(), SCRATCH.into()),
    ];
    for (tenant, prefix) in [(Tenant::A, "PGC_A"), (Tenant::B, "PGC_B")] {
        let (cert, key) = h.tenant_files(tenant);
        env.push((format!("{prefix}_ID"), tenant.id().into()));
        env.push((format!("{prefix}_CERT"), cert.display().to_string()));
        env.push((format!("{prefix}_KEY"), key.display().to_string()));
    }
    env
}

/// Runs a scenario script and parses its summary line.
async fn scenario(
    driver: &'static str,
    cmd: tokio::process::Command,
    env: &[(String, String)],
) -> Summary {
    let out = run(driver, cmd, env, SCRIPT_TIMEOUT).await;
    assert!(
        out.status.success(),
        "{driver} scenario failed: {}",
        out.describe()
    );
    let last = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{driver}: no summary line\n{}", out.describe()));
    let fields =
        parse_summary(last).unwrap_or_else(|e| panic!("{driver}: bad summary line {last:?}: {e}"));
    eprintln!("{driver}: {last}");
    Summary { driver, fields }
}

/// Rows the scripts stored in the scratch table, counted directly on PostgreSQL.
fn stored(h: &Harness, driver: &str) -> i64 {
    h.admin(&format!(
        "SELECT count(*) FROM {SCRATCH} WHERE driver = '{driver}'"
    ))
    .trim()
    .parse()
    .expect("a count")
}

fn python_script(python: &Path, script: &str, args: &[&str]) -> tokio::process::Command {
    let dir = drivers_dir().join("python");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg("-u")
        .arg(dir.join(script))
        .args(args)
        .current_dir(dir);
    cmd
}

/// The psycopg scenario's sections; `cancel_tls` runs in its own test (see below).
const PSYCOPG_SECTIONS: &[&str] = &[
    "isolation",
    "prepared",
    "cancel_plain",
    "copy",
    "error",
    "pipeline",
    "session_state",
    "direct_tls",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3() {
    if skipped("psycopg") {
        return;
    }
    let python = python_with("psycopg", "psycopg");
    let _serial = SERIAL.lock().await;
    let h = start().await;
    let s = scenario(
        "psycopg",
        python_script(&python, "psycopg_scenario.py", PSYCOPG_SECTIONS),
        &script_env(&h),
    )
    .await;
    s.check_common();
    assert!(
        s.int("libpq") >= 170000,
        "psycopg's libpq {} has no direct TLS",
        s.int("libpq")
    );
    s.under_a_second("cancel_plain_ms");
    assert_eq!(s.int("copy_out_checked"), 2);
    assert_eq!(s.int("pipeline_statements"), 11);
    assert_eq!(s.int("session_state"), 1);
    assert_eq!(s.int("direct_tls"), 1);
    assert_eq!(stored(&h, "psycopg"), 50);
    assert_eq!(stored(&h, "psycopg-pipeline"), 3);
    check_server_side(&h);
}

/// libpq 17+ `PQcancelBlocking` (psycopg's `cancel_safe`) sends the CancelRequest over TLS with
/// the client certificate and treats the end of the connection as the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_cancel_safe_over_tls() {
    if skipped("psycopg") {
        return;
    }
    let python = python_with("psycopg", "psycopg");
    let _serial = SERIAL.lock().await;
    let h = start().await;
    let s = scenario(
        "psycopg",
        python_script(&python, "psycopg_scenario.py", &["cancel_tls"]),
        &script_env(&h),
    )
    .await;
    assert_eq!(
        s.int("mismatches"),
        0,
        "{:?}",
        s.fields.get("mismatch_details")
    );
    s.under_a_second("cancel_tls_ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    if skipped("asyncpg") {
        return;
    }
    let python = python_with("asyncpg", "asyncpg");
    let _serial = SERIAL.lock().await;
    let h = start().await;
    let s = scenario(
        "asyncpg",
        python_script(&python, "asyncpg_scenario.py", &[]),
        &script_env(&h),
    )
    .await;
    s.check_common();
    assert_eq!(s.int("executemany_rows"), 20);
    assert_eq!(s.int("copy_out_checked"), 4);
    s.under_a_second("timeout_cancel_ms");
    s.under_a_second("task_cancel_ms");
    assert_eq!(s.int("direct_tls"), 1);
    assert_eq!(stored(&h, "asyncpg"), 50);
    assert_eq!(stored(&h, "asyncpg-many"), 20);
    check_server_side(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    if skipped("node") {
        return;
    }
    let dir = drivers_dir().join("node");
    if !on_path("node") {
        missing("node", "node", "apt-get install -y nodejs npm");
    }
    for module in ["pg", "pg-copy-streams"] {
        if !dir
            .join("node_modules")
            .join(module)
            .join("package.json")
            .exists()
        {
            missing(
                "node",
                &format!("tests/drivers/node/node_modules/{module}"),
                "cd tests/drivers/node && npm ci",
            );
        }
    }
    let _serial = SERIAL.lock().await;
    let h = start().await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("scenario.js").current_dir(&dir);
    let s = scenario("node-postgres", cmd, &script_env(&h)).await;
    s.check_common();
    s.under_a_second("cancel_plain_ms");
    assert_eq!(s.int("copy_out_checked"), 2);
    assert_eq!(s.int("pipeline_statements"), 13);
    assert_eq!(s.int("direct_tls"), 1);
    assert_eq!(s.int("listen_notify"), 1);
    assert_eq!(s.int("refused_startup_parameter"), 1);
    assert_eq!(stored(&h, "node-postgres"), 50);
    assert_eq!(stored(&h, "node-pipeline"), 3);
    check_server_side(&h);
}

/// pgjdbc 42.5 reads client keys as PKCS-8 DER only: convert the tenants' PEM keys.
async fn der_key(pem: &Path, out: &Path) {
    let status = tokio::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(pem)
        .arg("-out")
        .arg(out)
        .status()
        .await
        .expect("run openssl");
    assert!(
        status.success(),
        "openssl pkcs8 failed for {}",
        pem.display()
    );
}

/// pgjdbc with its default startup: extra_float_digits=2 in the startup packet, then a
/// session-level `SET extra_float_digits = 3`, which must follow the client to every backend
/// (the scenario checks 3 in each prepared transaction), with the JVM's TimeZone and the
/// ApplicationName from the startup packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    if skipped("jdbc") {
        return;
    }
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() {
        missing(
            "jdbc",
            "/usr/share/java/postgresql.jar",
            "apt-get install -y libpostgresql-jdbc-java",
        );
    }
    for program in ["javac", "java"] {
        if !on_path(program) {
            missing("jdbc", program, "apt-get install -y default-jdk-headless");
        }
    }
    let classes = tempfile::tempdir().expect("temp dir");
    let mut javac = tokio::process::Command::new("javac");
    javac
        .arg("-d")
        .arg(classes.path())
        .arg("-cp")
        .arg(jar)
        .arg(drivers_dir().join("java").join("Scenario.java"));
    let _serial = SERIAL.lock().await;
    let compiled = run("javac", javac, &[], SCRIPT_TIMEOUT).await;
    assert!(
        compiled.status.success(),
        "javac failed: {}",
        compiled.describe()
    );

    let h = start().await;
    let mut env = script_env(&h);
    for (tenant, var) in [(Tenant::A, "PGC_A_KEY_DER"), (Tenant::B, "PGC_B_KEY_DER")] {
        let out = classes.path().join(format!("{var}.pk8"));
        der_key(&h.tenant_files(tenant).1, &out).await;
        env.push((var.into(), out.display().to_string()));
    }
    let mut cmd = tokio::process::Command::new("java");
    cmd.arg(format!("-Duser.timezone={JDBC_ZONE}"))
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-cp")
        .arg(format!("{}:{}", classes.path().display(), jar.display()))
        .arg("Scenario");
    let s = scenario("pgjdbc", cmd, &env).await;
    assert_eq!(s.str("timezone"), JDBC_ZONE);
    s.check_common();
    s.under_a_second("cancel_plain_ms");
    assert_eq!(s.int("copy_out_checked"), 2);
    assert_eq!(s.int("batch_rows"), 20);
    assert_eq!(stored(&h, "pgjdbc"), 50);
    assert_eq!(stored(&h, "pgjdbc-batch"), 20);
    check_server_side(&h);
}

#[test]
fn summary_lines_parse() {
    let s = parse_summary(concat!(
        r#"{"driver": "x", "transactions": 42, "mismatches": 0, "#,
        r#""detail": "a \"b\"\n\u00e9", "ok": true}"#
    ))
    .unwrap();
    assert_eq!(s["driver"], "x");
    assert_eq!(s["transactions"], "42");
    assert_eq!(s["detail"], "a \"b\"\né");
    assert_eq!(s["ok"], "true");
    assert!(parse_summary(r#"{"nested": {"a": 1}}"#).is_err());
    assert!(parse_summary("not json").is_err());
}
