//! Running pgbench against one target and reading its per-transaction log.
//!
//! pgbench is run with `--log`, which writes one line per transaction: client, transaction
//! number, latency in microseconds, script, and the end time (epoch seconds and microseconds).
//! The figures come from those lines, not from pgbench's summary: transactions that end in the
//! first `warmup` of the run are dropped (connection set-up, first plans, prepared statements),
//! and throughput is the remaining count over the remaining window.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::stats;

/// How a run connects: libpq environment variables (host, port, TLS files, user, password).
#[derive(Debug, Clone, Default)]
pub struct Conn {
    pub env: Vec<(String, String)>,
}

/// One pgbench invocation.
#[derive(Debug, Clone)]
pub struct Run {
    /// `-S` for the built-in select-only script, or `-f FILE`.
    pub script: Vec<String>,
    /// `simple`, `extended` or `prepared`.
    pub mode: &'static str,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What one run measured; latencies in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub tps: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub transactions: usize,
    /// Every transaction in the log, the warm-up included (what the CPU reading covers).
    pub logged: usize,
    /// CPU time (user + system) the proxy used per logged transaction over the whole run, in
    /// microseconds, connection set-up included; `None` for direct runs.
    pub proxy_cpu_us: Option<f64>,
}

/// Clients pgbench is given one extra second of -T for (see [`run`]).
const CLIENTS_PER_ALLOWANCE_SECOND: usize = 50;

/// Runs pgbench in `scratch` (its log files go there and are removed afterwards).
///
/// # Errors
/// pgbench fails (any client aborted), or its log is missing or too short to measure.
pub fn run(conn: &Conn, run: &Run, database: &str, scratch: &Path) -> anyhow::Result<Measured> {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch)?;
    let prefix = scratch.join("tx");
    let jobs = run.clients.clamp(1, 2);
    // pgbench connects all of a thread's clients before they run, one after another; direct to
    // PostgreSQL each one costs a backend fork, a TLS handshake and SCRAM, so 1000 clients can
    // outlast a short -T and leave an empty log. The allowance is not measured: the window
    // starts after the warm-up that follows the first completed transaction.
    let connect_allowance = u64::try_from(run.clients / CLIENTS_PER_ALLOWANCE_SECOND).unwrap_or(0);
    let secs = run.duration.as_secs().max(1) + connect_allowance;
    let mut cmd = Command::new("pgbench");
    cmd.args(["--no-vacuum", "-M", run.mode])
        .args(["-c", &run.clients.to_string(), "-j", &jobs.to_string()])
        .args(["-T", &secs.to_string()])
        .arg("--log")
        .arg(format!("--log-prefix={}", prefix.display()))
        .args(&run.script)
        .arg(database)
        .env_remove("PGSERVICE")
        .env_remove("PGPASSWORD")
        .envs(conn.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    let out = cmd.output().context("running pgbench")?;
    if !out.status.success() {
        bail!(
            "pgbench -M {} -c {} failed ({}):\n{}\n{}",
            run.mode,
            run.clients,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    let lines = read_logs(scratch)?;
    let measured = measure(&lines, run.warmup)
        .with_context(|| format!("pgbench -M {} -c {}", run.mode, run.clients))?;
    let _ = fs::remove_dir_all(scratch);
    Ok(measured)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One logged transaction: latency and end time, both in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    pub latency_us: u64,
    pub end_us: u64,
}

/// Parses one line of pgbench's per-transaction log (without `--sampling-rate` or `--rate`):
/// `client_id transaction_no time script_no time_epoch time_us`.
pub fn parse_line(line: &str) -> Option<Logged> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    let latency_us = f[2].parse().ok()?;
    let epoch: u64 = f[4].parse().ok()?;
    let micros: u64 = f[5].parse().ok()?;
    Some(Logged {
        latency_us,
        end_us: epoch * 1_000_000 + micros,
    })
}

fn read_logs(dir: &Path) -> anyhow::Result<Vec<Logged>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path)?;
        for line in text.lines() {
            let parsed =
                parse_line(line).with_context(|| format!("{}: {line:?}", path.display()))?;
            out.push(parsed);
        }
    }
    Ok(out)
}

/// Throughput and latency of the transactions that ended after the warm-up.
///
/// # Errors
/// Fewer than 10 transactions remain, or the window is empty.
pub fn measure(lines: &[Logged], warmup: Duration) -> anyhow::Result<Measured> {
    let first = lines.iter().map(|l| l.end_us).min().context("empty log")?;
    let last = lines.iter().map(|l| l.end_us).max().context("empty log")?;
    let start = first + u64::try_from(warmup.as_micros()).unwrap_or(u64::MAX);
    let mut kept: Vec<u64> = lines
        .iter()
        .filter(|l| l.end_us > start)
        .map(|l| l.latency_us)
        .collect();
    if kept.len() < 10 || last <= start {
        bail!(
            "only {} transactions after the warm-up: run longer",
            kept.len()
        );
    }
    let window_s = (last - start) as f64 / 1e6;
    let s = stats::summarize(&mut kept);
    Ok(Measured {
        tps: kept.len() as f64 / window_s,
        mean: s.mean,
        p50: s.p50,
        p99: s.p99,
        transactions: kept.len(),
        logged: lines.len(),
        proxy_cpu_us: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_log_line() {
        let l = parse_line("3 17 412 0 1733262000 250001").unwrap();
        assert_eq!(l.latency_us, 412);
        assert_eq!(l.end_us, 1_733_262_000_250_001);
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn drops_the_warm_up_and_counts_the_rest() {
        // 0.5 s of slow warm-up transactions, then 1000 transactions over one second.
        let mut lines: Vec<Logged> = (0..50)
            .map(|i| Logged {
                latency_us: 5000,
                end_us: i * 10_000,
            })
            .collect();
        lines.extend((1..=1000).map(|i| Logged {
            latency_us: 100 + i % 2,
            end_us: 500_000 + i * 1000,
        }));
        let m = measure(&lines, Duration::from_millis(500)).unwrap();
        assert_eq!(m.transactions, 1000);
        assert!((m.tps - 1000.0 / 0.99951).abs() < 5.0, "{}", m.tps);
        assert_eq!(m.p99, 101.0);
        assert!(m.mean < 101.0);
    }
}
