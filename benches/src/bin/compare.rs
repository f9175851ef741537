//! `compare`: pgcordon side by side with PgBouncer and direct PostgreSQL, driven by pgbench, plus
//! the connection measurements; run through `benches/run`, which builds it and pgcordon in
//! release mode. Writes the results section of docs/benchmarks.md and docs/bench-throughput.svg
//! unless `--no-write`. See docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgcordon_benches::compare_report::{self, Conns, Meta};
use pgcordon_benches::connections;
use pgcordon_benches::env::Env;
use pgcordon_benches::matrix::{self, Plan, Results};
use pgcordon_benches::setup;
use pgcordon_benches::workload::{self, Mode};

const USAGE: &str = "\
usage: benches/run [--quick] [--duration S] [--repetitions N] [--skip-matrix]
                   [--skip-connections] [--connections N] [--no-spin] [--no-write]

  --quick             short runs at 1 and 50 clients, 2 repetitions: checks the harness
  --duration S        seconds per pgbench run (default 5; quick 2)
  --repetitions N     repetitions of the whole matrix, interleaved (default 3; quick 2)
  --skip-matrix       only the connection measurements
  --skip-connections  only the pgbench matrix
  --connections N     connections held open for the memory figure (default 5000)
  --no-spin           no idle-priority spinners during 1-client runs
  --no-write          print the report instead of writing docs/";

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    duration: u64,
    repetitions: usize,
    matrix: bool,
    connections: bool,
    held: usize,
    spin: bool,
    write: bool,
}

fn parse(args: Vec<String>) -> anyhow::Result<Option<Options>> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        quick,
        duration: if quick { 2 } else { 5 },
        repetitions: if quick { 2 } else { 3 },
        matrix: true,
        connections: true,
        held: 5000,
        spin: true,
        write: true,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> anyhow::Result<u64> {
            let v = it
                .next()
                .with_context(|| format!("{name} needs a number"))?;
            v.parse()
                .with_context(|| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--quick" => {}
            "--duration" => o.duration = num("--duration")?.max(2),
            "--repetitions" => o.repetitions = usize::try_from(num("--repetitions")?)?.max(1),
            "--connections" => o.held = usize::try_from(num("--connections")?)?,
            "--skip-matrix" => o.matrix = false,
            "--skip-connections" => o.connections = false,
            "--no-spin" => o.spin = false,
            "--no-write" => o.write = false,
            "-h" | "--help" => return Ok(None),
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("benches/run {}", args.join(" ")).trim().to_owned();
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("compare: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&opts, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(opts: &Options, command: String) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let pgcordon_bin = root.join("target/release/pgcordon");
    let mut meta = Meta {
        date: date(),
        command,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: pgcordon_benches::cpu::model_name(),
        duration_s: opts.duration,
        repetitions: opts.repetitions,
        spin: opts.spin,
        load: vec![matrix::load_average()],
        ..Meta::default()
    };

    let dir = tempfile::Builder::new()
        .prefix("pgcordon-compare")
        .tempdir()?;
    eprintln!(
        "starting PostgreSQL, pgcordon and PgBouncer in {}",
        dir.path().display()
    );
    let env = Env::start(dir.path(), &pgcordon_bin)?;
    meta.versions = versions(&env)?;
    check_identity(&env, dir.path())?;

    let mut results = Results::default();
    if opts.matrix {
        let plan = plan(opts);
        meta.warmup_s = plan.warmup.as_secs_f64();
        eprintln!("{} pgbench runs of {} s", plan.runs(), opts.duration);
        results = matrix::run(&env, &plan, &dir.path().join("scratch"))?;
        meta.load.extend(results.load.iter().copied());
    }
    let conns = if opts.connections {
        Some(measure_connections(&env, opts)?)
    } else {
        None
    };
    meta.load.push(matrix::load_average());
    meta.minutes = started.elapsed().as_secs_f64() / 60.0;

    let section = compare_report::markdown(&meta, &results, conns.as_ref());
    if !opts.write {
        println!("{section}");
        return Ok(());
    }
    let doc_path = root.join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&doc_path)?;
    let doc = compare_report::splice(
        &doc,
        "<!-- results:begin -->",
        "<!-- results:end -->",
        &section,
    )?;
    std::fs::write(&doc_path, doc)?;
    if opts.matrix {
        std::fs::write(
            root.join("docs/bench-throughput.svg"),
            compare_report::plot(&results),
        )?;
    }
    eprintln!("wrote {}", doc_path.display());
    Ok(())
}

fn plan(opts: &Options) -> Plan {
    let (select, rls) = if opts.quick {
        (vec![1, 50], vec![1, 50])
    } else {
        (vec![1, 10, 50, 100, 1000], vec![1, 10, 100, 1000])
    };
    Plan {
        select_clients: select,
        rls_clients: rls,
        modes: Mode::ALL.to_vec(),
        repetitions: opts.repetitions,
        duration: Duration::from_secs(opts.duration),
        warmup: Duration::from_secs(opts.duration).min(Duration::from_secs(4)) / 4,
        spin_one_client: opts.spin,
    }
}

/// One transaction per target checks that tenant A's identity reaches PostgreSQL the way the
/// RLS workload expects (half of `documents` visible), so that no target measures a refusal.
fn check_identity(env: &Env, dir: &Path) -> anyhow::Result<()> {
    let visible: u64 = env
        .stack
        .cluster
        .psql(
            pgcordon_devkit::stack::APP_DATABASE,
            &format!(
                "SELECT count(*) FROM documents WHERE owner_id = '{}';",
                pgcordon_devkit::stack::TENANT_A
            ),
        )?
        .trim()
        .parse()
        .context("counting tenant A's documents")?;
    for target in pgcordon_benches::env::Target::ALL {
        let path = dir.join(format!("check-{}.sql", target.name()));
        std::fs::write(&path, workload::check_script(target, visible))?;
        let out = std::process::Command::new("pgbench")
            .args(["--no-vacuum", "-t", "1", "-f"])
            .arg(&path)
            .arg(pgcordon_devkit::stack::APP_DATABASE)
            .env_remove("PGPASSWORD")
            .envs(
                env.conn(target)
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .output()?;
        if !out.status.success() {
            bail!(
                "identity check against {} failed:\n{}",
                target.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn measure_connections(env: &Env, opts: &Options) -> anyhow::Result<Conns> {
    let f = &env.stack.files;
    let base = setup::client_tls(&f.ca, Some(&f.tenant_a))?;
    let addr = ([127, 0, 0, 1], env.pgcordon_port).into();
    let pid = env.pgcordon_pid();
    let connectors = 16;
    let secs = Duration::from_secs(if opts.quick { 2 } else { 5 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        eprintln!("connection rate, full handshakes");
        let full = connections::rate(addr, &base, false, connectors, secs, pid).await?;
        eprintln!("  {full:?}");
        eprintln!("connection rate, returning clients");
        let resumed = connections::rate(addr, &base, true, connectors, secs, pid).await?;
        eprintln!("  {resumed:?}");
        eprintln!("holding {} connections", opts.held);
        let held = connections::hold(addr, &base, opts.held, 64, pid).await?;
        eprintln!("  {held:?}");
        Ok(Conns {
            full,
            resumed,
            connectors,
            held,
        })
    })
}

fn versions(env: &Env) -> anyhow::Result<String> {
    let first_line = |cmd: &str, arg: &str| -> String {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("{cmd}: unknown"))
    };
    let server = env.stack.cluster.psql("postgres", "SHOW server_version;")?;
    Ok(format!(
        "PostgreSQL {}; {}; {}; pgcordon release build",
        server.trim(),
        first_line("pgbouncer", "--version"),
        first_line("pgbench", "--version"),
    ))
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
