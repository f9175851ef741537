//! Unit tests of selection and write refusal, fed with made-up check results through the same
//! path real checks take (`Shared::apply`). No server is contacted: pools open nothing until
//! asked.

use std::sync::Arc;
use std::time::Duration;

use pgcordon_pool::PoolSettings;
use pgcordon_upstream::{ChannelBindingPolicy, PasswordSource, Secret, UpstreamSettings};

use super::*;
use crate::health::Unhealthy;

fn upstream() -> UpstreamSettings {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    UpstreamSettings {
        host: "127.0.0.1".into(),
        port: 1,
        database: "app".into(),
        user: "app".into(),
        password: PasswordSource::Value(Secret::new("unused")),
        tls: Arc::new(tls),
        server_name: rustls_pki_types::ServerName::try_from("localhost").unwrap(),
        connect_timeout: Duration::from_secs(1),
        channel_binding: ChannelBindingPolicy::Prefer,
        allow_cleartext_password: false,
        allow_md5_password: false,
        startup_params: Vec::new(),
    }
}

fn spec(name: &str) -> TargetSpec {
    TargetSpec {
        name: name.into(),
        upstream: upstream(),
        pool: PoolSettings {
            size: 2,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(1),
            server_lifetime: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        },
    }
}

fn settings(ryw_wait: Duration) -> RoutingSettings {
    RoutingSettings {
        check_interval: Duration::from_secs(1),
        check_timeout: Duration::from_secs(1),
        max_lag_bytes: 1 << 20,
        max_lag: Duration::from_secs(30),
        ryw_wait,
    }
}

fn targets(replicas: usize, ryw_wait: Duration) -> Targets {
    let replicas = (0..replicas)
        .map(|i| spec(&format!("replica-{i}")))
        .collect();
    Targets::new(spec("primary"), replicas, settings(ryw_wait)).unwrap()
}

fn observe(targets: &Targets, which: Which, in_recovery: bool, lsn: u64) {
    let obs = Observation {
        in_recovery,
        lsn: Some(Lsn::new(lsn)),
        replay_age: Some(0.5),
    };
    targets.shared.apply(which, Ok(obs));
}

fn name(lease: &Option<ReplicaLease>) -> &str {
    lease.as_ref().map_or("primary", |l| l.name())
}

#[test]
fn nothing_is_picked_before_the_first_checks() {
    let t = targets(2, Duration::ZERO);
    assert!(t.pick_replica(None).is_none());
    assert_eq!(
        t.replicas()[0].health().unhealthy,
        Some(Unhealthy::NotChecked)
    );
}

#[test]
fn least_outstanding_first_then_in_turn() {
    let t = targets(2, Duration::ZERO);
    observe(&t, Which::Primary, false, 1000);
    observe(&t, Which::Replica(0), true, 1000);
    observe(&t, Which::Replica(1), true, 1000);

    // Idle replicas are taken in turn.
    let turns: Vec<String> = (0..4)
        .map(|_| name(&t.pick_replica(None)).to_owned())
        .collect();
    assert_eq!(turns.iter().filter(|n| *n == "replica-0").count(), 2);
    assert_eq!(turns.iter().filter(|n| *n == "replica-1").count(), 2);

    // Busy replicas are avoided, whatever the turn.
    let a = t.pick_replica(None);
    let b = t.pick_replica(None);
    assert_ne!(name(&a), name(&b));
    let c = t.pick_replica(None);
    let busiest = c.as_ref().unwrap().name().to_owned();
    assert_eq!(
        t.replicas().iter().map(Target::outstanding).sum::<usize>(),
        3
    );
    for _ in 0..5 {
        let next = t.pick_replica(None);
        assert_ne!(name(&next), busiest);
    }
    drop((a, b, c));
    assert_eq!(
        t.replicas().iter().map(Target::outstanding).sum::<usize>(),
        0
    );
}

#[test]
fn a_minimum_position_excludes_replicas_that_have_not_replayed_it() {
    let t = targets(2, Duration::ZERO);
    observe(&t, Which::Primary, false, 1000);
    observe(&t, Which::Replica(0), true, 900);
    observe(&t, Which::Replica(1), true, 1000);
    for _ in 0..4 {
        let lease = t.pick_replica(Some(Lsn::new(1000)));
        assert_eq!(name(&lease), "replica-1");
    }
    assert!(t.pick_replica(Some(Lsn::new(1001))).is_none());
    // Without a minimum, the replica 100 bytes behind is still in rotation.
    let held = t.pick_replica(None);
    let other = t.pick_replica(None);
    assert_ne!(name(&held), name(&other));
}

#[test]
fn a_primary_in_recovery_refuses_writes_until_it_is_out() {
    let t = targets(0, Duration::ZERO);
    assert!(t.primary_for_writes().is_ok());
    observe(&t, Which::Primary, true, 1000);
    assert!(t.primary_in_recovery());
    let err = t.primary_for_writes().err().unwrap();
    assert!(matches!(err, RoutingError::PrimaryInRecovery { ref name } if name == "primary"));
    assert!(err.to_string().contains("writes are refused"), "{err}");

    // Unreachable: still treated as in recovery, the last thing known.
    let down = CheckError::Timeout {
        target: "primary".into(),
        after: Duration::from_secs(1),
    };
    t.shared.apply(Which::Primary, Err(down));
    assert!(t.primary_for_writes().is_err());

    observe(&t, Which::Primary, false, 2000);
    assert!(t.primary_for_writes().is_ok());
}

#[tokio::test]
async fn waiting_returns_when_a_check_shows_the_position_or_gives_up() {
    let t = targets(1, Duration::from_millis(300));
    observe(&t, Which::Primary, false, 2000);
    observe(&t, Which::Replica(0), true, 1000);

    let started = tokio::time::Instant::now();
    assert!(t.wait_for_replica(Lsn::new(2000)).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(300));

    let feeder = t.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        observe(&feeder, Which::Replica(0), true, 2000);
    });
    let started = tokio::time::Instant::now();
    let lease = t.wait_for_replica(Lsn::new(2000)).await;
    assert_eq!(name(&lease), "replica-0");
    assert!(started.elapsed() < Duration::from_millis(300));
    later.await.unwrap();

    let no_wait = targets(1, Duration::ZERO);
    observe(&no_wait, Which::Primary, false, 2000);
    observe(&no_wait, Which::Replica(0), true, 1000);
    assert!(no_wait.wait_for_replica(Lsn::new(2000)).await.is_none());
    assert!(no_wait.wait_for_replica(Lsn::new(1000)).await.is_some());
}

#[test]
fn names_must_be_present_and_unique_and_pools_valid() {
    let dup = Targets::new(
        spec("a"),
        vec![spec("b"), spec("a")],
        settings(Duration::ZERO),
    );
    assert!(matches!(dup.err(), Some(RoutingError::DuplicateName { name }) if name == "a"));
    let empty = Targets::new(spec(""), vec![], settings(Duration::ZERO));
    assert!(matches!(empty.err(), Some(RoutingError::EmptyName)));
    let mut zero = spec("r");
    zero.pool.size = 0;
    let pool = Targets::new(spec("p"), vec![zero], settings(Duration::ZERO));
    assert!(matches!(pool.err(), Some(RoutingError::EmptyPool { name }) if name == "r"));
}
