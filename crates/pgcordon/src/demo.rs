//! `pgcordon demo`: a development CA, a local PostgreSQL primary with TLS and SCRAM, a streaming
//! replica of it, the example row-level-security schema, two tenant certificates, and pgcordon
//! in front of it all, sending reads to the replica and everything else to the primary. Ctrl-C
//! stops everything it started.

use std::path::Path;

use anyhow::Context;
use pgcordon_devkit::stack::{ReplicaEntry, Stack, TENANT_A, TENANT_B};
use pgcordon_devkit::Cluster;

/// Marks a directory as demo state, so a later run may replace it without deleting anything else.
const MARKER: &str = ".pgcordon-demo-state";

/// The replica's label in the configuration, logs and metrics.
const REPLICA_NAME: &str = "replica-1";

/// Reads that provably only read go to the replica; the other settings keep their defaults.
const ROUTING: &str = "routing:\n  mode: auto\n";

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
    eprintln!(
        "pgcordon demo: starting a streaming replica (pg_basebackup) in {}/replica",
        dir.display()
    );
    let replica = stack
        .start_replica()
        .context("starting the streaming replica")?;
    let listen = format!("127.0.0.1:{port}");
    let pool = "  mode: transaction\n  size: 10\n  min_idle: 2\n  acquire_timeout: 5s";
    let replicas = [ReplicaEntry::of(REPLICA_NAME, &replica)];
    let config_path = stack.write_config_with_replicas(&listen, pool, &replicas, ROUTING)?;
    let config = pgcordon_config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;

    print_instructions(&stack, &replica, port, &config_path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(crate::serve(config));
    drop(runtime);
    eprintln!("pgcordon demo: stopping PostgreSQL (replica, then primary)");
    drop(replica);
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

fn print_instructions(stack: &Stack, replica: &Cluster, port: u16, config: &Path) {
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
        "PostgreSQL 15 runs on 127.0.0.1:{} (TLS + SCRAM), its streaming replica on 127.0.0.1:{}",
        stack.cluster.port(),
        replica.port()
    );
    println!();
    println!("Connect as tenant A ({TENANT_A}):");
    println!("  {}", conninfo(&f.tenant_a));
    println!("Connect as tenant B ({TENANT_B}):");
    println!("  {}", conninfo(&f.tenant_b));
    println!();
    println!("Try: SELECT title FROM documents;  SELECT current_setting('app.current_user_id');");
    println!();
    println!("Reads outside a transaction and READ ONLY transactions go to the replica,");
    println!("everything else to the primary; pg_is_in_recovery() is true only on the replica:");
    println!("  SELECT pg_is_in_recovery();                          -- t: the replica");
    println!("  BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT; -- t: the replica");
    println!("  BEGIN; SELECT pg_is_in_recovery(); COMMIT;           -- f: the primary");
    println!("  INSERT INTO documents (title) VALUES ('hello') RETURNING pg_is_in_recovery();");
    println!("                                                       -- f: the primary");
    println!("Right after a write, the same connection reads from the primary until the replica");
    println!("has replayed it (about a second here).");
    println!("Press Ctrl-C to stop pgcordon and PostgreSQL.");
    println!();
}
