//! The background health checks: one loop per target, and the log lines when a target changes
//! state.
//!
//! Owns the schedule: the primary is checked first, so that replicas have a position to be
//! measured against at their own first check; then every target is checked every
//! `check_interval`, and a replica may be checked early (at most every [`MIN_CHECK_GAP`]) when
//! a read is waiting for it to replay a client's write. The loops hold only a weak reference to
//! the targets and stop when the targets are closed or dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant};

use crate::check::Checker;
use crate::health::HealthSnapshot;
use crate::targets::{Shared, Target, Targets, Which};

/// Shortest time between two checks of one target when reads wait for it. Waiting reads ask
/// for a check each time they look; this keeps many of them from turning into a query storm
/// while still answering within a few tens of milliseconds.
const MIN_CHECK_GAP: Duration = Duration::from_millis(20);

/// How a loop paces itself after a check.
struct Pace {
    interval: Duration,
    kick: Arc<Notify>,
    closed: watch::Receiver<bool>,
}

impl Targets {
    /// Starts the health checks: the primary once, then one loop per target. The returned task
    /// ends when every loop has ended (after [`Targets::close`] or when the last handle to the
    /// targets is dropped); aborting it stops the loops. Call it once.
    ///
    /// Each loop keeps one checking connection to its target, opened with the target's own
    /// upstream settings (the pool's verify-full TLS and SCRAM), re-opened after a failure.
    pub fn spawn_health_checks(&self) -> JoinHandle<()> {
        let shared = &self.shared;
        let timeout = shared.settings.check_timeout;
        let checker = |target: &Target| Checker::new(target.name(), target.upstream(), timeout);
        let pace = |target: &Target| Pace {
            interval: shared.settings.check_interval,
            kick: target.kick.clone(),
            closed: shared.closed.subscribe(),
        };

        let mut loops = vec![(
            Which::Primary,
            checker(&shared.primary),
            pace(&shared.primary),
        )];
        for (index, replica) in shared.replicas.iter().enumerate() {
            loops.push((Which::Replica(index), checker(replica), pace(replica)));
        }
        tokio::spawn(run_all(Arc::downgrade(shared), loops))
    }
}

async fn run_all(shared: Weak<Shared>, loops: Vec<(Which, Checker, Pace)>) {
    let mut tasks = JoinSet::new();
    for (which, mut checker, mut pace) in loops {
        if which == Which::Primary {
            if !check_and_apply(&shared, which, &mut checker, &mut pace).await {
                return;
            }
            tasks.spawn(run_loop(shared.clone(), which, checker, pace, true));
        } else {
            tasks.spawn(run_loop(shared.clone(), which, checker, pace, false));
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Checks `which` forever, pausing between checks; returns when the targets are gone.
async fn run_loop(
    shared: Weak<Shared>,
    which: Which,
    mut checker: Checker,
    mut pace: Pace,
    pause_first: bool,
) {
    let mut last_check = Instant::now();
    if pause_first && !pace.pause(last_check).await {
        return;
    }
    loop {
        last_check = Instant::now();
        if !check_and_apply(&shared, which, &mut checker, &mut pace).await {
            return;
        }
        if !pace.pause(last_check).await {
            return;
        }
    }
}

/// Runs one check and records it; `false` when the targets were closed or dropped meanwhile.
async fn check_and_apply(
    shared: &Weak<Shared>,
    which: Which,
    checker: &mut Checker,
    pace: &mut Pace,
) -> bool {
    let result = tokio::select! {
        result = checker.check() => result,
        _ = stopped(&mut pace.closed) => return false,
    };
    let Some(shared) = shared.upgrade() else {
        return false;
    };
    shared.apply(which, result);
    true
}

impl Pace {
    /// Waits until the next check is due or an early one is asked for; `false` when the
    /// targets were closed or dropped.
    async fn pause(&mut self, last_check: Instant) -> bool {
        let kicked = tokio::select! {
            _ = sleep_until(last_check + self.interval) => false,
            _ = self.kick.notified() => true,
            _ = stopped(&mut self.closed) => return false,
        };
        if kicked {
            tokio::select! {
                _ = sleep_until(last_check + MIN_CHECK_GAP) => {}
                _ = stopped(&mut self.closed) => return false,
            }
        }
        true
    }
}

/// Resolves when the targets are closed or dropped (the sender is gone).
async fn stopped(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

/// Logs a target entering or leaving service: a replica leaving rotation and an unreachable
/// primary are warnings (so is a target found unusable at its first check); a primary in
/// recovery is logged as an error where it is detected.
pub(crate) fn log_transition(target: &Target, before: &HealthSnapshot, after: &HealthSnapshot) {
    let name = target.name();
    let role = target.role().as_str();
    let error = after.last_error.as_deref().unwrap_or("");
    let first_check = before.checked_at.is_none();
    let Some(reason) = &after.unhealthy else {
        if !before.is_healthy() {
            tracing::info!(
                target.name = %name,
                target.role = role,
                lsn = after.lsn.map(tracing::field::display),
                "target in service"
            );
        }
        return;
    };
    if before.is_healthy() || first_check {
        tracing::warn!(
            target.name = %name,
            target.role = role,
            reason = %reason,
            error,
            "target out of service"
        );
        return;
    }
    let same_kind = before
        .unhealthy
        .as_ref()
        .is_some_and(|old| std::mem::discriminant(old) == std::mem::discriminant(reason));
    if !same_kind {
        tracing::debug!(
            target.name = %name,
            target.role = role,
            reason = %reason,
            error,
            "target still out of service"
        );
    }
}
