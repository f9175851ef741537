//! The audit trail against real files: lines written by the writer task, read back from disk
//! and parsed as JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pgcordon_audit::{
    certificate_fingerprint, rfc3339, serial_hex, start, Audit, AuditError, AuditOutput,
    AuditSettings, ConnectionAccepted, ConnectionClosed, ConnectionRefused, StatementRefused,
    TransactionEnded, TransactionOutcome, MAX_STATEMENT_BYTES,
};
use prometheus::IntCounter;
use serde_json::Value;

/// A fresh directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("pgcordon-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(path: &Path, transactions: bool, statements: bool, queue: usize) -> AuditSettings {
    AuditSettings {
        output: AuditOutput::File(path.to_path_buf()),
        transactions,
        statements,
        queue,
    }
}

fn counter() -> IntCounter {
    IntCounter::new("pgcordon_audit_records_dropped_total", "test").unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn client() -> SocketAddr {
    "192.0.2.10:51234".parse().unwrap()
}

fn accepted(conn: u64, identity: &Arc<str>) -> ConnectionAccepted {
    ConnectionAccepted {
        conn,
        client_addr: client(),
        identity: identity.clone(),
        serial: serial_hex(&[0x01, 0xab, 0xff]),
        fingerprint_sha256: certificate_fingerprint(b"abc"),
        tls_version: "TLSv1_3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

#[tokio::test]
async fn every_event_becomes_one_json_line_with_time_and_name() {
    let dir = TempDir::new("events");
    let path = dir.0.join("audit.log");
    let dropped = counter();
    let (audit, writer) = start(&settings(&path, true, true, 100), dropped.clone()).unwrap();
    let identity: Arc<str> = Arc::from("7d0e2f4a-0000-4000-8000-000000000001");
    let before = rfc3339(SystemTime::now());

    audit.connection_accepted(accepted(7, &identity));
    audit.connection_refused(ConnectionRefused {
        conn: 8,
        client_addr: client(),
        reason: "expired".into(),
        identity: None,
    });
    audit.statement(7, &identity, b"SELECT 1;\nSELECT \"x\" -- \xff");
    audit.statement_refused(StatementRefused {
        conn: 7,
        identity: identity.clone(),
        reason: "set_protected".into(),
    });
    audit.transaction(TransactionEnded {
        conn: 7,
        identity: identity.clone(),
        target: Arc::from("primary"),
        backend_pid: 4242,
        duration: Duration::from_micros(1_500),
        outcome: TransactionOutcome::RolledBack,
    });
    audit.connection_closed(ConnectionClosed {
        conn: 7,
        client_addr: client(),
        identity: identity.clone(),
        duration: Duration::from_secs(2),
        transactions: 1,
        bytes_in: 120,
        bytes_out: 340,
    });
    drop(audit);
    let summary = writer.run().await;
    let after = rfc3339(SystemTime::now());

    assert_eq!(summary.written, 6);
    assert_eq!(dropped.get(), 0);
    let raw = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        raw.lines().count(),
        6,
        "a statement with a newline stays on one line"
    );
    let lines = lines(&path);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "connection_accepted",
            "connection_refused",
            "statement",
            "statement_refused",
            "transaction",
            "connection_closed"
        ]
    );
    for line in &lines {
        let ts = line["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2025-01-01T00:00:00.000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && &ts[10..11] == "T", "{ts}");
        assert!(
            before.as_str() <= ts && ts <= after.as_str(),
            "{before} {ts} {after}"
        );
        // `ts` and `event` lead every line, for readers that look at the start only.
        let object = line.as_object().unwrap();
        let keys: Vec<&String> = object.keys().collect();
        assert!(keys.contains(&&"ts".to_owned()) && keys.contains(&&"event".to_owned()));
    }
    assert!(raw.lines().all(|l| l.starts_with("{\"ts\":\"")), "{raw}");

    let a = &lines[0];
    assert_eq!(a["identity"], identity.as_ref());
    assert_eq!(a["client_addr"], "192.0.2.10:51234");
    assert_eq!(a["serial"], "01abff");
    // SHA-256("abc") from FIPS 180-2, appendix B.1.
    assert_eq!(
        a["fingerprint_sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(a["tls_version"], "TLSv1_3");
    assert_eq!(a["cipher"], "TLS13_AES_256_GCM_SHA384");
    assert_eq!(a["conn"], 7);

    assert_eq!(lines[1]["reason"], "expired");
    assert!(lines[1].get("identity").is_none());
    assert_eq!(lines[2]["text"], "SELECT 1;\nSELECT \"x\" -- \u{FFFD}");
    assert_eq!(lines[2]["truncated"], false);
    assert_eq!(lines[3]["reason"], "set_protected");
    assert!(
        lines[3].get("text").is_none(),
        "refusals carry no statement text"
    );

    let t = &lines[4];
    assert_eq!(
        (t["target"].as_str(), t["backend_pid"].as_i64()),
        (Some("primary"), Some(4242))
    );
    assert_eq!(t["duration_ms"].as_f64(), Some(1.5));
    assert_eq!(t["outcome"], "rolled_back");

    let c = &lines[5];
    assert_eq!(c["duration_ms"].as_f64(), Some(2000.0));
    assert_eq!(
        (
            c["transactions"].as_u64(),
            c["bytes_in"].as_u64(),
            c["bytes_out"].as_u64()
        ),
        (Some(1), Some(120), Some(340))
    );
}

#[tokio::test]
async fn transactions_and_statements_are_off_unless_switched_on() {
    let dir = TempDir::new("switches");
    let path = dir.0.join("audit.log");
    let (audit, writer) = start(&settings(&path, false, false, 100), counter()).unwrap();
    let identity: Arc<str> = Arc::from("tenant-a");
    assert!(audit.is_enabled());
    assert!(!audit.transactions_enabled() && !audit.statements_enabled());

    audit.statement(1, &identity, b"SELECT secret_column FROM t");
    audit.transaction(TransactionEnded {
        conn: 1,
        identity: identity.clone(),
        target: Arc::from("primary"),
        backend_pid: 1,
        duration: Duration::ZERO,
        outcome: TransactionOutcome::Committed,
    });
    audit.connection_accepted(accepted(1, &identity));
    drop(audit);
    writer.run().await;

    let lines = lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "connection_accepted");
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("secret_column"));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = TempDir::new("full");
    let path = dir.0.join("audit.log");
    let dropped = counter();
    let (audit, writer) = start(&settings(&path, false, false, 2), dropped.clone()).unwrap();
    let identity: Arc<str> = Arc::from("tenant-a");

    // The writer is not running yet: the queue holds two records, the other three are lost.
    for conn in 1..=5 {
        audit.connection_accepted(accepted(conn, &identity));
    }
    assert_eq!(dropped.get(), 3);

    drop(audit);
    let summary = writer.run().await;
    assert_eq!(summary.written, 2);
    let conns: Vec<u64> = lines(&path)
        .iter()
        .map(|l| l["conn"].as_u64().unwrap())
        .collect();
    assert_eq!(conns, [1, 2], "the queued records are kept, in order");
}

#[tokio::test]
async fn records_after_the_writer_stopped_are_counted() {
    let dir = TempDir::new("closed");
    let dropped = counter();
    let (audit, writer) = start(
        &settings(&dir.0.join("a.log"), false, false, 10),
        dropped.clone(),
    )
    .unwrap();
    drop(writer);
    audit.connection_accepted(accepted(1, &Arc::from("x")));
    assert_eq!(dropped.get(), 1);
}

#[tokio::test]
async fn output_errors_are_counted_as_drops() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        panic!("this test needs /dev/full (Linux)");
    }
    let dropped = counter();
    let (audit, writer) = start(&settings(full, false, false, 10), dropped.clone()).unwrap();
    for conn in 1..=3 {
        audit.connection_accepted(accepted(conn, &Arc::from("x")));
    }
    drop(audit);
    let summary = writer.run().await;
    assert_eq!((summary.written, summary.failed), (0, 3));
    assert_eq!(dropped.get(), 3);
}

#[tokio::test]
async fn long_statements_are_cut_on_a_character_boundary() {
    let dir = TempDir::new("long");
    let path = dir.0.join("audit.log");
    let (audit, writer) = start(&settings(&path, false, true, 10), counter()).unwrap();
    // 'é' is two bytes; an odd prefix puts the limit in the middle of one.
    let text = format!("x{}", "é".repeat(MAX_STATEMENT_BYTES));
    audit.statement(1, &Arc::from("x"), text.as_bytes());
    audit.statement(1, &Arc::from("x"), "short é".as_bytes());
    drop(audit);
    writer.run().await;

    let lines = lines(&path);
    let cut = lines[0]["text"].as_str().unwrap();
    assert_eq!(lines[0]["truncated"], true);
    assert!(cut.len() <= MAX_STATEMENT_BYTES && cut.len() >= MAX_STATEMENT_BYTES - 3);
    assert!(
        text.starts_with(cut),
        "the kept text is a prefix of the original"
    );
    assert!(!cut.contains('\u{FFFD}'));
    assert_eq!(lines[1]["text"], "short é");
    assert_eq!(lines[1]["truncated"], false);
}

#[tokio::test]
async fn reopen_follows_a_rotated_file() {
    let dir = TempDir::new("rotate");
    let path = dir.0.join("audit.log");
    let rotated = dir.0.join("audit.log.1");
    let (audit, writer) = start(&settings(&path, false, false, 10), counter()).unwrap();
    let task = tokio::spawn(writer.run());

    audit.connection_accepted(accepted(1, &Arc::from("x")));
    // Wait (bounded) until the writer has written the first line.
    let mut written = false;
    for _ in 0..10_000 {
        if lines(&path).len() == 1 {
            written = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(written, "the first line never reached the file");

    std::fs::rename(&path, &rotated).unwrap();
    audit.reopen();
    audit.connection_accepted(accepted(2, &Arc::from("x")));
    drop(audit);
    task.await.unwrap();

    let old: Vec<u64> = lines(&rotated)
        .iter()
        .map(|l| l["conn"].as_u64().unwrap())
        .collect();
    let new: Vec<u64> = lines(&path)
        .iter()
        .map(|l| l["conn"].as_u64().unwrap())
        .collect();
    assert_eq!((old, new), (vec![1], vec![2]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o007,
            0,
            "audit files are not world-readable: {mode:o}"
        );
    }
}

#[test]
fn opening_a_bad_path_names_it() {
    let path = Path::new("/nonexistent-pgcordon-dir/audit.log");
    let Err(error) = start(&settings(path, false, false, 10), counter()) else {
        panic!("opened a file in a missing directory");
    };
    assert!(matches!(error, AuditError::Open { .. }));
    assert!(
        error
            .to_string()
            .contains("/nonexistent-pgcordon-dir/audit.log"),
        "{error}"
    );
}

#[test]
fn a_disabled_trail_records_nothing() {
    let audit = Audit::disabled();
    assert!(!audit.is_enabled() && !audit.transactions_enabled() && !audit.statements_enabled());
    audit.connection_accepted(accepted(1, &Arc::from("x")));
    audit.reopen();
}
