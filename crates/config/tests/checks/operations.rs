//! `admin`, `audit` and `shutdown`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{ok, plus, refused, with, BASE};
use pgcordon_config::{defaults, AuditOutput};

#[test]
fn absent_sections_mean_no_admin_no_audit_and_the_default_drain() {
    let config = ok(BASE);
    assert!(config.admin.is_none());
    assert!(config.audit.is_none());
    assert_eq!(config.shutdown.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.shutdown.drain_timeout, defaults::DRAIN_TIMEOUT);
    // An empty section (every key commented out) is the same as no section.
    let empty = ok(&plus("admin:\naudit:\nshutdown:\n"));
    assert!(empty.admin.is_none() && empty.audit.is_none());
    assert_eq!(empty.shutdown.drain_timeout, defaults::DRAIN_TIMEOUT);
}

#[test]
fn admin_listens_on_loopback_by_default_or_where_told() {
    let default = ok(&plus("admin: {}\n")).admin.expect("admin enabled");
    assert_eq!(default.listen, defaults::ADMIN_LISTEN);
    assert_eq!(
        default.listen,
        "127.0.0.1:9187".parse::<SocketAddr>().unwrap()
    );
    assert!(default.listen.ip().is_loopback());

    let set = ok(&plus("admin:\n  listen: '[::1]:9999'\n")).admin.unwrap();
    assert_eq!(set.listen, "[::1]:9999".parse::<SocketAddr>().unwrap());
}

#[test]
fn admin_address_must_be_ip_and_port() {
    for bad in ["localhost:9187", "127.0.0.1", "9187"] {
        let text = plus(&format!("admin:\n  listen: '{bad}'\n"));
        let problem = refused(&text, "admin.listen", "an IP address and port");
        assert!(problem.found.contains(bad), "{problem:?}");
    }
}

#[test]
fn admin_wildcard_needs_allow_wildcard() {
    for wildcard in ["0.0.0.0:9187", "'[::]:9187'"] {
        let text = plus(&format!("admin:\n  listen: {wildcard}\n"));
        let problem = refused(&text, "admin.listen", "every interface");
        assert!(
            problem.expected.contains("allow_wildcard: true"),
            "{problem:?}"
        );
    }
    let allowed = ok(&format!(
        "allow_wildcard: true\n{}",
        plus("admin:\n  listen: 0.0.0.0:9187\n")
    ));
    assert!(allowed.admin.unwrap().listen.ip().is_unspecified());
}

#[test]
fn admin_cannot_share_a_client_listener_address() {
    let text = plus("admin:\n  listen: 127.0.0.1:6432\n");
    refused(&text, "admin.listen", "no listen[] entry uses");
    // Port 0 on both sides is two different system-chosen ports, not a clash.
    let zero = with("  - address: 127.0.0.1:6432", "  - address: 127.0.0.1:0");
    let config = ok(&format!("{zero}admin:\n  listen: 127.0.0.1:0\n"));
    assert_eq!(config.admin.unwrap().listen.port(), 0);
}

#[test]
fn audit_defaults_to_stdout_with_connection_events_only() {
    let audit = ok(&plus("audit: {}\n")).audit.expect("audit enabled");
    assert_eq!(audit.output, AuditOutput::Stdout);
    assert!(!audit.transactions && !audit.statements);
    assert_eq!(audit.queue, 10_000);
    assert_eq!(audit.queue, defaults::AUDIT_QUEUE);

    let text = plus(
        "audit:\n  path: audit/pgcordon.jsonl\n  transactions: true\n  statements: true\n  queue: 500\n",
    );
    let audit = ok(&text).audit.unwrap();
    // Relative paths start at the config file's directory.
    let expected = PathBuf::from("/etc/pgcordon/audit/pgcordon.jsonl");
    assert_eq!(audit.output, AuditOutput::File(expected));
    assert!(audit.transactions && audit.statements);
    assert_eq!(audit.queue, 500);

    let stdout = ok(&plus("audit:\n  path: stdout\n")).audit.unwrap();
    assert_eq!(stdout.output, AuditOutput::Stdout);
}

#[test]
fn audit_values_are_checked() {
    refused(&plus("audit:\n  path: ''\n"), "audit.path", "a file path");
    refused(
        &plus("audit:\n  queue: 0\n"),
        "audit.queue",
        "from 1 to 1000000",
    );
    refused(
        &plus("audit:\n  queue: 1000001\n"),
        "audit.queue",
        "from 1 to 1000000",
    );
    refused(
        &plus("audit:\n  transactions: yes\n"),
        "audit.transactions",
        "true or false",
    );
    refused(&plus("audit:\n  pth: x\n"), "audit.pth", "one of the keys");
}

#[test]
fn drain_timeout_is_a_positive_duration() {
    let config = ok(&plus("shutdown:\n  drain_timeout: 2m\n"));
    assert_eq!(config.shutdown.drain_timeout, Duration::from_secs(120));
    refused(
        &plus("shutdown:\n  drain_timeout: 0s\n"),
        "shutdown.drain_timeout",
        "above zero",
    );
    refused(
        &plus("shutdown:\n  drain_timeout: 30\n"),
        "shutdown.drain_timeout",
        "a duration",
    );
}

#[test]
fn summary_names_the_operational_settings() {
    let none = ok(BASE).summary();
    assert!(
        none.contains("operations: no admin listener, no audit, drain timeout 30s"),
        "{none}"
    );
    let text =
        plus("admin: {}\naudit:\n  path: /var/log/pgcordon/audit.jsonl\n  transactions: true\n");
    let some = ok(&text).summary();
    let line = "operations: admin on 127.0.0.1:9187, audit to /var/log/pgcordon/audit.jsonl \
                (transactions on, statements off, queue 10000), drain timeout 30s";
    assert!(some.contains(line), "{some}");
}
