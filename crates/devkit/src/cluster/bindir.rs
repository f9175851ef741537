//! Finding the PostgreSQL server binaries and a free TCP port.
//!
//! Owns the search order for `initdb` and friends; it does not check the server version beyond
//! preferring the highest Debian-style `/usr/lib/postgresql/<version>/bin`.

use std::collections::BTreeSet;
use std::env;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use crate::{random, DevkitError};

/// Lowest port [`free_port`] hands out. Ports come from below the kernel's ephemeral range:
/// a port found free inside it can be taken by any test's next outgoing connection before the
/// server meant for it binds it.
const FIRST_PORT: u16 = 20000;
/// Random ports tried before falling back to the kernel's choice.
const PORT_TRIES: usize = 64;
/// Ports handed out by this process, never handed out twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Environment variable that names the server binary directory explicitly.
pub const BINDIR_ENV: &str = "PGCORDON_PG_BINDIR";

/// Where Debian and Ubuntu install one directory per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres`, `pg_basebackup` and `psql`.
///
/// The order is: the `PGCORDON_PG_BINDIR` environment variable (an error if it is set but holds
/// no `initdb`, since the caller asked for exactly that one), then `pg_config --bindir` when
/// that directory has `initdb` (on Debian it may only hold client tools), then the highest
/// version under `/usr/lib/postgresql/*/bin`.
///
/// # Errors
/// [`DevkitError::BinDirNotFound`] listing every place tried and why it did not fit.
pub fn find_pg_bindir() -> Result<PathBuf, DevkitError> {
    let mut tried = Vec::new();

    if let Some(dir) = env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_initdb(&dir) {
            return Ok(dir);
        }
        tried.push(format!("{BINDIR_ENV}={} (no initdb there)", dir.display()));
        return Err(DevkitError::BinDirNotFound {
            tried: tried.join("; "),
        });
    }
    tried.push(format!("{BINDIR_ENV} (not set)"));

    match pg_config_bindir() {
        Ok(dir) if has_initdb(&dir) => return Ok(dir),
        Ok(dir) => tried.push(format!(
            "pg_config --bindir = {} (no initdb there)",
            dir.display()
        )),
        Err(why) => tried.push(format!("pg_config --bindir ({why})")),
    }

    match highest_debian_bindir() {
        Some(dir) => Ok(dir),
        None => {
            tried.push(format!("{DEBIAN_ROOT}/*/bin (no directory with initdb)"));
            Err(DevkitError::BinDirNotFound {
                tried: tried.join("; "),
            })
        }
    }
}

/// A free TCP port on 127.0.0.1: a random port below the kernel's ephemeral range that binds
/// now and that this process has not handed out before (the kernel's choice of port 0 if
/// none is found, or the range starts too low).
///
/// Another process can still take the port between this call and its use; [`super::Cluster`]
/// retries with a new port when the server reports that it could not bind.
///
/// # Errors
/// [`DevkitError::NoFreePort`] if binding fails; [`DevkitError::Random`] without randomness.
pub fn free_port() -> Result<u16, DevkitError> {
    let first_ephemeral = ephemeral_range_start();
    if first_ephemeral > FIRST_PORT {
        let span = first_ephemeral - FIRST_PORT;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..PORT_TRIES {
            let raw = random::bytes(2, "a free port")?;
            let port = FIRST_PORT + u16::from_be_bytes([raw[0], raw[1]]) % span;
            if handed_out.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    // The kernel's own choice, from the ephemeral range.
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|source| DevkitError::NoFreePort { source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DevkitError::NoFreePort { source })?;
    Ok(addr.port())
}

/// The first port of the kernel's ephemeral range, from which every outgoing connection
/// takes its local port (Linux's default when it cannot be read).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn has_initdb(dir: &Path) -> bool {
    dir.join("initdb").is_file()
}

fn pg_config_bindir() -> Result<PathBuf, String> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("exited with {}", output.status));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| "output is not UTF-8".to_string())?;
    Ok(PathBuf::from(text.trim()))
}

/// The `bin` directory of the highest version under [`DEBIAN_ROOT`] that has `initdb`.
fn highest_debian_bindir() -> Option<PathBuf> {
    let entries = std::fs::read_dir(DEBIAN_ROOT).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = version_key(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version directory.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_directories_order_numerically() {
        assert!(version_key("10") > version_key("9.6"));
        assert!(version_key("15") > version_key("14"));
        assert_eq!(version_key("common"), None);
    }

    #[test]
    fn finds_a_bindir_with_the_server_tools() {
        let dir = find_pg_bindir().unwrap();
        for tool in ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"] {
            assert!(
                dir.join(tool).is_file(),
                "{tool} missing in {}",
                dir.display()
            );
        }
    }

    /// Another process can take a port between free_port and the bind (the reason Cluster
    /// retries), so this asks for a few and needs most of them to bind.
    #[test]
    fn free_ports_can_be_bound_again() {
        let mut refused = Vec::new();
        for _ in 0..5 {
            let port = free_port().unwrap();
            assert_ne!(port, 0);
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                refused.push((port, e.to_string()));
            }
        }
        assert!(
            refused.len() <= 1,
            "free ports that did not bind: {refused:?}"
        );
    }

    #[test]
    fn free_ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let first_ephemeral = ephemeral_range_start();
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        if first_ephemeral > FIRST_PORT {
            assert!(
                ports
                    .iter()
                    .all(|p| (FIRST_PORT..first_ephemeral).contains(p)),
                "{ports:?}"
            );
        }
    }
}
