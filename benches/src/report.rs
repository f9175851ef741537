//! The Markdown report of `e2e-latency`.

use std::fmt::Write as _;

use crate::options::Options;
use crate::setup::{Mode, Target};
use crate::stats::Aggregate;

/// What the run was measured on and with.
#[derive(Debug, Clone)]
pub struct Meta {
    pub cpus: usize,
    pub cpu_model: String,
    /// /proc/loadavg's 1-minute figure just before the stack started: the machine's other work.
    pub load_before: String,
    /// Share of the machine's CPU time used by other processes during the measured blocks
    /// (median and highest block), and the highest block's steal, in percent.
    pub other_cpu_median: f64,
    pub other_cpu_max: f64,
    pub steal_max: f64,
    pub postgres_version: String,
    /// TLS version of the client's direct connection, from pg_stat_ssl.
    pub tls_direct: String,
    /// TLS version of pgcordon's pooled upstream connection, from pg_stat_ssl.
    pub tls_upstream: String,
    pub options: Options,
    /// Spinners that ran during the measurement (0 without --spin).
    pub spinners: usize,
}

/// One aggregate per target and mode.
#[derive(Debug, Clone, Default)]
pub struct Results {
    cells: Vec<(Target, Mode, Aggregate)>,
}

impl Results {
    pub fn insert(&mut self, target: Target, mode: Mode, agg: Aggregate) {
        self.cells.retain(|(t, m, _)| !(*t == target && *m == mode));
        self.cells.push((target, mode, agg));
    }

    pub fn get(&self, target: Target, mode: Mode) -> Option<&Aggregate> {
        self.cells
            .iter()
            .find(|(t, m, _)| *t == target && *m == mode)
            .map(|(_, _, a)| a)
    }
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

/// The report: a short header, the latency table and the added-latency table. Figures are
/// microseconds, each the median over blocks of the block's statistic.
pub fn markdown(meta: &Meta, results: &Results) -> String {
    let o = &meta.options;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### e2e-latency: `SELECT 1` round trips from one client\n"
    );
    let _ = writeln!(
        out,
        "- machine: {} CPUs, {}; PostgreSQL {}; client TLS to PostgreSQL: {}; pgcordon to PostgreSQL: {}",
        meta.cpus, meta.cpu_model, meta.postgres_version, meta.tls_direct, meta.tls_upstream
    );
    let _ = writeln!(
        out,
        "- {} blocks per target in the order direct, pgcordon, direct, ...; {} round trips per mode \
         per block (the modes alternate query by query); {} per mode discarded at each block start; \
         {} per mode and connection before the first block",
        o.blocks, o.iterations, o.block_warmup, o.warmup
    );
    let _ = writeln!(
        out,
        "- other processes' share of the machine's CPU time during the measured blocks: median \
         {:.0}%, highest block {:.0}%; hypervisor steal at most {:.1}%",
        meta.other_cpu_median, meta.other_cpu_max, meta.steal_max
    );
    let _ = writeln!(
        out,
        "- 1-minute load average before the run: {}; idle-priority spinners: {}\n",
        meta.load_before,
        if meta.spinners == 0 {
            "off".to_owned()
        } else {
            format!("{} (chrt --idle 0)", meta.spinners)
        }
    );
    let _ = writeln!(
        out,
        "| target | mode | p50 µs | p90 µs | p99 µs | mean µs | block p50 min–max µs | samples |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for mode in Mode::ALL {
        for target in Target::ALL {
            if let Some(a) = results.get(target, mode) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {}–{} | {} |",
                    target.name(),
                    mode.name(),
                    us(a.p50),
                    us(a.p90),
                    us(a.p99),
                    us(a.mean),
                    us(a.p50_min),
                    us(a.p50_max),
                    a.samples
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| mode | added p50 µs | added p99 µs | p50 ratio | p99 ratio |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for mode in Mode::ALL {
        let (Some(d), Some(p)) = (
            results.get(Target::Direct, mode),
            results.get(Target::Pgcordon, mode),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {:+.1} | {:+.1} | {:.2} | {:.2} |",
            mode.name(),
            (p.p50 - d.p50) / 1000.0,
            (p.p99 - d.p99) / 1000.0,
            p.p50 / d.p50,
            p.p99 / d.p99
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(p50: f64, p99: f64) -> Aggregate {
        Aggregate {
            p50,
            p90: p50 * 1.2,
            p99,
            mean: p50 * 1.1,
            p50_min: p50 - 1000.0,
            p50_max: p50 + 1000.0,
            blocks: 5,
            samples: 500,
        }
    }

    #[test]
    fn tables_show_microseconds_differences_and_ratios() {
        let meta = Meta {
            cpus: 2,
            cpu_model: "Test CPU".into(),
            load_before: "0.10".into(),
            other_cpu_median: 1.0,
            other_cpu_max: 12.4,
            steal_max: 0.3,
            postgres_version: "15.0".into(),
            tls_direct: "TLSv1.3".into(),
            tls_upstream: "TLSv1.3".into(),
            options: Options::default(),
            spinners: 0,
        };
        let mut r = Results::default();
        r.insert(Target::Direct, Mode::Simple, agg(100_000.0, 200_000.0));
        r.insert(Target::Pgcordon, Mode::Simple, agg(150_000.0, 260_000.0));
        r.insert(Target::Direct, Mode::Typed, agg(120_000.0, 240_000.0));
        r.insert(Target::Pgcordon, Mode::Typed, agg(180_000.0, 360_000.0));
        let text = markdown(&meta, &r);
        assert!(text.contains(
            "| direct | simple_query | 100.0 | 120.0 | 200.0 | 110.0 | 99.0–101.0 | 500 |"
        ));
        assert!(
            text.contains("| simple_query | +50.0 | +60.0 | 1.50 | 1.30 |"),
            "{text}"
        );
        assert!(
            text.contains("| query_typed | +60.0 | +120.0 | 1.50 | 1.50 |"),
            "{text}"
        );
        assert!(text.contains("median 1%, highest block 12%; hypervisor steal at most 0.3%"));
        assert!(text.contains("load average before the run: 0.10; idle-priority spinners: off"));
    }

    #[test]
    fn insert_replaces_a_cell() {
        let mut r = Results::default();
        r.insert(Target::Direct, Mode::Simple, agg(1.0, 2.0));
        r.insert(Target::Direct, Mode::Simple, agg(3.0, 4.0));
        assert_eq!(r.get(Target::Direct, Mode::Simple).unwrap().p50, 3.0);
        assert!(r.get(Target::Pgcordon, Mode::Simple).is_none());
    }
}
