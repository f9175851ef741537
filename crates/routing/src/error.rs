//! Errors of this crate: building the targets, refusing writes, and failed health checks.

use std::time::Duration;

use pgcordon_upstream::UpstreamError;

/// Why targets could not be built, or why a request cannot be routed.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A target's pool could not be built.
    #[error("target {name}: cannot build its pool: {source}")]
    Pool {
        name: String,
        source: deadpool::managed::BuildError,
    },
    /// A pool of size zero would never hand out a session.
    #[error("target {name}: the pool size must be at least 1")]
    EmptyPool { name: String },
    /// Two targets share a name; names label logs and metrics, so they must be unique.
    #[error("target name {name:?} is used more than once")]
    DuplicateName { name: String },
    /// A target without a name.
    #[error("a target has an empty name")]
    EmptyName,
    /// A routing setting out of range.
    #[error("routing setting {key} {problem}")]
    Setting {
        key: &'static str,
        problem: &'static str,
    },
    /// The primary's last successful check found it in recovery (a standby, read-only). Writes
    /// are refused rather than sent to another server.
    #[error(
        "primary {name} is in recovery (read-only); writes are refused, not sent anywhere else"
    )]
    PrimaryInRecovery { name: String },
}

/// Why one health check of one target failed. Every variant names the target.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The checking connection could not be opened.
    #[error("target {target}: cannot open the checking connection: {source}")]
    Connect {
        target: String,
        source: UpstreamError,
    },
    /// The check (connect and query) took longer than `check_timeout`.
    #[error("target {target}: health check timed out after {after:?}")]
    Timeout { target: String, after: Duration },
    /// Reading or writing the checking connection failed.
    #[error("target {target}: health check I/O failed: {source}")]
    Io {
        target: String,
        source: std::io::Error,
    },
    /// The server answered the check with an error.
    #[error("target {target}: health check query failed: {code} {message}")]
    Server {
        target: String,
        code: String,
        message: String,
    },
    /// The server's answer did not follow the protocol or had the wrong shape.
    #[error("target {target}: unexpected health check answer: {detail}")]
    Protocol { target: String, detail: String },
}
