//! The pgbench matrix: every workload, client count and mode against every target that
//! supports it, repeated, with the targets interleaved (A B C, then B C A, ...) so that a slow
//! minute on the shared machine hits each of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::env::{cpu_ticks, ticks_to_us, Env, Target};
use crate::pgbench::{self, Measured};
use crate::spin::Spinners;
use crate::stats;
use crate::workload::{self, Mode, Workload};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub select_clients: Vec<usize>,
    pub rls_clients: Vec<usize>,
    pub modes: Vec<Mode>,
    pub repetitions: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Idle-priority spinners during 1-client runs (see spin.rs).
    pub spin_one_client: bool,
}

impl Plan {
    fn cells(&self) -> Vec<(Workload, usize, Mode)> {
        let mut out = Vec::new();
        for w in Workload::ALL {
            let clients = match w {
                Workload::Select => &self.select_clients,
                Workload::Rls => &self.rls_clients,
            };
            for &c in clients {
                for &m in &self.modes {
                    out.push((w, c, m));
                }
            }
        }
        out
    }

    /// pgbench runs in the plan.
    pub fn runs(&self) -> usize {
        let per_rep: usize = self
            .cells()
            .iter()
            .map(|&(_, _, m)| {
                Target::ALL
                    .iter()
                    .filter(|&&t| workload::supported(t, m))
                    .count()
            })
            .sum();
        per_rep * self.repetitions
    }
}

pub type Key = (Workload, usize, Mode, Target);

/// Every repetition's figures per cell and target.
#[derive(Debug, Default, Clone)]
pub struct Results {
    pub runs: BTreeMap<Key, Vec<Measured>>,
    /// /proc/loadavg's 1-minute figure before each repetition.
    pub load: Vec<f64>,
}

/// Medians over repetitions; latencies in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub tps: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub reps: usize,
    /// Lowest and highest tps over the repetitions.
    pub tps_min: f64,
    pub tps_max: f64,
    /// Median over repetitions of the proxy's CPU µs per transaction (see
    /// [`pgbench::Measured::proxy_cpu_us`]).
    pub proxy_cpu_us: Option<f64>,
}

impl Results {
    pub fn cell(&self, key: Key) -> Option<Cell> {
        let runs = self.runs.get(&key)?;
        if runs.is_empty() {
            return None;
        }
        let pick = |f: fn(&Measured) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let tps = pick(|m| m.tps);
        Some(Cell {
            tps: stats::median(&tps),
            mean: stats::median(&pick(|m| m.mean)),
            p50: stats::median(&pick(|m| m.p50)),
            p99: stats::median(&pick(|m| m.p99)),
            reps: runs.len(),
            tps_min: tps.iter().copied().fold(f64::INFINITY, f64::min),
            tps_max: tps.iter().copied().fold(0.0, f64::max),
            proxy_cpu_us: {
                let cpu: Vec<f64> = runs.iter().filter_map(|m| m.proxy_cpu_us).collect();
                (!cpu.is_empty()).then(|| stats::median(&cpu))
            },
        })
    }

    /// The distinct (workload, clients, mode) cells, in order.
    pub fn cells(&self) -> Vec<(Workload, usize, Mode)> {
        let mut out: Vec<_> = self.runs.keys().map(|&(w, c, m, _)| (w, c, m)).collect();
        out.dedup();
        out
    }
}

/// Runs the plan; progress goes to standard error.
///
/// # Errors
/// A pgbench run fails (the error names it), or a spinner dies.
pub fn run(env: &Env, plan: &Plan, scratch: &Path) -> anyhow::Result<Results> {
    let mut results = Results::default();
    let total = plan.runs();
    let mut done = 0;
    for rep in 0..plan.repetitions {
        results.load.push(load_average());
        for (w, clients, mode) in plan.cells() {
            let targets: Vec<Target> = rotated(rep)
                .into_iter()
                .filter(|&t| workload::supported(t, mode))
                .collect();
            let mut spinners = if clients == 1 && plan.spin_one_client {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                Some(Spinners::start(cpus)?)
            } else {
                None
            };
            for target in targets {
                let run = pgbench::Run {
                    script: workload::script_args(w, target, mode, scratch)?,
                    mode: mode.name(),
                    clients,
                    duration: plan.duration,
                    warmup: plan.warmup,
                };
                let proxy = env.proxy_pid(target);
                let ticks_before = proxy.map(cpu_ticks).transpose()?;
                let mut m = pgbench::run(
                    &env.conn(target),
                    &run,
                    pgcordon_devkit::stack::APP_DATABASE,
                    &scratch.join("log"),
                )
                .with_context(|| {
                    format!("{} {} against {}", w.name(), mode.name(), target.name())
                })?;
                if let (Some(pid), Some(before)) = (proxy, ticks_before) {
                    let ticks = cpu_ticks(pid)?.saturating_sub(before);
                    m.proxy_cpu_us = Some(ticks_to_us(ticks) / m.logged.max(1) as f64);
                }
                done += 1;
                eprintln!(
                    "[{done:3}/{total}] rep {} {:11} {:8} c={:4} {:9} tps {:9.0} \
                     mean {:7.0} µs p50 {:7.0} p99 {:7.0}",
                    rep + 1,
                    w.name(),
                    mode.name(),
                    clients,
                    target.name(),
                    m.tps,
                    m.mean,
                    m.p50,
                    m.p99
                );
                results
                    .runs
                    .entry((w, clients, mode, target))
                    .or_default()
                    .push(m);
            }
            if let Some(s) = spinners.as_mut() {
                let problems = s.stop();
                anyhow::ensure!(problems.is_empty(), "spinners: {}", problems.join("; "));
            }
        }
    }
    Ok(results)
}

/// The target order of repetition `rep`: each target goes first in turn.
pub fn rotated(rep: usize) -> Vec<Target> {
    let mut t = Target::ALL.to_vec();
    let n = t.len();
    t.rotate_left(rep % n);
    t
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_goes_first_in_turn() {
        assert_eq!(rotated(0)[0], Target::Direct);
        assert_eq!(rotated(1)[0], Target::Pgcordon);
        assert_eq!(rotated(2)[0], Target::Pgbouncer);
        assert_eq!(rotated(3), rotated(0));
    }

    #[test]
    fn prepared_mode_skips_pgbouncer() {
        let plan = Plan {
            select_clients: vec![1, 10],
            rls_clients: vec![1],
            modes: Mode::ALL.to_vec(),
            repetitions: 3,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            spin_one_client: false,
        };
        // 3 cells per client count, 3 targets each except pgbouncer's prepared run.
        assert_eq!(plan.runs(), 3 * 3 * 8);
    }
}
