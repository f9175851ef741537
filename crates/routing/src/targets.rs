//! The upstream targets (one primary, any number of replicas) and choosing among them.
//!
//! Owns each target's pool and latest health, the count of reads in flight per replica (held
//! by [`ReplicaLease`]s), replica selection with an optional minimum replay position, the bounded
//! wait for a replica to reach a client's last write, and refusing writes while the primary is
//! in recovery. Health checks run in `monitor`; the rules are in `health`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use pgcordon_pool::BackendPool;
use pgcordon_upstream::UpstreamSettings;
use tokio::sync::{watch, Notify};

use crate::check::Observation;
use crate::error::{CheckError, RoutingError};
use crate::health::{judge_primary, judge_replica, HealthSnapshot, PrimaryHistory};
use crate::lsn::Lsn;
use crate::select::least_outstanding;
use crate::settings::{Role, RoutingSettings, TargetSpec};

/// One upstream server with its pool and latest health.
pub struct Target {
    name: String,
    role: Role,
    upstream: UpstreamSettings,
    pool: BackendPool,
    health: Mutex<HealthSnapshot>,
    outstanding: AtomicUsize,
    /// Asks this target's check loop for an early check.
    pub(crate) kick: Arc<Notify>,
}

impl Target {
    fn new(spec: TargetSpec, role: Role) -> Result<Target, RoutingError> {
        if spec.pool.size == 0 {
            return Err(RoutingError::EmptyPool { name: spec.name });
        }
        let pool = BackendPool::new(spec.upstream.clone(), spec.pool).map_err(|source| {
            let name = spec.name.clone();
            RoutingError::Pool { name, source }
        })?;
        Ok(Target {
            name: spec.name,
            role,
            upstream: spec.upstream,
            pool,
            health: Mutex::new(HealthSnapshot::not_checked()),
            outstanding: AtomicUsize::new(0),
            kick: Arc::new(Notify::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The pool of sessions to this target.
    pub fn pool(&self) -> &BackendPool {
        &self.pool
    }

    /// How this target is reached (the pool and the health check share it).
    pub fn upstream(&self) -> &UpstreamSettings {
        &self.upstream
    }

    /// What the latest health check found.
    pub fn health(&self) -> HealthSnapshot {
        lock(&self.health).clone()
    }

    /// Leases handed out for this target and not yet dropped (replicas only).
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Whether this replica may serve a read that must see `min_lsn`.
    fn can_serve(&self, min_lsn: Option<Lsn>) -> bool {
        let health = lock(&self.health);
        let replayed_enough = match (min_lsn, health.lsn) {
            (None, _) => true,
            (Some(min), Some(lsn)) => lsn >= min,
            (Some(_), None) => false,
        };
        health.is_healthy() && replayed_enough
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("health", &*lock(&self.health))
            .field("outstanding", &self.outstanding())
            .finish_non_exhaustive()
    }
}

/// A replica chosen for a read. Dropping it ends the read for the balancing count, so hold it
/// for as long as the transaction runs there.
pub struct ReplicaLease {
    shared: Arc<Shared>,
    index: usize,
}

impl ReplicaLease {
    /// The chosen replica.
    pub fn target(&self) -> &Target {
        &self.shared.replicas[self.index]
    }
}

impl std::fmt::Debug for ReplicaLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReplicaLease")
            .field(&self.target().name)
            .finish()
    }
}

impl std::ops::Deref for ReplicaLease {
    type Target = Target;

    fn deref(&self) -> &Target {
        self.target()
    }
}

impl Drop for ReplicaLease {
    fn drop(&mut self) {
        self.target().outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which target a check result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Primary,
    Replica(usize),
}

/// The state all handles and check loops share.
pub(crate) struct Shared {
    pub(crate) primary: Target,
    pub(crate) replicas: Vec<Target>,
    pub(crate) settings: RoutingSettings,
    history: Mutex<PrimaryHistory>,
    primary_in_recovery: AtomicBool,
    turn: AtomicUsize,
    /// Bumped after every applied check, so waiters look again.
    changed: watch::Sender<u64>,
    /// Set by [`Targets::close`]; check loops also stop when it is dropped.
    pub(crate) closed: watch::Sender<bool>,
}

/// The primary and the replicas, shared by every session (cloning is cheap).
#[derive(Clone)]
pub struct Targets {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("primary", &self.shared.primary)
            .field("replicas", &self.shared.replicas)
            .finish_non_exhaustive()
    }
}

impl Targets {
    /// Builds the targets and their pools; opens no connection (see
    /// [`Targets::spawn_health_checks`] and [`BackendPool::warm_up`]). Replicas are out of
    /// rotation until their first check.
    ///
    /// # Errors
    /// Invalid settings, an empty or repeated target name, or a pool that cannot be built.
    pub fn new(
        primary: TargetSpec,
        replicas: Vec<TargetSpec>,
        settings: RoutingSettings,
    ) -> Result<Targets, RoutingError> {
        settings.validate()?;
        let mut names = std::collections::HashSet::new();
        for name in std::iter::once(&primary.name).chain(replicas.iter().map(|r| &r.name)) {
            if name.is_empty() {
                return Err(RoutingError::EmptyName);
            }
            if !names.insert(name.as_str()) {
                let name = name.clone();
                return Err(RoutingError::DuplicateName { name });
            }
        }

        let primary = Target::new(primary, Role::Primary)?;
        let replicas = replicas
            .into_iter()
            .map(|spec| Target::new(spec, Role::Replica))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Shared {
            primary,
            replicas,
            settings,
            history: Mutex::default(),
            primary_in_recovery: AtomicBool::new(false),
            turn: AtomicUsize::new(0),
            changed: watch::Sender::new(0),
            closed: watch::Sender::new(false),
        };
        Ok(Targets {
            shared: Arc::new(shared),
        })
    }

    pub fn primary(&self) -> &Target {
        &self.shared.primary
    }

    pub fn replicas(&self) -> &[Target] {
        &self.shared.replicas
    }

    pub fn settings(&self) -> &RoutingSettings {
        &self.shared.settings
    }

    /// The primary, for a transaction that may write.
    ///
    /// # Errors
    /// [`RoutingError::PrimaryInRecovery`] while its last successful check found it in
    /// recovery; writes are never sent to another target instead.
    pub fn primary_for_writes(&self) -> Result<&Target, RoutingError> {
        if self.primary_in_recovery() {
            let name = self.shared.primary.name.clone();
            return Err(RoutingError::PrimaryInRecovery { name });
        }
        Ok(&self.shared.primary)
    }

    /// Whether the primary's last successful check found it in recovery. Stays set while the
    /// primary cannot be reached, until a check finds it out of recovery.
    pub fn primary_in_recovery(&self) -> bool {
        self.shared.primary_in_recovery.load(Ordering::Relaxed)
    }

    /// A healthy replica that has replayed `min_lsn` (when given), least outstanding work
    /// first. `None` means the caller uses the primary.
    pub fn pick_replica(&self, min_lsn: Option<Lsn>) -> Option<ReplicaLease> {
        let replicas = &self.shared.replicas;
        let candidates = replicas
            .iter()
            .enumerate()
            .filter(|(_, replica)| replica.can_serve(min_lsn))
            .map(|(index, replica)| (index, replica.outstanding()));
        let turn = self.shared.turn.fetch_add(1, Ordering::Relaxed);
        let index = least_outstanding(candidates, turn, replicas.len())?;
        replicas[index].outstanding.fetch_add(1, Ordering::Relaxed);
        Some(ReplicaLease {
            shared: self.shared.clone(),
            index,
        })
    }

    /// A replica that has replayed `lsn`, waiting up to `ryw_wait` for one to get there (the
    /// replicas are checked early meanwhile; with a zero `ryw_wait` it looks once). `None`
    /// means none got there in time: the caller uses the primary.
    pub async fn wait_for_replica(&self, lsn: Lsn) -> Option<ReplicaLease> {
        let wait = self.shared.settings.ryw_wait;
        if wait.is_zero() || self.shared.replicas.is_empty() {
            return self.pick_replica(Some(lsn));
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribe before looking, so a check applied in between is not missed.
        let mut changed = self.shared.changed.subscribe();
        loop {
            if let Some(lease) = self.pick_replica(Some(lsn)) {
                return Some(lease);
            }
            for replica in &self.shared.replicas {
                replica.kick.notify_one();
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return self.pick_replica(Some(lsn)),
            }
        }
    }

    /// Stops the health checks and closes every pool.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
        self.shared.primary.pool.close();
        for replica in &self.shared.replicas {
            replica.pool.close();
        }
    }
}

impl Shared {
    pub(crate) fn target(&self, which: Which) -> &Target {
        match which {
            Which::Primary => &self.primary,
            Which::Replica(index) => &self.replicas[index],
        }
    }

    /// Records the result of one check of `which`, logging changes of state.
    pub(crate) fn apply(&self, which: Which, result: Result<Observation, CheckError>) {
        let now = Instant::now();
        let snapshot = match (&result, which) {
            (Err(error), _) => HealthSnapshot::failed(error, now),
            (Ok(obs), Which::Primary) => {
                self.note_primary(obs, now);
                judge_primary(obs, now)
            }
            (Ok(obs), Which::Replica(_)) => {
                let history = lock(&self.history);
                judge_replica(obs, &history, &self.settings, now)
            }
        };

        let target = self.target(which);
        let previous = std::mem::replace(&mut *lock(&target.health), snapshot.clone());
        crate::monitor::log_transition(target, &previous, &snapshot);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Remembers the primary's position, and reports loudly when it is found in recovery.
    fn note_primary(&self, obs: &Observation, now: Instant) {
        if let (false, Some(lsn)) = (obs.in_recovery, obs.lsn) {
            lock(&self.history).record(lsn, now);
        }
        let was = self
            .primary_in_recovery
            .swap(obs.in_recovery, Ordering::Relaxed);
        match (was, obs.in_recovery) {
            (false, true) => tracing::error!(
                target.name = %self.primary.name,
                "the primary is in recovery (read-only): writes fail until it is a primary again"
            ),
            (true, false) => tracing::info!(
                target.name = %self.primary.name,
                "the primary is out of recovery: writes are accepted again"
            ),
            _ => {}
        }
    }
}

/// Locks a health mutex. A panic while it was held cannot leave a half-written snapshot (it is
/// replaced whole), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;
