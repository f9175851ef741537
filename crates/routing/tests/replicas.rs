//! Routing against real PostgreSQL 15 streaming replicas: replicas enter rotation, leave it when
//! replay is paused and the primary writes past the byte or time limit, and come back when
//! replay resumes; reads that must see a write go only to replicas that replayed it, or wait for
//! one within the bound; a stopped replica leaves rotation and returns when started; a "primary"
//! that is in recovery refuses writes.

mod support;

use std::time::Duration;

use pgcordon_routing::{
    current_wal_lsn, CheckError, Lsn, RoutingError, RoutingSettings, Targets, Unhealthy,
};
use support::{eventually, fast_settings, timed, Fixture};

/// How long a replica may take to change state: a few check intervals plus a slow machine.
const STATE_CHANGE: Duration = Duration::from_secs(10);

fn targets(f: &Fixture, replicas: &[usize], settings: RoutingSettings) -> Targets {
    let replicas = replicas.iter().map(|&i| f.replica_spec(i)).collect();
    Targets::new(f.primary_spec(), replicas, settings).expect("targets")
}

/// Waits until every replica of `t` is in rotation.
async fn all_healthy(t: &Targets) {
    eventually("all replicas healthy", STATE_CHANGE, || {
        for r in t.replicas() {
            let h = r.health();
            if !h.is_healthy() {
                return Err(format!("{}: {h:?}", r.name()));
            }
        }
        Ok(())
    })
    .await;
}

/// The primary's position now, read through its own pool.
async fn primary_lsn(t: &Targets) -> Lsn {
    let mut session = t.primary().pool().acquire().await.expect("primary session");
    current_wal_lsn(&mut session.backend, "primary")
        .await
        .expect("primary position")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_takes_a_replica_out_and_replay_brings_it_back() {
    let f = Fixture::start(2).await;
    let t = targets(&f, &[0, 1], fast_settings());
    let checks = t.spawn_health_checks();
    all_healthy(&t).await;
    assert!(t.primary().health().is_healthy());
    assert!(!t.primary_in_recovery());

    // Picked replicas are real standbys: their sessions cannot report a write position.
    let lease = t.pick_replica(None).expect("a healthy replica");
    let mut session = lease.pool().acquire().await.expect("replica session");
    match current_wal_lsn(&mut session.backend, lease.name()).await {
        Err(CheckError::Server { code, .. }) => assert_eq!(code, "55000"),
        other => panic!("a replica reported a write position: {other:?}"),
    }
    drop(session);

    // Least outstanding work: with one lease held, the next read goes to the other replica.
    let other = t.pick_replica(None).expect("a second replica");
    assert_ne!(lease.name(), other.name());
    drop((lease, other));

    // Replica 0 stops replaying; a small write leaves it behind but within the byte limit.
    f.pause_replay(0).await;
    f.write_rows(10);
    let small_write = primary_lsn(&t).await;
    eventually(
        "replica-0 behind in rotation, replica-1 caught up",
        STATE_CHANGE,
        || {
            let (r0, r1) = (t.replicas()[0].health(), t.replicas()[1].health());
            let r0_behind = r0.is_healthy() && r0.lsn < Some(small_write);
            let r1_caught_up = r1.is_healthy() && r1.lsn >= Some(small_write);
            match r0_behind && r1_caught_up {
                true => Ok(()),
                false => Err(format!("replica-0 {r0:?}, replica-1 {r1:?}")),
            }
        },
    )
    .await;

    // A read that must see the write goes only where it was replayed; other reads go to both.
    for _ in 0..20 {
        let lease = t.pick_replica(Some(small_write)).expect("replica-1");
        assert_eq!(lease.name(), "replica-1");
    }
    let (a, b) = (t.pick_replica(None), t.pick_replica(None));
    let mut names = [a, b].map(|l| l.expect("a replica").name().to_owned());
    names.sort();
    assert_eq!(names, ["replica-0", "replica-1"]);

    // About 3 MB more of WAL.
    f.write_rows(3000);
    let after_write = primary_lsn(&t).await;

    // The paused replica falls past the byte limit and leaves rotation.
    eventually("replica-0 out for lag", STATE_CHANGE, || {
        let h = t.replicas()[0].health();
        match h.unhealthy {
            Some(Unhealthy::LagBytes { bytes, .. }) if bytes > 1 << 20 => Ok(()),
            _ => Err(format!("{h:?}")),
        }
    })
    .await;
    // The streaming replica replays the same 3 MB; on a loaded machine it may trail the byte
    // limit for a moment too, so wait for it to be in rotation, then every read goes to it.
    eventually("replica-1 in rotation", STATE_CHANGE, || {
        let h = t.replicas()[1].health();
        match h.unhealthy {
            None => Ok(()),
            Some(_) => Err(format!("{h:?}")),
        }
    })
    .await;
    for _ in 0..10 {
        let lease = t.pick_replica(None).expect("replica-1 stays in rotation");
        assert_eq!(lease.name(), "replica-1");
    }

    // Read-your-writes waits: none in time while replay is paused, then one once it resumes.
    let ryw = RoutingSettings {
        ryw_wait: Duration::from_millis(1500),
        ..fast_settings()
    };
    let waiting = targets(&f, &[0], ryw);
    let waiting_checks = waiting.spawn_health_checks();
    let (lease, took) = timed(waiting.wait_for_replica(after_write)).await;
    assert!(lease.is_none(), "a paused replica was handed out");
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}"
    );

    let resume = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        f.replica_sql(0, "SELECT pg_wal_replay_resume();");
    };
    let ((lease, took), ()) = tokio::join!(timed(waiting.wait_for_replica(after_write)), resume);
    let lease = lease.expect("replica-0 after resume");
    assert_eq!(lease.name(), "replica-0");
    assert!(
        (Duration::from_millis(200)..Duration::from_millis(1500)).contains(&took),
        "took {took:?}"
    );
    assert!(lease.health().lsn >= Some(after_write));
    drop(lease);

    // And it is back in the main rotation.
    all_healthy(&t).await;

    waiting.close();
    t.close();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        checks.await.expect("check task");
        waiting_checks.await.expect("check task");
    });
    ended.await.expect("health checks stop after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_lag_takes_a_paused_replica_out() {
    let f = Fixture::start(1).await;
    let settings = RoutingSettings {
        max_lag_bytes: u64::MAX,
        max_lag: Duration::from_secs(1),
        ..fast_settings()
    };
    let t = targets(&f, &[0], settings);
    let _checks = t.spawn_health_checks();

    // Idle for longer than the limit: a caught-up replica is not "late", however old its last
    // replayed transaction.
    f.write_rows(1);
    all_healthy(&t).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = t.replicas()[0].health();
    // (Background WAL such as a checkpoint may put it a few milliseconds behind now and then.)
    assert!(h.is_healthy(), "{h:?}");
    assert!(h.lag_seconds.is_some_and(|s| s < 0.5), "{h:?}");

    f.pause_replay(0).await;
    f.write_rows(1);
    eventually("replica-0 out for time lag", STATE_CHANGE, || {
        let h = t.replicas()[0].health();
        match h.unhealthy {
            Some(Unhealthy::LagTime { seconds, .. }) if seconds > 1.0 => Ok(()),
            _ => Err(format!("{h:?}")),
        }
    })
    .await;
    assert!(t.pick_replica(None).is_none());

    f.replica_sql(0, "SELECT pg_wal_replay_resume();");
    all_healthy(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_leaves_and_a_standby_primary_refuses_writes() {
    let mut f = Fixture::start(1).await;

    // A "primary" that is in fact a standby: found in recovery, writes refused.
    let standby_port = f.replicas[0].port();
    let wrong =
        Targets::new(f.spec("primary", standby_port), vec![], fast_settings()).expect("targets");
    let _wrong_checks = wrong.spawn_health_checks();
    eventually("standby primary detected", STATE_CHANGE, || {
        match wrong.primary_for_writes() {
            Err(RoutingError::PrimaryInRecovery { .. }) => Ok(()),
            other => Err(format!("{:?}", other.map(|p| p.name().to_owned()))),
        }
    })
    .await;
    assert!(wrong.primary_in_recovery());
    let h = wrong.primary().health();
    assert_eq!(h.unhealthy, Some(Unhealthy::InRecovery));
    assert_eq!(h.in_recovery, Some(true));
    wrong.close();

    let t = targets(&f, &[0], fast_settings());
    let _checks = t.spawn_health_checks();
    all_healthy(&t).await;
    assert!(t.primary_for_writes().is_ok());
    assert!(t.pick_replica(None).is_some());

    tokio::task::block_in_place(|| f.replicas[0].stop()).expect("stop the replica");
    eventually("stopped replica out", STATE_CHANGE, || {
        let h = t.replicas()[0].health();
        match (&h.unhealthy, &h.last_error) {
            (Some(Unhealthy::Unreachable), Some(_)) => Ok(()),
            _ => Err(format!("{h:?}")),
        }
    })
    .await;
    assert!(t.pick_replica(None).is_none());

    tokio::task::block_in_place(|| f.replicas[0].start()).expect("start the replica");
    all_healthy(&t).await;
    let lease = t.pick_replica(None).expect("the replica is back");
    assert_eq!(lease.name(), "replica-0");
}
