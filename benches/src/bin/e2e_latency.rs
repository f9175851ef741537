//! `e2e-latency`: the round-trip latency pgcordon adds to one client's `SELECT 1`.
//!
//! One run starts the devkit stack (PostgreSQL 15, TLS, SCRAM, the example schema) in a
//! temporary directory and pgcordon in-process on its own runtime, then times `SELECT 1` from
//! one client on a single-threaded runtime, alternating blocks between (A) a direct TLS
//! connection to PostgreSQL as the app role and (B) an mTLS connection through pgcordon as
//! tenant A. Both go through the same client library, on the same machine, in the same run.
//! See docs/benchmarks.md.

use std::process::ExitCode;

use anyhow::{bail, Context};
use pgcordon_benches::cpu::{self, Ours};
use pgcordon_benches::options::{self, Options, Parsed};
use pgcordon_benches::report::{self, Meta, Results};
use pgcordon_benches::setup::{self, Mode, ProxyHandle, Target, POOL_YAML};
use pgcordon_benches::spin::Spinners;
use pgcordon_benches::stats::{self, Summary};
use pgcordon_devkit::stack::{Stack, APP_DATABASE, APP_ROLE, TENANT_A};
use tokio_postgres::Client;

fn main() -> ExitCode {
    let opts = match options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("e2e-latency: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("e2e-latency: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> anyhow::Result<String> {
    init_logging();
    let load_before = load_average();
    // Declared before the stack so that PostgreSQL stops before its directory is removed.
    let dir = tempfile::Builder::new()
        .prefix("pgcordon-bench")
        .tempdir()
        .context("creating a temporary directory")?;
    eprintln!("starting PostgreSQL and the CA in {}", dir.path().display());
    let stack = Stack::start(dir.path()).context("starting the devkit stack")?;
    let listen = Stack::free_listen_addr()?;
    let config_path = stack.write_config(&listen, POOL_YAML, "")?;
    let proxy = ProxyHandle::start(&config_path).context("starting pgcordon")?;
    eprintln!("pgcordon listening on {}", proxy.addr());

    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let outcome = client_runtime.block_on(measure(&stack, &proxy, opts, load_before));
    drop(client_runtime);
    drop(proxy);
    drop(stack);
    outcome
}

async fn measure(
    stack: &Stack,
    proxy: &ProxyHandle,
    opts: &Options,
    load_before: String,
) -> anyhow::Result<String> {
    let files = &stack.files;
    let mut direct_config = setup::pg_config(stack.cluster.port(), APP_ROLE, APP_DATABASE);
    direct_config.password(stack.password.as_str());
    let direct = setup::connect(&direct_config, setup::client_tls(&files.ca, None)?)
        .await
        .context("connecting directly to PostgreSQL")?;
    // pgcordon ignores the user name: the identity comes from the certificate.
    let proxied_config = setup::pg_config(proxy.addr().port(), "api", APP_DATABASE);
    let proxied = setup::connect(
        &proxied_config,
        setup::client_tls(&files.ca, Some(&files.tenant_a))?,
    )
    .await
    .context("connecting through pgcordon")?;

    // Check that each client is what it claims to be before timing anything.
    const TLS_OF_SESSION: &str = "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let tls_direct = setup::scalar(&direct, TLS_OF_SESSION).await?;
    let tls_upstream = setup::scalar(&proxied, TLS_OF_SESSION).await?;
    let (Some(tls_direct), Some(tls_upstream)) = (tls_direct, tls_upstream) else {
        bail!("a session to PostgreSQL is not using TLS");
    };
    let direct_identity = setup::scalar(
        &direct,
        "SELECT current_setting('app.current_user_id', true)",
    )
    .await?;
    if direct_identity.as_deref().is_some_and(|v| !v.is_empty()) {
        bail!("the direct session unexpectedly has an identity: {direct_identity:?}");
    }
    let identity = setup::scalar(&proxied, "SELECT current_setting('app.current_user_id')").await?;
    if identity.as_deref() != Some(TENANT_A) {
        bail!("through pgcordon the identity is {identity:?}, expected {TENANT_A}");
    }
    let postgres_version = setup::scalar(&direct, "SHOW server_version")
        .await?
        .unwrap_or_default();

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut spinners = if opts.spin {
        let s = Spinners::start(cpus)?;
        eprintln!("{} idle-priority spinners running", s.len());
        Some(s)
    } else {
        None
    };
    let spinner_count = spinners.as_ref().map_or(0, Spinners::len);

    let ours = Ours {
        pids: spinners.as_ref().map_or_else(Vec::new, Spinners::pids),
        postmaster: Ours::postmaster_of(stack.cluster.data_dir()),
    };
    if ours.postmaster.is_none() {
        bail!("cannot read the postmaster's pid");
    }
    let mut other_cpu = Vec::new();
    let mut steal = Vec::new();

    let clients = [(Target::Direct, &direct), (Target::Pgcordon, &proxied)];
    eprintln!(
        "warm-up: {} round trips per mode and connection",
        opts.warmup
    );
    for (_, client) in clients {
        alternate(client, opts.warmup, None).await?;
    }

    // blocks[target][mode]: one summary per block.
    let mut blocks: [[Vec<Summary>; 2]; 2] = Default::default();
    let mut samples = [
        Vec::with_capacity(opts.iterations),
        Vec::with_capacity(opts.iterations),
    ];
    for round in 1..=opts.blocks {
        for (ti, (target, client)) in clients.into_iter().enumerate() {
            alternate(client, opts.block_warmup, None).await?;
            samples.iter_mut().for_each(Vec::clear);
            let before = cpu::read(&ours);
            alternate(client, opts.iterations, Some(&mut samples)).await?;
            let usage = cpu::usage(&before, &cpu::read(&ours));
            other_cpu.push(usage.other_pct);
            steal.push(usage.steal_pct);
            let mut line = format!(
                "block {round:2}/{} {:8} other CPU {:3.0}%",
                opts.blocks,
                target.name(),
                usage.other_pct
            );
            for (mi, mode) in Mode::ALL.into_iter().enumerate() {
                let s = stats::summarize(&mut samples[mi]);
                line.push_str(&format!(
                    "  {} p50 {:.1} µs p99 {:.1} µs",
                    mode.name(),
                    s.p50 / 1000.0,
                    s.p99 / 1000.0
                ));
                blocks[ti][mi].push(s);
            }
            eprintln!("{line}");
        }
    }

    if let Some(s) = spinners.as_mut() {
        let problems = s.stop();
        if !problems.is_empty() {
            bail!("spinners failed during the run: {}", problems.join("; "));
        }
    }

    let mut results = Results::default();
    for (ti, target) in Target::ALL.into_iter().enumerate() {
        for (mi, mode) in Mode::ALL.into_iter().enumerate() {
            results.insert(target, mode, stats::aggregate(&blocks[ti][mi]));
        }
    }
    let meta = Meta {
        cpus,
        cpu_model: cpu::model_name(),
        load_before,
        other_cpu_median: stats::median(&other_cpu),
        other_cpu_max: other_cpu.iter().copied().fold(0.0, f64::max),
        steal_max: steal.iter().copied().fold(0.0, f64::max),
        postgres_version,
        tls_direct,
        tls_upstream,
        options: opts.clone(),
        spinners: spinner_count,
    };
    Ok(report::markdown(&meta, &results))
}

/// Runs `count` round trips of each mode, alternating simple and typed query by query; records
/// the latencies into `into[mode]` when given.
async fn alternate(
    client: &Client,
    count: usize,
    mut into: Option<&mut [Vec<u64>; 2]>,
) -> anyhow::Result<()> {
    for _ in 0..count {
        for (mi, mode) in Mode::ALL.into_iter().enumerate() {
            let ns = setup::round_trip(client, mode).await?;
            if let Some(into) = into.as_deref_mut() {
                into[mi].push(ns);
            }
        }
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// pgcordon's log lines (warnings and errors by default, as `pgcordon run` at `log.level: warn`)
/// go to standard error; PGCORDON_BENCH_LOG takes a tracing filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGCORDON_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
