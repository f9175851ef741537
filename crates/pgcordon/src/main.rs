//! The `pgcordon` binary: command-line parsing, logging set-up and signal handling around the
//! proxy crate. Everything else lives in the library crates.

mod demo;
mod logging;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// An mTLS sidecar for PostgreSQL that puts the client certificate's identity on every
/// transaction, so row-level security isolates tenants.
#[derive(Parser)]
#[command(name = "pgcordon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and the files it names, print a summary, and exit
    /// (status 2 on an invalid configuration).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a local PostgreSQL, a development CA and pgcordon in front of them.
    Demo {
        /// State directory (created; a previous demo state there is replaced).
        #[arg(long, default_value = ".pgcordon-demo")]
        dir: PathBuf,
        /// Port pgcordon listens on (on 127.0.0.1).
        #[arg(long, default_value_t = 6432)]
        port: u16,
    },
}

/// Exit status for an invalid configuration, distinct from run-time failures.
const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => return check(&config),
        Command::Demo { dir, port } => demo::run(&dir, port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgcordon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match pgcordon_config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if let Err(e) = pgcordon_proxy::ProxySettings::from_config(&config) {
        eprintln!("{}: {}", path.display(), with_causes(&e));
        return ExitCode::from(EXIT_INVALID_CONFIG);
    }
    println!("{}: OK", path.display());
    println!("{}", config.summary());
    ExitCode::SUCCESS
}

/// An error and each of its causes, "outer: inner: innermost".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = pgcordon_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    logging::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

/// How often the TLS files are checked for changes (cert-manager rewrites them in place).
const RELOAD_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads settings, binds, warms the pool and serves until SIGINT or SIGTERM, then drains.
pub(crate) async fn serve(config: pgcordon_config::Config) -> anyhow::Result<()> {
    let settings = pgcordon_proxy::ProxySettings::from_config(&config)
        .with_context(|| format!("loading files named by {}", config.source.display()))?;
    let metrics = pgcordon_metrics::Metrics::new();
    let readiness = std::sync::Arc::new(pgcordon_admin::ReadinessFlags::new());
    let (audit, audit_writer) = start_audit(&config, &metrics)?;
    let obs = pgcordon_proxy::Observability {
        metrics: metrics.clone(),
        audit,
        readiness: readiness.clone(),
    };

    let proxy = pgcordon_proxy::Proxy::new(settings, obs)?;
    let bound = proxy.bind().await?;
    let (admin_stop, admin_task) = start_admin(&config, metrics, readiness.clone()).await?;
    match bound.pool().warm_up().await {
        Ok(opened) => {
            readiness.set_primary_reachable(true);
            tracing::info!(opened, "upstream pool warmed up");
        }
        Err(e) => tracing::error!(error = %e, "upstream not reachable at start; will retry"),
    }
    let reloader = bound.reloader();
    reloader.record_expiry();
    let watcher = reloader.clone().spawn_watch(RELOAD_POLL);
    let hangups = tokio::spawn(reload_on_sighup(reloader));

    bound.run(shutdown_signal()).await;
    watcher.abort();
    hangups.abort();
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    if let Some(writer) = audit_writer {
        // Every Audit handle is gone with the proxy: the writer flushes and returns.
        let _ = writer.await;
    }
    Ok(())
}

type AuditTask = Option<tokio::task::JoinHandle<()>>;

fn start_audit(
    config: &pgcordon_config::Config,
    metrics: &pgcordon_metrics::Metrics,
) -> anyhow::Result<(pgcordon_audit::Audit, AuditTask)> {
    let Some(cfg) = &config.audit else {
        return Ok((pgcordon_audit::Audit::disabled(), None));
    };
    let output = match &cfg.output {
        pgcordon_config::AuditOutput::Stdout => pgcordon_audit::AuditOutput::Stdout,
        pgcordon_config::AuditOutput::File(path) => pgcordon_audit::AuditOutput::File(path.clone()),
    };
    let settings = pgcordon_audit::AuditSettings {
        output,
        transactions: cfg.transactions,
        statements: cfg.statements,
        queue: cfg.queue as usize,
    };
    let (audit, writer) = pgcordon_audit::start(&settings, metrics.audit_records_dropped.clone())
        .context("starting the audit trail")?;
    let task = tokio::spawn(async move {
        let summary = writer.run().await;
        tracing::info!(?summary, "audit trail closed");
    });
    Ok((audit, Some(task)))
}

async fn start_admin(
    config: &pgcordon_config::Config,
    metrics: std::sync::Arc<pgcordon_metrics::Metrics>,
    readiness: std::sync::Arc<pgcordon_admin::ReadinessFlags>,
) -> anyhow::Result<(
    tokio::sync::oneshot::Sender<()>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let Some(admin) = &config.admin else {
        return Ok((stop, None));
    };
    let server = pgcordon_admin::AdminServer::bind(admin.listen, metrics, readiness)
        .await
        .with_context(|| format!("binding the admin listener {}", admin.listen))?;
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Ok((stop, Some(task)))
}

async fn reload_on_sighup(reloader: pgcordon_proxy::Reloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP; reloads happen on file changes only");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading TLS material");
            let _ = reloader.reload();
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Completes on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_terminate().await;
    tracing::info!("shutting down: draining (a second signal exits at once)");
    tokio::spawn(async {
        wait_for_terminate().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(1);
    });
}

async fn wait_for_terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
