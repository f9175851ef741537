//! The configuration files the devkit writes into a data directory.
//!
//! Owns `devkit.conf` (the settings the kit manages: port, sockets, TLS, replication; included
//! from `postgresql.conf` and rewritten when the port changes or a replica is made) and the
//! default `pg_hba.conf`. It does not validate user-supplied `extra_conf` or `hba` lines; the
//! server does that at start-up.

use std::path::Path;

use crate::DevkitError;

/// File name of the kit-managed settings inside the data directory.
pub(crate) const DEVKIT_CONF: &str = "devkit.conf";
/// TLS file names inside the data directory; relative names resolve against it, so a replica
/// made by pg_basebackup finds its copies.
pub(crate) const SERVER_CERT: &str = "server.crt";
pub(crate) const SERVER_KEY: &str = "server.key";
pub(crate) const CLIENT_CA: &str = "client_ca.crt";

/// Replication senders and slots: room for a few replicas and a pg_basebackup at once.
const MAX_WAL_SENDERS: u32 = 10;

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The per-cluster values that go into [`DEVKIT_CONF`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) client_ca: bool,
}

/// The contents of [`DEVKIT_CONF`] for a cluster whose sockets live in `socket_dir`.
pub(crate) fn devkit_conf(settings: &Settings, socket_dir: &Path) -> Result<String, DevkitError> {
    let socket_dir = socket_dir.to_str().ok_or_else(|| {
        DevkitError::Invalid(format!(
            "socket directory {} is not UTF-8",
            socket_dir.display()
        ))
    })?;
    // The server appends "/.s.PGSQL.<port>" (at most 15 bytes) to the directory.
    if socket_dir.len() + 15 > MAX_SOCKET_PATH {
        return Err(DevkitError::Invalid(format!(
            "socket directory {socket_dir} is too long for a unix socket path; use a shorter dir"
        )));
    }
    if socket_dir.contains(',') {
        return Err(DevkitError::Invalid(format!(
            "socket directory {socket_dir} contains a comma (unix_socket_directories splits on it)"
        )));
    }

    let mut lines = vec![
        "# Managed by pgcordon-devkit; rewritten when the port or role changes.".to_string(),
        "listen_addresses = '127.0.0.1'".to_string(),
        format!("port = {}", settings.port),
        format!("unix_socket_directories = {}", quote(socket_dir)),
        "password_encryption = 'scram-sha-256'".to_string(),
        "wal_level = replica".to_string(),
        format!("max_wal_senders = {MAX_WAL_SENDERS}"),
        format!("max_replication_slots = {MAX_WAL_SENDERS}"),
        "hot_standby = on".to_string(),
        // Throw-away clusters: durability is not worth the time it costs in tests.
        "fsync = off".to_string(),
    ];
    if settings.tls {
        lines.push("ssl = on".to_string());
        lines.push(format!("ssl_cert_file = {}", quote(SERVER_CERT)));
        lines.push(format!("ssl_key_file = {}", quote(SERVER_KEY)));
    }
    if settings.client_ca {
        lines.push(format!("ssl_ca_file = {}", quote(CLIENT_CA)));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// What is appended to the `postgresql.conf` that initdb wrote: the include of
/// [`DEVKIT_CONF`], then the caller's lines, which therefore win over the kit's.
pub(crate) fn postgresql_conf_tail(extra: &[String]) -> String {
    let mut text = format!("\n# pgcordon-devkit\ninclude = {}\n", quote(DEVKIT_CONF));
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The kit's default `pg_hba.conf`: trust on the unix socket (the admin path), SCRAM over TLS on
/// 127.0.0.1 for sessions and replication, and a reject for any plaintext TCP connection.
pub(crate) fn default_hba() -> Vec<String> {
    [
        "local all all trust",
        "local replication all trust",
        "hostssl all all 127.0.0.1/32 scram-sha-256",
        "hostssl replication all 127.0.0.1/32 scram-sha-256",
        "hostnossl all all 0.0.0.0/0 reject",
    ]
    .map(String::from)
    .to_vec()
}

/// The `pg_hba.conf` text for `lines` (the default set when empty).
pub(crate) fn hba_file(lines: &[String]) -> String {
    let lines = if lines.is_empty() {
        default_hba()
    } else {
        lines.to_vec()
    };
    let mut text = "# Written by pgcordon-devkit\n".to_string();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// A postgresql.conf string literal: single quotes, embedded quotes doubled.
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote("it's"), "'it''s'");
    }

    #[test]
    fn long_socket_dirs_are_refused() {
        let settings = Settings {
            port: 5432,
            tls: false,
            client_ca: false,
        };
        let long = format!("/tmp/{}", "x".repeat(100));
        assert!(matches!(
            devkit_conf(&settings, Path::new(&long)),
            Err(DevkitError::Invalid(_))
        ));
        let conf = devkit_conf(&settings, Path::new("/tmp/s")).unwrap();
        assert!(conf.contains("port = 5432\n"));
        assert!(!conf.contains("ssl = on"));
    }

    #[test]
    fn empty_hba_means_the_default_set() {
        let text = hba_file(&[]);
        assert!(text.contains("hostnossl all all 0.0.0.0/0 reject\n"));
        let custom = hba_file(&["local all all peer".to_string()]);
        assert!(custom.contains("local all all peer\n"));
        assert!(!custom.contains("scram"));
    }
}
