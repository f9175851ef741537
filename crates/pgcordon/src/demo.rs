//! `pgcordon demo`: a development CA, a local PostgreSQL primary with TLS and SCRAM, the example
//! row-level-security schema, two tenant certificates, and pgcordon in front of it all. Ctrl-C
//! stops everything it started.

use std::path::Path;

use anyhow::Context;
use pgcordon_devkit::stack::{Stack, TENANT_A, TENANT_B};

/// Marks a directory as demo state, so a later run may replace it without deleting anything else.
const MARKER: &str = ".pgcordon-demo-state";

pub fn run(dir: &Path, port: u16) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    pgcordon_devkit::find_pg_bindir().context(
        "the demo needs PostgreSQL server binaries (Debian: apt-get install postgresql)",
    )?;
    prepare_dir(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;

    eprintln!(
        "pgcordon demo: creating a CA and starting PostgreSQL in {}",
        dir.display()
    );
    let stack = Stack::start(&dir).context("starting the local PostgreSQL stack")?;
    let listen = format!("127.0.0.1:{port}");
    let pool = "  mode: transaction\n  size: 10\n  min_idle: 2\n  acquire_timeout: 5s";
    let config_path = stack.write_config(&listen, pool, "")?;
    let config = pgcordon_config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;

    print_instructions(&stack, port, &config_path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(crate::serve(config));
    drop(runtime);
    eprintln!("pgcordon demo: stopping PostgreSQL");
    drop(stack);
    served
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        anyhow::ensure!(
            dir.join(MARKER).exists(),
            "{} exists and is not a pgcordon demo directory; choose another with --dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "pgcordon demo state; safe to delete\n")
        .with_context(|| format!("writing in {}", dir.display()))?;
    Ok(())
}

fn print_instructions(stack: &Stack, port: u16, config: &Path) {
    let f = &stack.files;
    let conninfo = |(cert, key): &(std::path::PathBuf, std::path::PathBuf)| {
        format!(
            "psql \"host=localhost port={port} dbname=app sslmode=verify-full sslrootcert={} \
             sslcert={} sslkey={}\"",
            f.ca.display(),
            cert.display(),
            key.display()
        )
    };
    println!();
    println!(
        "pgcordon is listening on 127.0.0.1:{port} (configuration: {})",
        config.display()
    );
    println!(
        "PostgreSQL 15 runs on 127.0.0.1:{} (TLS + SCRAM)",
        stack.cluster.port()
    );
    println!();
    println!("Connect as tenant A ({TENANT_A}):");
    println!("  {}", conninfo(&f.tenant_a));
    println!("Connect as tenant B ({TENANT_B}):");
    println!("  {}", conninfo(&f.tenant_b));
    println!();
    println!("Try: SELECT title FROM documents;  SELECT current_setting('app.current_user_id');");
    println!("Press Ctrl-C to stop pgcordon and PostgreSQL.");
    println!();
}
