//! Unit tests of the health rules, with observations made up in memory.

use super::*;

fn limits() -> RoutingSettings {
    RoutingSettings {
        check_interval: Duration::from_secs(1),
        check_timeout: Duration::from_secs(1),
        max_lag_bytes: 1000,
        max_lag: Duration::from_secs(5),
        ryw_wait: Duration::ZERO,
    }
}

fn replica(lsn: u64, replay_age: Option<f64>) -> Observation {
    Observation {
        in_recovery: true,
        lsn: Some(Lsn::new(lsn)),
        replay_age,
    }
}

fn history(samples: &[(u64, Instant)]) -> PrimaryHistory {
    let mut h = PrimaryHistory::default();
    for (lsn, at) in samples {
        h.record(Lsn::new(*lsn), *at);
    }
    h
}

#[test]
fn a_caught_up_replica_is_healthy_however_old_its_last_transaction() {
    let now = Instant::now();
    let h = history(&[(5000, now)]);
    let s = judge_replica(&replica(5000, Some(3600.0)), &h, &limits(), now);
    assert!(s.is_healthy(), "{s:?}");
    assert_eq!(s.lag_bytes, Some(0));
    assert_eq!(s.lag_seconds, Some(0.0));
}

#[test]
fn a_replica_ahead_of_the_last_primary_sample_is_not_behind() {
    let now = Instant::now();
    let h = history(&[(5000, now)]);
    let s = judge_replica(&replica(6000, Some(1.0)), &h, &limits(), now);
    assert!(s.is_healthy());
    assert_eq!(s.lag_bytes, Some(0));
}

#[test]
fn too_many_bytes_behind_leaves_rotation() {
    let now = Instant::now();
    let h = history(&[(5000, now)]);
    let within = judge_replica(&replica(4000, Some(0.1)), &h, &limits(), now);
    assert!(within.is_healthy(), "{within:?}");
    let past = judge_replica(&replica(3999, Some(0.1)), &h, &limits(), now);
    assert_eq!(
        past.unhealthy,
        Some(Unhealthy::LagBytes {
            bytes: 1001,
            max: 1000
        })
    );
}

#[test]
fn too_old_while_behind_leaves_rotation() {
    let now = Instant::now();
    let h = history(&[(5000, now)]);
    let s = judge_replica(&replica(4900, Some(6.0)), &h, &limits(), now);
    assert!(
        matches!(s.unhealthy, Some(Unhealthy::LagTime { .. })),
        "{s:?}"
    );
    assert_eq!(s.lag_seconds, Some(6.0));
}

#[test]
fn time_lag_is_capped_by_when_the_primary_was_last_at_the_replay_position() {
    // The primary sat at 4900 for an hour (the replica's last transaction is an hour old), then
    // one write moved it to 5000 a moment ago: the replica is 0.2 s behind, not an hour.
    let now = Instant::now();
    let h = history(&[
        (4900, now - Duration::from_secs(3600)),
        (4900, now - Duration::from_millis(200)),
        (5000, now),
    ]);
    let s = judge_replica(&replica(4900, Some(3600.0)), &h, &limits(), now);
    assert!(s.is_healthy(), "{s:?}");
    let seconds = s.lag_seconds.unwrap();
    assert!((0.19..0.3).contains(&seconds), "{seconds}");

    // A replica behind every position the history holds is judged on its timestamp alone.
    let s = judge_replica(&replica(4500, Some(7.0)), &h, &limits(), now);
    assert!(
        matches!(s.unhealthy, Some(Unhealthy::LagTime { .. })),
        "{s:?}"
    );
}

#[test]
fn replicas_that_cannot_be_measured_stay_out() {
    let now = Instant::now();
    let h = history(&[(5000, now)]);
    let promoted = Observation {
        in_recovery: false,
        ..replica(5000, None)
    };
    assert_eq!(
        judge_replica(&promoted, &h, &limits(), now).unhealthy,
        Some(Unhealthy::NotInRecovery)
    );
    let no_position = Observation {
        lsn: None,
        ..replica(0, None)
    };
    assert_eq!(
        judge_replica(&no_position, &h, &limits(), now).unhealthy,
        Some(Unhealthy::NoReplayPosition)
    );
    let unknown_primary = PrimaryHistory::default();
    assert_eq!(
        judge_replica(&replica(5000, None), &unknown_primary, &limits(), now).unhealthy,
        Some(Unhealthy::PrimaryPositionUnknown)
    );
}

#[test]
fn a_primary_in_recovery_is_unhealthy() {
    let now = Instant::now();
    let standby = replica(5000, None);
    assert_eq!(
        judge_primary(&standby, now).unhealthy,
        Some(Unhealthy::InRecovery)
    );
    let primary = Observation {
        in_recovery: false,
        ..standby
    };
    assert!(judge_primary(&primary, now).is_healthy());
}

#[test]
fn history_is_bounded_and_forgets_a_position_that_went_back() {
    let start = Instant::now();
    let mut h = PrimaryHistory::default();
    for i in 0..(PRIMARY_HISTORY_LEN as u64 * 3) {
        h.record(Lsn::new(i * 10), start + Duration::from_millis(i));
        h.record(Lsn::new(i * 10), start + Duration::from_millis(i));
    }
    assert_eq!(h.samples.len(), PRIMARY_HISTORY_LEN);
    h.record(Lsn::new(5), start);
    assert_eq!(h.samples.len(), 1);
    assert_eq!(h.latest(), Some(Lsn::new(5)));
}
