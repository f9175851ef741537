//! Judging a target from its latest check: healthy or not, and how far a replica lags.
//!
//! Owns the rules. A replica is in rotation when it is reachable, in recovery, has a replay
//! position, and is within both lag limits against the primary's latest known position. A
//! primary is healthy when it is reachable and not in recovery. It does not run checks (see
//! `check`) or pick targets (see `targets`).
//!
//! Lag in bytes is the primary's latest write position minus the replica's replay position.
//! Lag in time is `now - pg_last_xact_replay_timestamp()` on the replica, counted only while the
//! replica is behind the primary's latest position: on an idle primary that timestamp ages
//! without the replica missing anything. It is also capped by the time since the primary was
//! last seen at or below the replica's replay position, because the replica then held
//! everything the primary had written: after a long idle period a single new write would
//! otherwise make a replica that is milliseconds behind look minutes late.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::check::Observation;
use crate::error::CheckError;
use crate::lsn::Lsn;
use crate::settings::RoutingSettings;

/// Primary positions remembered for the time-lag cap. Equal consecutive positions share one
/// entry, so an idle primary uses one; 256 distinct positions cover minutes at one check a
/// second, longer than any sensible `max_lag`.
const PRIMARY_HISTORY_LEN: usize = 256;

/// Why a target is not usable.
#[derive(Debug, Clone, PartialEq)]
pub enum Unhealthy {
    /// No check has finished yet.
    NotChecked,
    /// The latest check failed; `last_error` says why.
    Unreachable,
    /// A primary that is in recovery (a standby): it cannot take writes.
    InRecovery,
    /// A replica that is not in recovery (promoted, or not a replica at all).
    NotInRecovery,
    /// A replica in recovery that reports no replay position.
    NoReplayPosition,
    /// No position of the primary is known yet, so the replica's lag cannot be measured.
    PrimaryPositionUnknown,
    /// A replica further behind in WAL bytes than allowed.
    LagBytes { bytes: u64, max: u64 },
    /// A replica further behind in time than allowed.
    LagTime { seconds: f64, max: Duration },
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::NotChecked => f.write_str("not checked yet"),
            Unhealthy::Unreachable => f.write_str("health check failed"),
            Unhealthy::InRecovery => f.write_str("primary is in recovery"),
            Unhealthy::NotInRecovery => f.write_str("replica is not in recovery"),
            Unhealthy::NoReplayPosition => f.write_str("replica reports no replay position"),
            Unhealthy::PrimaryPositionUnknown => f.write_str("primary position not known yet"),
            Unhealthy::LagBytes { bytes, max } => {
                write!(f, "{bytes} WAL bytes behind (limit {max})")
            }
            Unhealthy::LagTime { seconds, max } => {
                write!(f, "{seconds:.3}s behind (limit {:.3}s)", max.as_secs_f64())
            }
        }
    }
}

/// What the latest check of a target found.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    /// Why the target is not usable; `None` when it is healthy.
    pub unhealthy: Option<Unhealthy>,
    /// `pg_is_in_recovery()` from the latest successful check.
    pub in_recovery: Option<bool>,
    /// A replica's replay position, or the primary's current write position.
    pub lsn: Option<Lsn>,
    /// How many WAL bytes a replica is behind the primary's latest known position.
    pub lag_bytes: Option<u64>,
    /// How many seconds a replica is behind (see the module documentation).
    pub lag_seconds: Option<f64>,
    /// The error of the latest check, if it failed.
    pub last_error: Option<String>,
    /// When the latest check finished.
    pub checked_at: Option<Instant>,
}

impl HealthSnapshot {
    /// The state before any check.
    pub(crate) fn not_checked() -> HealthSnapshot {
        HealthSnapshot {
            unhealthy: Some(Unhealthy::NotChecked),
            in_recovery: None,
            lsn: None,
            lag_bytes: None,
            lag_seconds: None,
            last_error: None,
            checked_at: None,
        }
    }

    /// Whether the target may be used (for a replica: is in rotation).
    pub fn is_healthy(&self) -> bool {
        self.unhealthy.is_none()
    }

    /// A failed check: nothing is known about the server any more.
    pub(crate) fn failed(error: &CheckError, now: Instant) -> HealthSnapshot {
        HealthSnapshot {
            unhealthy: Some(Unhealthy::Unreachable),
            last_error: Some(error.to_string()),
            checked_at: Some(now),
            ..HealthSnapshot::not_checked()
        }
    }

    fn observed(obs: &Observation, now: Instant) -> HealthSnapshot {
        HealthSnapshot {
            unhealthy: None,
            in_recovery: Some(obs.in_recovery),
            lsn: obs.lsn,
            checked_at: Some(now),
            ..HealthSnapshot::not_checked()
        }
    }
}

/// Recent write positions of the primary and when each was last seen.
#[derive(Debug, Default)]
pub(crate) struct PrimaryHistory {
    samples: VecDeque<(Lsn, Instant)>,
}

impl PrimaryHistory {
    /// Records that the primary was at `lsn` at `at`.
    pub(crate) fn record(&mut self, lsn: Lsn, at: Instant) {
        match self.samples.back_mut() {
            Some(last) if last.0 == lsn => last.1 = at,
            // A position going back means another server or timeline: the past says nothing.
            Some(last) if lsn < last.0 => {
                self.samples.clear();
                self.samples.push_back((lsn, at));
            }
            _ => self.samples.push_back((lsn, at)),
        }
        while self.samples.len() > PRIMARY_HISTORY_LEN {
            self.samples.pop_front();
        }
    }

    /// The latest known position.
    pub(crate) fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|s| s.0)
    }

    /// The last time the primary was seen at or below `lsn`.
    fn last_seen_at_or_below(&self, lsn: Lsn) -> Option<Instant> {
        self.samples.iter().rev().find(|s| s.0 <= lsn).map(|s| s.1)
    }
}

/// Judges a primary from a successful check.
pub(crate) fn judge_primary(obs: &Observation, now: Instant) -> HealthSnapshot {
    let mut snapshot = HealthSnapshot::observed(obs, now);
    if obs.in_recovery {
        snapshot.unhealthy = Some(Unhealthy::InRecovery);
    }
    snapshot
}

/// Judges a replica from a successful check against the primary's history.
pub(crate) fn judge_replica(
    obs: &Observation,
    primary: &PrimaryHistory,
    limits: &RoutingSettings,
    now: Instant,
) -> HealthSnapshot {
    let mut snapshot = HealthSnapshot::observed(obs, now);
    snapshot.unhealthy = replica_verdict(obs, primary, limits, now, &mut snapshot);
    snapshot
}

/// Fills in the lag fields and returns why the replica is out of rotation, if it is.
fn replica_verdict(
    obs: &Observation,
    primary: &PrimaryHistory,
    limits: &RoutingSettings,
    now: Instant,
    snapshot: &mut HealthSnapshot,
) -> Option<Unhealthy> {
    if !obs.in_recovery {
        return Some(Unhealthy::NotInRecovery);
    }
    let Some(replay) = obs.lsn else {
        return Some(Unhealthy::NoReplayPosition);
    };
    let Some(primary_lsn) = primary.latest() else {
        return Some(Unhealthy::PrimaryPositionUnknown);
    };

    let bytes = primary_lsn.bytes_after(replay);
    let seconds = if bytes == 0 {
        Some(0.0)
    } else {
        let cap = primary
            .last_seen_at_or_below(replay)
            .map(|at| now.saturating_duration_since(at).as_secs_f64());
        match (obs.replay_age, cap) {
            (Some(age), Some(cap)) => Some(age.min(cap)),
            (age, cap) => age.or(cap),
        }
    };
    snapshot.lag_bytes = Some(bytes);
    snapshot.lag_seconds = seconds;

    if bytes > limits.max_lag_bytes {
        return Some(Unhealthy::LagBytes {
            bytes,
            max: limits.max_lag_bytes,
        });
    }
    match seconds {
        Some(seconds) if seconds > limits.max_lag.as_secs_f64() => Some(Unhealthy::LagTime {
            seconds,
            max: limits.max_lag,
        }),
        _ => None,
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
