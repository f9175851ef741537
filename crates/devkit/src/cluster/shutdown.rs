//! Stopping a cluster when its [`Cluster`] value goes away.
//!
//! Owns the guarantee that no server outlives its owner, also when a test panics: Drop runs
//! `pg_ctl -m immediate stop`, and if that fails signals the postmaster named in
//! `postmaster.pid`. It does not remove the cluster's files; the caller owns the directory.

use std::fs;
use std::time::{Duration, Instant};

use super::runner::run;
use super::Cluster;

/// How long Drop waits for a signalled postmaster before sending SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

impl Cluster {
    /// Last resort when pg_ctl cannot stop the server: signal the postmaster named in
    /// `postmaster.pid` (SIGQUIT, the immediate shutdown, then SIGKILL).
    fn kill_postmaster(&self) {
        let Ok(text) = fs::read_to_string(self.pid_file()) else {
            return;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<libc::pid_t>().ok())
        else {
            return;
        };
        // Never signal a process that is not a postgres server: the pid file may be stale and
        // the number reused by something else.
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid <= 0 || comm.trim() != "postgres" {
            return;
        }

        tracing::warn!(
            pid,
            "pg_ctl could not stop the server; signalling the postmaster"
        );
        // SAFETY: kill has no memory-safety preconditions; pid is positive and names a postgres.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + KILL_GRACE;
        // SAFETY: signal 0 only checks that the process exists.
        while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        if unsafe { libc::kill(pid, 0) } == 0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.pid_file().exists() {
            return;
        }
        match run(self.pg_ctl_stop("immediate"), "pg_ctl stop -m immediate") {
            Ok(_) => tracing::debug!(port = self.port(), "cluster stopped on drop"),
            Err(err) => {
                tracing::warn!(error = %err, "pg_ctl stop failed on drop");
                self.kill_postmaster();
            }
        }
    }
}
