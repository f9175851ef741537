//! Errors of the metrics crate.
//!
//! Owns [`MetricsError`]. Defining the fixed metric set can only fail through a programming
//! error (caught by the tests); the errors a caller can cause are a bad target name, too many
//! targets, and a target registered twice with different roles.

use crate::labels::TargetRole;

/// Why a metric could not be defined, a target added, or the text rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric definition was refused by the prometheus crate (invalid or duplicate name).
    #[error("cannot define metric {name}")]
    Define {
        /// The metric's name, or the first of the collector's names.
        name: String,
        /// The prometheus crate's reason.
        #[source]
        source: prometheus::Error,
    },

    /// A target name that could become an unbounded or revealing label value.
    #[error("target name {name:?} refused: {why}")]
    TargetName {
        /// The name as given (cut to a readable length).
        name: String,
        /// The rule it breaks.
        why: &'static str,
    },

    /// More targets than [`crate::MAX_TARGETS`].
    #[error("too many backend targets for metrics: at most {max}")]
    TooManyTargets {
        /// The limit.
        max: usize,
    },

    /// The same target name was asked for as a primary and as a replica.
    #[error("target {name:?} is already registered as a {registered}, not a {requested}")]
    RoleMismatch {
        /// The target.
        name: String,
        /// Its role at first registration.
        registered: TargetRole,
        /// The role asked for now.
        requested: TargetRole,
    },

    /// The text encoder refused the gathered metrics.
    #[error("cannot render metrics in the Prometheus text format")]
    Encode(#[source] prometheus::Error),
}
