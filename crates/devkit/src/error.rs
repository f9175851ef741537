//! The one error type of the devkit.
//!
//! Every variant keeps its source and the context an operator needs to act on it (the path,
//! the command line, the captured stderr). It does not decide how errors are shown to users.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while making certificates or running PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DevkitError {
    /// rcgen refused to build or sign something.
    #[error("certificate generation failed while {what}: {source}")]
    Pki {
        /// What was being produced (for example "signing the client certificate").
        what: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// A caller-supplied value cannot be used (unknown attribute name, bad date, a replica of a
    /// primary without TLS, a socket path that is too long, ...).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted ("writing", "creating directory", ...).
        action: &'static str,
        /// The path it was attempted on.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// No directory with the PostgreSQL server binaries was found.
    #[error("no PostgreSQL server binaries (initdb) found; tried: {tried}")]
    BinDirNotFound {
        /// Every place that was looked at, and why it did not fit.
        tried: String,
    },

    /// The operating system user that must run the server (as root) is unusable.
    #[error("cannot use OS user {user:?} to run PostgreSQL: {reason}")]
    ServerUser {
        /// The user name (always `postgres`).
        user: &'static str,
        /// Why it could not be used.
        reason: String,
    },

    /// A program could not be started at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program that was started.
        program: PathBuf,
        /// The error from `exec`.
        #[source]
        source: std::io::Error,
    },

    /// A program ran and reported failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the log (never contains a password).
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, plus the server log tail when the server failed to start.
        stderr: String,
    },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed while {0}")]
    Random(&'static str),

    /// No free TCP port could be reserved on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {source}")]
    NoFreePort {
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
}

impl DevkitError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        DevkitError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pki(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Self {
        let what = what.into();
        move |source| DevkitError::Pki { what, source }
    }
}
