//! `pool`, `limits` and `log`, with their defaults.

use std::time::Duration;

use crate::{ok, plus, refused, with, BASE};
use pgcordon_config::{defaults, LogFormat, PoolMode};

const SIZE: &str = "pool:\n  size: 20\n";

fn pool(body: &str) -> String {
    with(SIZE, &format!("pool:\n{body}"))
}

#[test]
fn pool_defaults() {
    let config = ok(&with(SIZE, ""));
    let pool = &config.pool;
    assert_eq!(pool.mode, PoolMode::Transaction);
    assert_eq!((pool.size, pool.min_idle), (20, 0));
    assert_eq!(pool.acquire_timeout, Duration::from_secs(5));
    assert_eq!(pool.server_lifetime, Duration::from_secs(3600));
    assert_eq!(pool.idle_timeout, Duration::from_secs(600));
    // An empty section (every key commented out) keeps the defaults too.
    assert_eq!(ok(&with(SIZE, "pool:\n")).pool.size, defaults::POOL_SIZE);
}

#[test]
fn pool_values_are_read() {
    let config = ok(&pool(
        "  mode: session\n  size: 50\n  min_idle: 50\n  acquire_timeout: 250ms\n  \
         server_lifetime: 1h30m\n  idle_timeout: 90s\n",
    ));
    let pool = &config.pool;
    assert_eq!(pool.mode, PoolMode::Session);
    assert_eq!((pool.size, pool.min_idle), (50, 50));
    assert_eq!(pool.acquire_timeout, Duration::from_millis(250));
    assert_eq!(pool.server_lifetime, Duration::from_secs(5400));
    assert_eq!(pool.idle_timeout, Duration::from_secs(90));
}

#[test]
fn pool_size_is_bounded() {
    for bad in ["0", "10001", "-1"] {
        let problem = refused(
            &pool(&format!("  size: {bad}\n")),
            "pool.size",
            "from 1 to 10000",
        );
        assert_eq!(problem.found, bad);
    }
    ok(&pool("  size: 10000\n"));
    let text = refused(&pool("  size: twenty\n"), "pool.size", "a whole number");
    assert_eq!(text.found, "the string \"twenty\"");
    refused(&pool("  size: 2.5\n"), "pool.size", "a whole number");
}

#[test]
fn min_idle_is_at_most_size() {
    let problem = refused(
        &pool("  size: 4\n  min_idle: 5\n"),
        "pool.min_idle",
        "at most pool.size (4)",
    );
    assert_eq!(problem.found, "5");
    let position = problem.position.expect("a position");
    assert_eq!((position.line, position.column), (19, 13));
    refused(
        &pool("  min_idle: -1\n"),
        "pool.min_idle",
        "a whole number from 0",
    );
}

#[test]
fn pool_mode_is_transaction_or_session() {
    let problem = refused(
        &pool("  mode: statement\n"),
        "pool.mode",
        "one of transaction, session",
    );
    assert_eq!(problem.found, "\"statement\"");
    refused(
        &pool("  mode: [session]\n"),
        "pool.mode",
        "one of transaction, session",
    );
}

#[test]
fn pool_durations_are_positive() {
    refused(
        &pool("  idle_timeout: 0ms\n"),
        "pool.idle_timeout",
        "above zero",
    );
    refused(
        &pool("  server_lifetime: 1.5h\n"),
        "pool.server_lifetime",
        "a duration",
    );
    refused(
        &pool("  acquire_timeout: ''\n"),
        "pool.acquire_timeout",
        "a duration",
    );
}

#[test]
fn limits_defaults_and_sizes() {
    let config = ok(BASE);
    assert_eq!(config.limits.startup_timeout, Duration::from_secs(10));
    assert_eq!(config.limits.max_frame_bytes, 16 * 1024 * 1024);
    assert_eq!(config.limits.max_client_connections, 10_000);

    let limits = |body: &str| plus(&format!("limits:\n{body}"));
    assert_eq!(
        ok(&limits("  max_frame_bytes: 64KiB\n"))
            .limits
            .max_frame_bytes,
        65_536
    );
    assert_eq!(
        ok(&limits("  max_frame_bytes: 1048576\n"))
            .limits
            .max_frame_bytes,
        1 << 20
    );
    assert_eq!(
        ok(&limits("  max_frame_bytes: 1GiB\n"))
            .limits
            .max_frame_bytes,
        1 << 30
    );
    let config = ok(&limits(
        "  startup_timeout: 3s\n  max_client_connections: 1\n",
    ));
    assert_eq!(config.limits.startup_timeout, Duration::from_secs(3));
    assert_eq!(config.limits.max_client_connections, 1);

    let small = refused(
        &limits("  max_frame_bytes: 65535\n"),
        "limits.max_frame_bytes",
        "from 64KiB to 1GiB",
    );
    assert_eq!(small.found, "65535B");
    refused(
        &limits("  max_frame_bytes: 2GiB\n"),
        "limits.max_frame_bytes",
        "from 64KiB to 1GiB",
    );
    let decimal = refused(
        &limits("  max_frame_bytes: 16MB\n"),
        "limits.max_frame_bytes",
        "a byte size",
    );
    assert!(decimal.found.contains("KiB, MiB or GiB"), "{decimal:?}");
    refused(
        &limits("  max_frame_bytes: -1\n"),
        "limits.max_frame_bytes",
        "a byte size",
    );
    refused(
        &limits("  max_client_connections: 0\n"),
        "limits.max_client_connections",
        "from 1",
    );
    refused(
        &limits("  startup_timeout: 10\n"),
        "limits.startup_timeout",
        "a duration",
    );
}

#[test]
fn log_format_and_level() {
    let config = ok(BASE);
    assert_eq!(
        (config.log.format, config.log.level.as_str()),
        (LogFormat::Text, "info")
    );

    let log = |body: &str| plus(&format!("log:\n{body}"));
    let config = ok(&log("  format: json\n  level: off\n"));
    assert_eq!(
        (config.log.format, config.log.level.as_str()),
        (LogFormat::Json, "off")
    );
    let directive = ok(&log("  level: 'warn,pgcordon_proxy=debug'\n"));
    assert_eq!(directive.log.level, "warn,pgcordon_proxy=debug");

    refused(&log("  format: xml\n"), "log.format", "one of text, json");
    refused(&log("  level: ''\n"), "log.level", "a tracing filter");
}
