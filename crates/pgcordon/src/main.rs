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

/// Loads settings, binds, warms the pool and serves until SIGINT or SIGTERM.
pub(crate) async fn serve(config: pgcordon_config::Config) -> anyhow::Result<()> {
    let settings = pgcordon_proxy::ProxySettings::from_config(&config)
        .with_context(|| format!("loading files named by {}", config.source.display()))?;
    let proxy = pgcordon_proxy::Proxy::new(settings)?;
    let bound = proxy.bind().await?;
    match bound.pool().warm_up().await {
        Ok(opened) => tracing::info!(opened, "upstream pool warmed up"),
        Err(e) => tracing::error!(error = %e, "upstream not reachable at start; will retry"),
    }
    bound.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
