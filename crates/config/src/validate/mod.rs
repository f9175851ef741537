//! Validation: from the raw file structs to the checked [`Config`].
//!
//! Owns every rule beyond types: addresses parse, wildcard listeners are refused unless
//! allowed, ranges and cross-field rules hold, paths are non-empty and made absolute against
//! the config file's directory, defaults are filled in. It collects every problem it finds
//! instead of stopping at the first, so one `pgcordon check` run lists them all. It reads no
//! file other than the config itself (which `load` already read); the one thing it reads
//! from outside is the environment variable named by `upstream.password_env`.

mod guard;
mod identity;
mod operations;
mod routing;
mod upstream;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::defaults;
use crate::error::{ConfigError, Problem};
use crate::model::{Config, Limits, Listener, Log, Pool, ServerTls};
use crate::raw::{RawConfig, RawLimits, RawListener, RawLog, RawPool, RawServerTls};
use crate::tree::{self, Located};
use crate::units::{format_byte_size, Int};

/// Turns the raw file into a checked configuration, or lists everything wrong with it.
pub(crate) fn check(raw: RawConfig, origin: &Path, tree: &Located) -> Result<Config, ConfigError> {
    let source = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
    let dir = source.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Check {
        problems: Vec::new(),
        dir,
    };

    let allow_wildcard = raw.allow_wildcard.unwrap_or(false);
    let listen = c.listeners(&raw.listen, allow_wildcard);
    let tls = c.server_tls(raw.tls);
    let identity = c.identity(raw.identity);
    let upstream = c.upstream(raw.upstream);
    let pool = c.pool(raw.pool);
    let limits = c.limits(raw.limits);
    let log = c.log(raw.log);
    let admin = c.admin(raw.admin, allow_wildcard, listen.as_deref());
    let audit = c.audit(raw.audit);
    let routing = c.routing(raw.routing);
    let shutdown = c.shutdown(raw.shutdown);
    let guard = c.guard(raw.guard);

    let (
        Some(listen),
        Some(tls),
        Some(identity),
        Some(upstream),
        Some(pool),
        Some(limits),
        Some(log),
        Some(admin),
        Some(audit),
        Some(routing),
        Some(guard),
    ) = (
        listen, tls, identity, upstream, pool, limits, log, admin, audit, routing, guard,
    )
    else {
        return Err(c.into_error(origin, tree));
    };
    if !c.problems.is_empty() {
        return Err(c.into_error(origin, tree));
    }
    Ok(Config {
        source,
        listen,
        allow_wildcard,
        tls,
        identity,
        upstream,
        pool,
        limits,
        log,
        admin,
        audit,
        routing,
        shutdown,
        guard,
    })
}

/// The validation pass: the problems found so far and the directory relative paths start from.
pub(crate) struct Check {
    problems: Vec<Problem>,
    dir: PathBuf,
}

impl Check {
    /// Records a problem; its position is looked up at the end.
    fn add(
        &mut self,
        key: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        let problem = Problem {
            key: key.into(),
            expected: expected.into(),
            found: found.into(),
            position: None,
        };
        self.problems.push(problem);
    }

    fn into_error(mut self, file: &Path, tree: &Located) -> ConfigError {
        for problem in &mut self.problems {
            problem.position = tree::locate(tree, &problem.key);
        }
        // File order reads best; problems without a position go last.
        self.problems
            .sort_by_key(|p| p.position.map_or((u64::MAX, 0), |p| (p.line, p.column)));
        ConfigError::Invalid {
            file: file.to_path_buf(),
            problems: self.problems,
        }
    }

    /// A non-empty path, made absolute against the config file's directory.
    fn path(&mut self, key: &str, raw: &str) -> Option<PathBuf> {
        if raw.trim().is_empty() {
            self.add(key, "a file path", "an empty string");
            return None;
        }
        Some(self.dir.join(raw))
    }

    /// A whole number in `range`, or `default` when the key is absent.
    fn ranged(
        &mut self,
        key: &str,
        value: Option<Int>,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Option<u32> {
        let Some(Int(n)) = value else {
            return Some(default);
        };
        match u32::try_from(n) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                let expected = format!("a whole number from {} to {}", range.start(), range.end());
                self.add(key, expected, n.to_string());
                None
            }
        }
    }

    // ---- sections without a module of their own ----

    fn listeners(&mut self, raw: &[RawListener], allow_wildcard: bool) -> Option<Vec<Listener>> {
        if raw.is_empty() {
            self.add(
                "listen",
                "at least one `- address: host:port` entry",
                "an empty list",
            );
            return None;
        }
        let mut out: Vec<Listener> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, listener) in raw.iter().enumerate() {
            let key = format!("listen[{index}].address");
            let Ok(address) = listener.address.parse::<SocketAddr>() else {
                let expected = "an IP address and port such as 127.0.0.1:6432 or [::1]:6432";
                self.add(key, expected, format!("{:?}", listener.address));
                ok = false;
                continue;
            };
            // A wildcard exposes the proxy on every interface, including public ones; pgcordon
            // is meant to sit next to its application, so that must be a deliberate choice.
            if is_wildcard(&address) && !allow_wildcard {
                let expected = "a specific interface address: a wildcard listens on every \
                                interface of the host and is refused unless \
                                `allow_wildcard: true` is set";
                self.add(key.as_str(), expected, address.to_string());
                ok = false;
            }
            if out.iter().any(|l| l.address == address) {
                self.add(
                    key,
                    "each address listed once",
                    format!("{address} a second time"),
                );
                ok = false;
            }
            out.push(Listener { address });
        }
        ok.then_some(out)
    }

    fn server_tls(&mut self, raw: RawServerTls) -> Option<ServerTls> {
        let cert = self.path("tls.cert", &raw.cert);
        let key = self.path("tls.key", &raw.key);
        let client_ca = self.path("tls.client_ca", &raw.client_ca);
        let mut crl = Vec::new();
        for (index, path) in raw.crl.unwrap_or_default().iter().enumerate() {
            crl.push(self.path(&format!("tls.crl[{index}]"), path));
        }
        let handshake_timeout = raw
            .handshake_timeout
            .map_or(defaults::HANDSHAKE_TIMEOUT, |d| d.0);
        Some(ServerTls {
            cert: cert?,
            key: key?,
            client_ca: client_ca?,
            crl: crl.into_iter().collect::<Option<_>>()?,
            handshake_timeout,
        })
    }

    fn pool(&mut self, raw: RawPool) -> Option<Pool> {
        let size = self.ranged(
            "pool.size",
            raw.size,
            defaults::POOL_SIZE,
            1..=defaults::POOL_SIZE_MAX,
        );
        let range = 0..=defaults::POOL_SIZE_MAX;
        let min_idle = self.ranged("pool.min_idle", raw.min_idle, defaults::MIN_IDLE, range);
        if let (Some(size), Some(min)) = (size, min_idle) {
            if min > size {
                self.add(
                    "pool.min_idle",
                    format!("at most pool.size ({size})"),
                    min.to_string(),
                );
                return None;
            }
        }
        Some(Pool {
            mode: raw.mode.unwrap_or_default(),
            size: size?,
            min_idle: min_idle?,
            acquire_timeout: raw
                .acquire_timeout
                .map_or(defaults::ACQUIRE_TIMEOUT, |d| d.0),
            server_lifetime: raw
                .server_lifetime
                .map_or(defaults::SERVER_LIFETIME, |d| d.0),
            idle_timeout: raw.idle_timeout.map_or(defaults::IDLE_TIMEOUT, |d| d.0),
        })
    }

    fn limits(&mut self, raw: RawLimits) -> Option<Limits> {
        let max_frame_bytes = match raw.max_frame_bytes {
            None => Some(defaults::MAX_FRAME_BYTES),
            Some(size) => self.frame_limit(size.0),
        };
        let max_client_connections = self.ranged(
            "limits.max_client_connections",
            raw.max_client_connections,
            defaults::MAX_CLIENT_CONNECTIONS,
            1..=u32::MAX,
        );
        let per_identity = self.ranged(
            "limits.max_connections_per_identity",
            raw.max_connections_per_identity,
            0,
            0..=u32::MAX,
        );
        let optional = |d: Option<crate::units::AnyDuration>, default: Duration| {
            let d = d.map_or(default, |d| d.0);
            (!d.is_zero()).then_some(d)
        };
        Some(Limits {
            startup_timeout: raw
                .startup_timeout
                .map_or(defaults::STARTUP_TIMEOUT, |d| d.0),
            max_frame_bytes: max_frame_bytes?,
            max_client_connections: max_client_connections?,
            max_connections_per_identity: Some(per_identity?).filter(|n| *n > 0),
            client_idle_timeout: optional(raw.client_idle_timeout, Duration::ZERO),
            idle_in_transaction_timeout: optional(
                raw.idle_in_transaction_timeout,
                defaults::IDLE_IN_TRANSACTION_TIMEOUT,
            ),
        })
    }

    fn frame_limit(&mut self, bytes: u64) -> Option<u32> {
        let range = defaults::MIN_FRAME_BYTES..=defaults::MAX_FRAME_BYTES_LIMIT;
        match u32::try_from(bytes) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                let expected = format!(
                    "a size from {} to {}",
                    format_byte_size(u64::from(*range.start())),
                    format_byte_size(u64::from(*range.end())),
                );
                self.add("limits.max_frame_bytes", expected, format_byte_size(bytes));
                None
            }
        }
    }

    fn log(&mut self, raw: RawLog) -> Option<Log> {
        let level = raw.level.unwrap_or_else(|| defaults::LOG_LEVEL.to_owned());
        if level.trim().is_empty() {
            self.add(
                "log.level",
                "a tracing filter such as info or pgcordon=debug",
                "an empty string",
            );
            return None;
        }
        Some(Log {
            format: raw.format.unwrap_or_default(),
            level,
        })
    }
}

/// 0.0.0.0, [::] and the IPv4-mapped form [::ffff:0.0.0.0] all bind every interface.
fn is_wildcard(address: &SocketAddr) -> bool {
    match address {
        SocketAddr::V4(a) => a.ip().is_unspecified(),
        SocketAddr::V6(a) => {
            a.ip().is_unspecified()
                || a.ip()
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_unspecified())
        }
    }
}
