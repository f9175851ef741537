//! Errors of the audit trail.
//!
//! Owns [`AuditError`]: only opening the output can fail in a way the caller must handle.
//! Failures while running are counted and logged by the writer, never returned to the data
//! path.

use std::path::PathBuf;

/// Why the audit trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit file could not be opened for appending.
    #[error("cannot open audit file {} for appending", path.display())]
    Open {
        /// The configured `audit.path`.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// Standard output could not be duplicated for the writer (it is closed).
    #[error("cannot use standard output for the audit trail")]
    Stdout {
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}
