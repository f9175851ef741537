//! The rendered text, parsed back the way Prometheus reads it: every handle shows up under
//! its documented name, with the labels and values the calls produced.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgcordon_metrics::{
    Attempt, CertificateRefusal, ClientState, IdentityRefusal, Metrics, MetricsError, PoolStats,
    ReloadOutcome, StatementRefusal, TargetRole, TlsFailure, UpstreamAuthFailure,
    UpstreamConnectFailure,
};
use support::parse;

/// A metrics set with two targets and every kind of handle touched once.
fn exercised() -> Arc<Metrics> {
    let metrics = Metrics::new();
    let primary = metrics.target("primary", TargetRole::Primary).unwrap();
    let replica = metrics.target("replica-1", TargetRole::Replica).unwrap();
    metrics.set_pool_source(&primary, PoolStats::default);
    metrics.set_pool_source(&replica, PoolStats::default);
    metrics.set_certificate_expiry(
        pgcordon_metrics::CertificateKind::Server,
        Some(std::time::SystemTime::now()),
    );
    metrics.set_crl_next_update(Some(std::time::SystemTime::now()));
    metrics
}

#[test]
fn every_declared_family_is_rendered_with_help_and_type() {
    let metrics = exercised();
    let scrape = parse(&metrics.render());
    let names = metrics.metric_names();
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        assert!(name.starts_with("pgcordon_"), "{name}");
        let kind = scrape
            .types
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no # TYPE line"));
        assert!(
            scrape.help.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has no help"
        );
        // Prometheus conventions: counters end in _total; nothing else does.
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                let series = format!("{name}{suffix}");
                assert!(scrape.samples.iter().any(|s| s.name == series), "{series}");
            }
        }
    }
    // Nothing is rendered that metric_names does not declare.
    for family in scrape.families() {
        assert!(
            names.contains(&family),
            "{family} rendered but not declared"
        );
    }
}

#[test]
fn closed_label_sets_exist_before_first_use() {
    let metrics = Metrics::new();
    let scrape = parse(&metrics.render());
    let attempts = "pgcordon_client_connection_attempts_total";
    assert_eq!(scrape.matching(attempts, &[]).count(), Attempt::all().len());
    for attempt in Attempt::all() {
        let labels = [("outcome", attempt.outcome()), ("reason", attempt.reason())];
        assert_eq!(scrape.value(attempts, &labels), Some(0.0), "{attempt:?}");
    }
    for reason in StatementRefusal::ALL {
        let value = scrape.value(
            "pgcordon_statements_refused_total",
            &[("reason", reason.as_str())],
        );
        assert_eq!(value, Some(0.0), "{reason}");
    }
    for state in ClientState::ALL {
        let value = scrape.value("pgcordon_client_connections", &[("state", state.as_str())]);
        assert_eq!(value, Some(0.0), "{state}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        scrape.value("pgcordon_build_info", &[("version", version)]),
        Some(1.0)
    );
}

#[test]
fn counters_count_what_was_called() {
    let metrics = Metrics::new();
    let expired = Attempt::CertificateRefused(CertificateRefusal::Expired);
    metrics.attempt(expired);
    metrics.attempt(expired);
    metrics.attempt(Attempt::Accepted);
    metrics.attempt(Attempt::TlsFailure(TlsFailure::Plaintext));
    metrics.attempt(Attempt::IdentityRefused(IdentityRefusal::NoMatch));
    metrics.statement_refused(StatementRefusal::SetConfigProtected);
    metrics.client_received_bytes.inc_by(1234);
    metrics.client_sent_bytes.inc_by(99);
    metrics.audit_records_dropped.inc_by(3);

    let scrape = parse(&metrics.render());
    let attempts = "pgcordon_client_connection_attempts_total";
    let value =
        |outcome, reason| scrape.value(attempts, &[("outcome", outcome), ("reason", reason)]);
    assert_eq!(value("certificate_refused", "expired"), Some(2.0));
    assert_eq!(value("certificate_refused", "revoked"), Some(0.0));
    assert_eq!(value("accepted", "none"), Some(1.0));
    assert_eq!(value("tls_failure", "plaintext"), Some(1.0));
    assert_eq!(value("identity_refused", "no_match"), Some(1.0));
    let total: f64 = scrape.matching(attempts, &[]).map(|s| s.value).sum();
    assert_eq!(total, 5.0);

    let refused = "pgcordon_statements_refused_total";
    assert_eq!(
        scrape.value(refused, &[("reason", "set_config_protected")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(refused, &[("reason", "set_protected")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("pgcordon_client_received_bytes_total", &[]),
        Some(1234.0)
    );
    assert_eq!(
        scrape.value("pgcordon_client_sent_bytes_total", &[]),
        Some(99.0)
    );
    assert_eq!(
        scrape.value("pgcordon_audit_records_dropped_total", &[]),
        Some(3.0)
    );
}

#[test]
fn client_connection_guards_keep_the_gauge_exact() {
    let metrics = Metrics::new();
    let state = |scrape: &support::Scrape, s: &str| {
        scrape
            .value("pgcordon_client_connections", &[("state", s)])
            .unwrap()
    };

    let mut first = metrics.client_connection();
    let mut second = metrics.client_connection();
    let third = metrics.client_connection();
    first.set(ClientState::Startup);
    first.set(ClientState::Active);
    second.set(ClientState::Idle);
    second.set(ClientState::Idle);
    assert_eq!(first.state(), ClientState::Active);

    let scrape = parse(&metrics.render());
    assert_eq!(state(&scrape, "handshake"), 1.0);
    assert_eq!(state(&scrape, "startup"), 0.0);
    assert_eq!(state(&scrape, "active"), 1.0);
    assert_eq!(state(&scrape, "idle"), 1.0);

    drop(first);
    drop(third);
    let scrape = parse(&metrics.render());
    assert_eq!(state(&scrape, "active"), 0.0);
    assert_eq!(state(&scrape, "handshake"), 0.0);
    assert_eq!(state(&scrape, "idle"), 1.0);
}

#[test]
fn histograms_fill_the_right_buckets() {
    let metrics = Metrics::new();
    metrics.tls_handshake_seconds.observe(0.003);
    metrics.tls_handshake_seconds.observe(0.2);

    let scrape = parse(&metrics.render());
    let name = "pgcordon_tls_handshake_duration_seconds";
    let bucket = |le: &str| scrape.value(&format!("{name}_bucket"), &[("le", le)]);
    assert_eq!(bucket("0.0025"), Some(0.0));
    assert_eq!(bucket("0.005"), Some(1.0));
    assert_eq!(bucket("0.25"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(2.0));
    assert_eq!(scrape.value(&format!("{name}_count"), &[]), Some(2.0));
    let sum = scrape.value(&format!("{name}_sum"), &[]).unwrap();
    assert!((sum - 0.203).abs() < 1e-9, "{sum}");
}

#[test]
fn target_handles_are_labelled_and_shared() {
    let metrics = Metrics::new();
    let primary = metrics.target("primary", TargetRole::Primary).unwrap();
    let again = metrics.target("primary", TargetRole::Primary).unwrap();
    let replica = metrics.target("replica-1", TargetRole::Replica).unwrap();
    primary.transactions.inc();
    again.transactions.inc();
    primary.queries.inc_by(5);
    replica.queries.inc();
    primary.acquire_wait_seconds.observe(0.000_2);
    primary.transaction_overhead_seconds.observe(0.000_04);
    primary.connect_failed(UpstreamConnectFailure::Timeout);
    replica.auth_failed(UpstreamAuthFailure::Rejected);
    replica.set_healthy(true);
    primary.set_healthy(false);

    let scrape = parse(&metrics.render());
    let target = |t| [("target", t)];
    assert_eq!(
        scrape.value("pgcordon_transactions_total", &target("primary")),
        Some(2.0)
    );
    assert_eq!(
        scrape.value("pgcordon_queries_total", &target("primary")),
        Some(5.0)
    );
    assert_eq!(
        scrape.value("pgcordon_queries_total", &target("replica-1")),
        Some(1.0)
    );
    let waits = "pgcordon_pool_acquire_wait_seconds_count";
    assert_eq!(scrape.value(waits, &target("primary")), Some(1.0));
    assert_eq!(scrape.value(waits, &target("replica-1")), Some(0.0));
    let overhead = "pgcordon_transaction_overhead_seconds_bucket";
    let le = [("target", "primary"), ("le", "0.00005")];
    assert_eq!(scrape.value(overhead, &le), Some(1.0));
    let connect = "pgcordon_upstream_connect_failures_total";
    let timeout = [("target", "primary"), ("reason", "timeout")];
    assert_eq!(scrape.value(connect, &timeout), Some(1.0));
    let reasons = scrape.matching(connect, &target("replica-1")).count();
    assert_eq!(reasons, UpstreamConnectFailure::ALL.len());
    let rejected = [("target", "replica-1"), ("reason", "rejected")];
    assert_eq!(
        scrape.value("pgcordon_upstream_auth_failures_total", &rejected),
        Some(1.0)
    );
    // Only replicas have a health series, so an alert on it never fires for the primary.
    assert_eq!(
        scrape.value("pgcordon_replica_healthy", &target("replica-1")),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("pgcordon_replica_healthy", &target("primary")),
        None
    );
}

#[test]
fn target_registration_refuses_addresses_and_role_changes() {
    let metrics = Metrics::new();
    for bad in ["db.internal", "10.1.2.3", "fd00::1"] {
        let error = metrics.target(bad, TargetRole::Replica).unwrap_err();
        assert!(matches!(error, MetricsError::TargetName { .. }), "{error}");
    }
    metrics.target("primary", TargetRole::Primary).unwrap();
    let error = metrics.target("primary", TargetRole::Replica).unwrap_err();
    assert!(
        matches!(error, MetricsError::RoleMismatch { .. }),
        "{error}"
    );
    for n in 1..pgcordon_metrics::MAX_TARGETS {
        metrics
            .target(&format!("replica-{n}"), TargetRole::Replica)
            .unwrap();
    }
    let error = metrics
        .target("one-too-many", TargetRole::Replica)
        .unwrap_err();
    assert!(
        matches!(error, MetricsError::TooManyTargets { .. }),
        "{error}"
    );
}

#[test]
fn pool_gauges_are_read_at_scrape_time() {
    let metrics = Metrics::new();
    let primary = metrics.target("primary", TargetRole::Primary).unwrap();
    let idle = Arc::new(AtomicU64::new(3));
    let seen = idle.clone();
    metrics.set_pool_source(&primary, move || PoolStats {
        idle: seen.load(Ordering::Relaxed),
        active: 2,
        max: 20,
        waiting: 1,
    });

    let scrape = parse(&metrics.render());
    let pool = |scrape: &support::Scrape, state| {
        scrape.value(
            "pgcordon_pool_connections",
            &[("target", "primary"), ("state", state)],
        )
    };
    assert_eq!(pool(&scrape, "idle"), Some(3.0));
    assert_eq!(pool(&scrape, "active"), Some(2.0));
    let one = [("target", "primary")];
    assert_eq!(
        scrape.value("pgcordon_pool_max_connections", &one),
        Some(20.0)
    );
    assert_eq!(
        scrape.value("pgcordon_pool_waiting_clients", &one),
        Some(1.0)
    );

    idle.store(7, Ordering::Relaxed);
    assert_eq!(pool(&parse(&metrics.render()), "idle"), Some(7.0));

    // A replacement callback takes over; the old one is no longer read.
    metrics.set_pool_source(&primary, PoolStats::default);
    assert_eq!(pool(&parse(&metrics.render()), "idle"), Some(0.0));
}

#[test]
fn reloads_count_and_flag_the_last_outcome() {
    let metrics = Metrics::new();
    let last = |m: &Metrics| parse(&m.render()).value("pgcordon_last_reload_successful", &[]);
    assert_eq!(last(&metrics), Some(1.0));
    metrics.reload(ReloadOutcome::Failure);
    assert_eq!(last(&metrics), Some(0.0));
    metrics.reload(ReloadOutcome::Success);
    assert_eq!(last(&metrics), Some(1.0));
    let scrape = parse(&metrics.render());
    for outcome in ["success", "failure"] {
        let value = scrape.value("pgcordon_reloads_total", &[("outcome", outcome)]);
        assert_eq!(value, Some(1.0), "{outcome}");
    }
}

#[test]
fn no_label_value_looks_like_an_address_or_identity() {
    let metrics = exercised();
    let scrape = parse(&metrics.render());
    for sample in &scrape.samples {
        for (key, value) in &sample.labels {
            if key == "le" || key == "version" {
                continue;
            }
            let bounded = value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            assert!(
                bounded && value.len() <= 32,
                "{} {key}={value:?}",
                sample.name
            );
        }
    }
}
