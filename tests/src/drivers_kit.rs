//! Shared by the driver tests (tests/drivers.rs, tests/pgbench.rs): skipping and missing
//! runtimes, running a client program with a deadline, and the server-side checks after a run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Harness;

/// Transaction pooling over four backend sessions, all opened up front.
pub const POOL_4: &str = "  mode: transaction\n  size: 4\n  min_idle: 4\n  acquire_timeout: 5s";

/// Whether `PGCORDON_SKIP_DRIVERS` asks to skip `driver` (never under CI).
pub fn skipped(driver: &str) -> bool {
    let list = std::env::var("PGCORDON_SKIP_DRIVERS").unwrap_or_default();
    let listed = list
        .split([',', ' '])
        .any(|d| d.trim().eq_ignore_ascii_case(driver));
    if listed && std::env::var_os("CI").is_some() {
        eprintln!("PGCORDON_SKIP_DRIVERS is ignored under CI: running {driver}");
        return false;
    }
    if listed {
        eprintln!("{driver}: skipped (PGCORDON_SKIP_DRIVERS)");
    }
    listed
}

/// Fails the test naming the install step that provides a missing runtime.
pub fn missing(driver: &str, what: &str, install: &str) -> ! {
    panic!(
        "{driver}: {what} is missing. Install it with: {install} (the same step is in .ci/run), \
         or set PGCORDON_SKIP_DRIVERS={driver} for a local run."
    )
}

pub fn on_path(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 6000)
        )
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs a child process to completion within `timeout`; it is killed if the test gives up.
pub async fn run(
    what: &str,
    mut cmd: tokio::process::Command,
    env: &[(String, String)],
    timeout: Duration,
) -> Output {
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after {timeout:?}; killed"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: finished in {:?}", started.elapsed());
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// After a run: the tenants' rows are intact and the pool never exceeded four sessions.
pub fn check_server_side(h: &Harness) {
    assert_eq!(
        h.admin("SELECT count(*) FROM documents").trim(),
        "3",
        "documents changed"
    );
    let sessions: i64 = h
        .admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'",
            pgcordon_devkit::stack::APP_ROLE
        ))
        .trim()
        .parse()
        .expect("a count");
    assert!(
        (1..=4).contains(&sessions),
        "{sessions} backend sessions for a pool of 4"
    );
}
