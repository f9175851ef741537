//! Logging set-up from the `log` section: text or JSON lines on stderr, filtered by level.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(log: &pgcordon_config::Log) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(directives).context("RUST_LOG")?,
        Err(_) => EnvFilter::try_new(&log.level).context("log.level")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        pgcordon_config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
        pgcordon_config::LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}
