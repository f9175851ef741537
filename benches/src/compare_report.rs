//! The Markdown that `compare` writes between the results markers of docs/benchmarks.md: the
//! run's conditions, the pgbench table, the targets with their ratios, and the connection
//! figures. Every ratio is computed from figures of the same run.

use std::fmt::Write as _;

use crate::connections::{Held, Rate};
use crate::env::Target;
use crate::matrix::Results;
use crate::svg::{Panel, Series};
use crate::workload::{Mode, Workload};

/// Conditions of the run.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub date: String,
    pub command: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub versions: String,
    pub duration_s: u64,
    pub warmup_s: f64,
    pub repetitions: usize,
    pub spin: bool,
    /// Load average before, during (per repetition) and after.
    pub load: Vec<f64>,
    pub minutes: f64,
}

/// The connection phase's figures.
#[derive(Debug, Clone, Copy)]
pub struct Conns {
    pub full: Rate,
    pub resumed: Rate,
    pub connectors: usize,
    pub held: Held,
}

/// Latency PgBouncer or pgcordon adds over direct PostgreSQL (TLS) in a cell.
fn added(results: &Results, w: Workload, c: usize, m: Mode, t: Target) -> Option<(f64, f64)> {
    let d = results.cell((w, c, m, Target::Direct))?;
    let x = results.cell((w, c, m, t))?;
    Some((x.mean - d.mean, x.p99 - d.p99))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The whole generated section.
pub fn markdown(meta: &Meta, results: &Results, conns: Option<&Conns>) -> String {
    let mut out = String::new();
    let loads: Vec<String> = meta.load.iter().map(|l| format!("{l:.2}")).collect();
    let _ = writeln!(out, "Run of {} ({:.0} minutes):\n", meta.date, meta.minutes);
    let _ = writeln!(out, "```sh\n{}\n```\n", meta.command);
    let _ = writeln!(
        out,
        "- machine: {} CPUs ({}); load average (1 min) at the start, before each repetition \
         and at the end: {}\n- {}\n- each run: pgbench -T {} s, the first {:.1} s of \
         transactions dropped; {} repetitions with the targets interleaved; medians over \
         repetitions; 1-client runs {} idle-priority spinners\n",
        meta.cpus,
        meta.cpu_model,
        loads.join(", "),
        meta.versions,
        meta.duration_s,
        meta.warmup_s,
        meta.repetitions,
        if meta.spin { "with" } else { "without" },
    );
    targets(&mut out, results, conns);
    proxy_cpu(&mut out, results);
    table(&mut out, results);
    if let Some(c) = conns {
        connections(&mut out, c);
    }
    out
}

fn targets(out: &mut String, results: &Results, conns: Option<&Conns>) {
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(
        out,
        "| target | measured | ratio | verdict |\n|---|---|---|---|"
    );
    for m in [Mode::Simple, Mode::Extended] {
        let w = Workload::Select;
        let (Some((ours, ours_p99)), Some((theirs, _))) = (
            added(results, w, 1, m, Target::Pgcordon),
            added(results, w, 1, m, Target::Pgbouncer),
        ) else {
            continue;
        };
        let ratio = ours / theirs;
        let ok = theirs > 0.0 && ours <= theirs / 2.0;
        let _ = writeln!(
            out,
            "| added mean latency, 1 client, select-only {}: at most half of PgBouncer's | \
             pgcordon {ours:.0} µs, PgBouncer {theirs:.0} µs | {ratio:.2} | {} |",
            m.name(),
            verdict(ok)
        );
        let _ = writeln!(
            out,
            "| added p99 latency, 1 client, select-only {}: below 250 µs | {ours_p99:.0} µs | \
             {:.2} of 250 µs | {} |",
            m.name(),
            ours_p99 / 250.0,
            verdict(ours_p99 < 250.0)
        );
    }
    for c in [50, 100] {
        for w in Workload::ALL {
            for m in [Mode::Simple, Mode::Extended] {
                let (Some(ours), Some(theirs)) = (
                    results.cell((w, c, m, Target::Pgcordon)),
                    results.cell((w, c, m, Target::Pgbouncer)),
                ) else {
                    continue;
                };
                let ratio = ours.tps / theirs.tps;
                let _ = writeln!(
                    out,
                    "| throughput, {c} clients, {} {}: at least 1.5 × PgBouncer | pgcordon \
                     {:.0} tps, PgBouncer {:.0} tps | {ratio:.2} × | {} |",
                    w.name(),
                    m.name(),
                    ours.tps,
                    theirs.tps,
                    verdict(ratio >= 1.5)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "| identity injection adds no round trip | not a timing: `cargo test -p pgcordon-e2e \
         --test round_trips` counts the round trips to PostgreSQL per client round trip through \
         a relay, with the identity injected in every transaction | exactly 1 asserted | \
         checked by that test in the suite |"
    );
    if let Some(c) = conns {
        let mib = c.held.rss_held_kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "| {} mTLS connections held open, pgcordon RSS at most 256 MiB | {mib:.1} MiB | \
             {:.2} of 256 MiB | {} |",
            c.held.connections,
            mib / 256.0,
            verdict(mib <= 256.0 && c.held.connections >= 5000)
        );
        let cap = c.full.server_capacity(2);
        let _ = writeln!(
            out,
            "| full mTLS handshakes per second on 2 cores: at least 3000 | {:.0}/s with the \
             client on the same 2 cores; pgcordon alone: {:.0} µs CPU each = {cap:.0}/s on 2 \
             cores | {:.2} × 3000 (pgcordon alone) | {} |",
            c.full.per_sec,
            c.full.server_cpu_us,
            cap / 3000.0,
            verdict(cap >= 3000.0)
        );
        let _ = writeln!(
            out,
            "| TLS session resumption for returning clients | {} of {} reconnections resumed; \
             {:.0}/s, {:.0} µs pgcordon CPU each | {:.2} × the full-handshake CPU | {} |",
            c.resumed.resumed,
            c.resumed.resumed + c.resumed.full,
            c.resumed.per_sec,
            c.resumed.server_cpu_us,
            c.resumed.server_cpu_us / c.full.server_cpu_us,
            verdict(c.resumed.resumed > c.resumed.full)
        );
    }
    out.push('\n');
}

/// Each proxy's own CPU time per transaction, side by side: what the throughput ratios rest on
/// when the client, the proxy and PostgreSQL share the same cores.
fn proxy_cpu(out: &mut String, results: &Results) {
    let mut rows = Vec::new();
    for (w, c, m) in results.cells() {
        let cpu = |t| results.cell((w, c, m, t)).and_then(|x| x.proxy_cpu_us);
        if let (Some(ours), Some(theirs)) = (cpu(Target::Pgcordon), cpu(Target::Pgbouncer)) {
            rows.push(format!(
                "| {} | {} | {c} | {ours:.1} | {theirs:.1} | {:.2} |",
                w.name(),
                m.name(),
                ours / theirs
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Proxy CPU per transaction\n");
    let _ = writeln!(
        out,
        "User and system CPU time of the proxy process (/proc/PID/stat) over each whole pgbench \
         run, connection set-up included, divided by the transactions pgbench logged; medians \
         over repetitions.\n"
    );
    let _ = writeln!(
        out,
        "| workload | mode | clients | pgcordon µs | PgBouncer µs | pgcordon / PgBouncer |\n\
         |---|---|---:|---:|---:|---:|"
    );
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn table(out: &mut String, results: &Results) {
    let _ = writeln!(out, "### pgbench results\n");
    let _ = writeln!(
        out,
        "Latencies in µs (pgbench's per-transaction log). \"× direct\" is the target's tps over \
         direct PostgreSQL's in the same cell; \"added\" is the target's latency minus \
         direct's. tps range: lowest and highest repetition.\n"
    );
    let _ = writeln!(
        out,
        "| workload | mode | clients | target | tps | tps range | × direct | mean | p50 | p99 | \
         added mean | added p99 | proxy CPU µs/tx |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (w, c, m) in results.cells() {
        let direct = results.cell((w, c, m, Target::Direct));
        for t in Target::ALL {
            let Some(x) = results.cell((w, c, m, t)) else {
                let _ = writeln!(
                    out,
                    "| {} | {} | {c} | {} | n/a | | | | | | | | |",
                    w.name(),
                    m.name(),
                    t.name()
                );
                continue;
            };
            let (vs, add_mean, add_p99) = match (t, direct) {
                (Target::Direct, _) | (_, None) => ("".into(), "".into(), "".into()),
                (_, Some(d)) => (
                    format!("{:.2}", x.tps / d.tps),
                    format!("{:+.0}", x.mean - d.mean),
                    format!("{:+.0}", x.p99 - d.p99),
                ),
            };
            let cpu = x
                .proxy_cpu_us
                .map(|us| format!("{us:.1}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {c} | {} | {:.0} | {:.0}–{:.0} | {vs} | {:.0} | {:.0} | {:.0} | \
                 {add_mean} | {add_p99} | {cpu} |",
                w.name(),
                m.name(),
                t.name(),
                x.tps,
                x.tps_min,
                x.tps_max,
                x.mean,
                x.p50,
                x.p99,
            );
        }
    }
    out.push('\n');
}

fn connections(out: &mut String, c: &Conns) {
    let _ = writeln!(out, "### Connections\n");
    let _ = writeln!(
        out,
        "| measurement | figure |\n|---|---|\n\
         | new connections, full handshake ({} connectors) | {:.0}/s; \
         pgcordon CPU {:.0} µs per connection |\n\
         | returning clients, session resumption ({} connectors) | {:.0}/s; {} resumed, {} full; \
         pgcordon CPU {:.0} µs per connection |\n\
         | {} connections held open | opened in {:.1} s; pgcordon RSS {:.1} MiB before, \
         {:.1} MiB with all open ({:.1} KiB per connection) |\n",
        c.connectors,
        c.full.per_sec,
        c.full.server_cpu_us,
        c.connectors,
        c.resumed.per_sec,
        c.resumed.resumed,
        c.resumed.full,
        c.resumed.server_cpu_us,
        c.held.connections,
        c.held.open_secs,
        c.held.rss_before_kib as f64 / 1024.0,
        c.held.rss_held_kib as f64 / 1024.0,
        (c.held.rss_held_kib.saturating_sub(c.held.rss_before_kib)) as f64
            / c.held.connections.max(1) as f64,
    );
}

/// Throughput against clients, one panel per workload (simple mode), one line per target.
pub fn plot(results: &Results) -> String {
    let colour = |t: Target| match t {
        Target::Direct => "#555555",
        Target::Pgcordon => "#1f77b4",
        Target::Pgbouncer => "#d62728",
    };
    let panels: Vec<Panel> = Workload::ALL
        .into_iter()
        .map(|w| Panel {
            title: format!("{} (simple protocol), median tps", w.name()),
            series: Target::ALL
                .into_iter()
                .map(|t| Series {
                    name: t.name().into(),
                    colour: colour(t),
                    points: results
                        .cells()
                        .into_iter()
                        .filter(|&(cw, _, m)| cw == w && m == Mode::Simple)
                        .filter_map(|(_, c, m)| {
                            results.cell((w, c, m, t)).map(|x| (c as f64, x.tps))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    crate::svg::chart(&panels, "transactions per second")
}

/// Replaces the text between `begin` and `end` (marker lines kept) in `doc`.
///
/// # Errors
/// A marker is missing.
pub fn splice(doc: &str, begin: &str, end: &str, section: &str) -> anyhow::Result<String> {
    let b = doc
        .find(begin)
        .ok_or_else(|| anyhow::anyhow!("marker {begin} missing"))?;
    let e = doc
        .find(end)
        .ok_or_else(|| anyhow::anyhow!("marker {end} missing"))?;
    anyhow::ensure!(b < e, "markers out of order");
    let head = &doc[..b + begin.len()];
    Ok(format!("{head}\n{section}{}", &doc[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_the_markers_and_replaces_between() {
        let doc = "a\n<!-- b -->\nold\n<!-- e -->\nz\n";
        let out = splice(doc, "<!-- b -->", "<!-- e -->", "new\n").unwrap();
        assert_eq!(out, "a\n<!-- b -->\nnew\n<!-- e -->\nz\n");
        assert!(splice("x", "<!-- b -->", "<!-- e -->", "").is_err());
    }

    fn measured(tps: f64, cpu: Option<f64>) -> crate::pgbench::Measured {
        crate::pgbench::Measured {
            tps,
            mean: 1e6 / tps,
            p50: 1e6 / tps,
            p99: 2e6 / tps,
            transactions: 1000,
            logged: 1200,
            proxy_cpu_us: cpu,
        }
    }

    #[test]
    fn proxy_cpu_is_tabled_as_medians_with_the_ratio() {
        let mut r = Results::default();
        let key = |t| (Workload::Select, 50, Mode::Simple, t);
        r.runs
            .insert(key(Target::Direct), vec![measured(2000.0, None)]);
        r.runs.insert(
            key(Target::Pgcordon),
            [30.0, 40.0, 90.0]
                .map(|us| measured(1500.0, Some(us)))
                .to_vec(),
        );
        r.runs.insert(
            key(Target::Pgbouncer),
            [50.0, 80.0, 60.0]
                .map(|us| measured(1400.0, Some(us)))
                .to_vec(),
        );
        let mut out = String::new();
        proxy_cpu(&mut out, &r);
        assert!(
            out.contains("| select-only | simple | 50 | 40.0 | 60.0 | 0.67 |"),
            "{out}"
        );

        let mut table_out = String::new();
        table(&mut table_out, &r);
        assert!(table_out.contains("| +167 | +333 | 40.0 |"), "{table_out}");

        r.runs.remove(&key(Target::Pgbouncer));
        let mut none = String::new();
        proxy_cpu(&mut none, &r);
        assert!(none.is_empty(), "no section without both proxies: {none}");
    }
}
