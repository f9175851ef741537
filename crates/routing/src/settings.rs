//! What the proxy hands this crate: the targets and the routing limits.
//!
//! The proxy converts the validated configuration into these types; this crate reads no
//! configuration file itself.

use std::time::Duration;

use pgcordon_pool::PoolSettings;
use pgcordon_upstream::UpstreamSettings;

use crate::error::RoutingError;

/// One upstream server: its name (for logs and metrics), how to reach it, and its pool.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// A short unique name, such as `primary` or `replica-1`.
    pub name: String,
    /// How to connect; the pool and the health check both use it.
    pub upstream: UpstreamSettings,
    /// The pool of this target.
    pub pool: PoolSettings,
}

/// What a target is for. The role comes from where the target is given to
/// [`Targets::new`](crate::Targets::new), so it cannot disagree with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes writes and every transaction that is not provably read-only.
    Primary,
    /// A streaming replica that serves reads while it is healthy.
    Replica,
}

impl Role {
    /// `"primary"` or `"replica"`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// Health check timing and the limits that take a replica out of rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    /// Time between two checks of the same target.
    pub check_interval: Duration,
    /// Longest a check (including opening its connection) may take before it counts as failed.
    pub check_timeout: Duration,
    /// A replica more than this many WAL bytes behind the primary leaves rotation.
    pub max_lag_bytes: u64,
    /// A replica more than this far behind in time leaves rotation.
    pub max_lag: Duration,
    /// How long a read that must see a client's own write may wait for a replica to replay it;
    /// zero means do not wait and use the primary.
    pub ryw_wait: Duration,
}

impl RoutingSettings {
    /// Checks the values that would make the checks spin or never finish.
    ///
    /// # Errors
    /// [`RoutingError::Setting`] naming the field.
    pub fn validate(&self) -> Result<(), RoutingError> {
        let problem = |key, problem| Err(RoutingError::Setting { key, problem });
        if self.check_interval.is_zero() {
            return problem("check_interval", "must be more than zero");
        }
        if self.check_timeout.is_zero() {
            return problem("check_timeout", "must be more than zero");
        }
        if self.max_lag.is_zero() {
            return problem("max_lag", "must be more than zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RoutingSettings {
        RoutingSettings {
            check_interval: Duration::from_secs(1),
            check_timeout: Duration::from_secs(2),
            max_lag_bytes: 1 << 20,
            max_lag: Duration::from_secs(5),
            ryw_wait: Duration::ZERO,
        }
    }

    #[test]
    fn zero_durations_that_would_spin_are_refused() {
        assert!(settings().validate().is_ok());
        for key in ["check_interval", "check_timeout", "max_lag"] {
            let mut s = settings();
            match key {
                "check_interval" => s.check_interval = Duration::ZERO,
                "check_timeout" => s.check_timeout = Duration::ZERO,
                _ => s.max_lag = Duration::ZERO,
            }
            let err = s.validate().unwrap_err();
            assert!(
                matches!(err, RoutingError::Setting { key: k, .. } if k == key),
                "{err}"
            );
        }
    }
}
