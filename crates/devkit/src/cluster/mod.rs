//! Real PostgreSQL clusters for the demo and for tests: a primary and streaming replicas.
//!
//! Owns the life of a cluster made from the installed server binaries: `initdb`, the kit's
//! configuration (TLS files, `pg_hba.conf`, sockets, replication settings), start, stop,
//! restart, SQL through `psql` over the unix socket, and a guaranteed stop on drop. It does not
//! manage system clusters (`pg_ctlcluster`), never touches the default socket directory and does
//! not pick certificates: TLS material comes in as PEM through [`ClusterOptions`].
//!
//! Layout of a cluster directory `dir`: `dir/data` (the data directory), `dir/socket` (its unix
//! socket directory) and `dir/postgres.log` (the server log).

mod bindir;
mod conf;
mod replica;
mod runner;
mod shutdown;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use bindir::{find_pg_bindir, free_port, BINDIR_ENV};

use crate::DevkitError;
use conf::Settings;
use runner::{run, Runner};

/// The only address the kit's servers listen on.
const HOST: &str = "127.0.0.1";
/// The bootstrap superuser created by initdb, used for the admin path.
const SUPERUSER: &str = "postgres";
/// Seconds pg_ctl waits for a start or a stop; generous because CI machines are slow.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How often a start with an automatically chosen port is retried when another process took
/// the port between [`free_port`] and the server's bind.
const PORT_ATTEMPTS: usize = 3;
/// How much of the server log an error quotes.
const LOG_TAIL_BYTES: usize = 4096;

/// How to set up a new cluster.
#[derive(Clone, Default)]
pub struct ClusterOptions {
    /// Server certificate and key, PEM. TLS (`ssl = on`) is enabled when set.
    pub server_tls: Option<(String, String)>,
    /// CA certificates (`ssl_ca_file`) used to verify client certificates.
    pub client_ca_pem: Option<String>,
    /// `pg_hba.conf` lines. When empty: `local all all trust`, `local replication all trust`,
    /// `hostssl all all 127.0.0.1/32 scram-sha-256`, `hostssl replication all 127.0.0.1/32
    /// scram-sha-256`, `hostnossl all all 0.0.0.0/0 reject`.
    pub hba: Vec<String>,
    /// Lines appended to `postgresql.conf`, after (and so overriding) the kit's settings.
    pub extra_conf: Vec<String>,
    /// A fixed TCP port; a free one is picked when `None`.
    pub port: Option<u16>,
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field(
                "server_tls",
                &self.server_tls.as_ref().map(|_| "<cert and redacted key>"),
            )
            .field("client_ca_pem", &self.client_ca_pem.is_some())
            .field("hba", &self.hba)
            .field("extra_conf", &self.extra_conf)
            .field("port", &self.port)
            .finish()
    }
}

/// A running (or stopped) PostgreSQL cluster owned by this process. Dropping it stops the
/// server, also while unwinding from a panic.
#[derive(Debug)]
pub struct Cluster {
    runner: Runner,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    settings: Settings,
    port_is_fixed: bool,
}

impl Cluster {
    /// Creates `dir`, runs initdb (no fsync, `--auth-local=trust`, superuser `postgres`, UTF8,
    /// C locale) into `dir/data`, writes the TLS files, `pg_hba.conf` and the kit's settings,
    /// and starts the server with `pg_ctl -w`. As root, server programs run as `postgres`.
    ///
    /// # Errors
    /// [`DevkitError::BinDirNotFound`], [`DevkitError::ServerUser`], [`DevkitError::Io`], or
    /// [`DevkitError::Command`] with the program's stderr and the server log tail.
    pub fn init_and_start(dir: &Path, opts: &ClusterOptions) -> Result<Cluster, DevkitError> {
        let port = match opts.port {
            Some(port) => port,
            None => free_port()?,
        };
        let settings = Settings {
            port,
            tls: opts.server_tls.is_some(),
            client_ca: opts.client_ca_pem.is_some(),
        };
        let mut cluster = Cluster::prepare(Runner::detect()?, dir, settings, opts.port.is_some())?;

        let mut initdb = cluster.runner.server_command("initdb");
        initdb.arg("-D").arg(&cluster.data_dir).args([
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;

        cluster.write_config(opts)?;
        cluster.start()?;
        let data_dir = cluster.data_dir.display();
        tracing::info!(port = cluster.port(), data_dir = %data_dir, "cluster started");
        Ok(cluster)
    }

    /// Makes the cluster directory and its socket directory, owned by the server user.
    fn prepare(
        runner: Runner,
        dir: &Path,
        settings: Settings,
        port_is_fixed: bool,
    ) -> Result<Cluster, DevkitError> {
        let dir = std::path::absolute(dir).map_err(|e| DevkitError::io("resolving", dir, e))?;
        runner.create_server_dir(&dir, 0o755)?;
        let socket_dir = dir.join("socket");
        runner.create_server_dir(&socket_dir, 0o755)?;
        Ok(Cluster {
            runner,
            data_dir: dir.join("data"),
            socket_dir,
            log_file: dir.join("postgres.log"),
            settings,
            port_is_fixed,
        })
    }

    /// Writes TLS files, `pg_hba.conf`, `devkit.conf`, and appends to `postgresql.conf`.
    fn write_config(&self, opts: &ClusterOptions) -> Result<(), DevkitError> {
        if let Some((cert, key)) = &opts.server_tls {
            self.runner
                .write_server_file(&self.data_dir.join(conf::SERVER_CERT), cert, 0o644)?;
            // The server refuses a key file that others can read.
            self.runner
                .write_server_file(&self.data_dir.join(conf::SERVER_KEY), key, 0o600)?;
        }
        if let Some(ca) = &opts.client_ca_pem {
            self.runner
                .write_server_file(&self.data_dir.join(conf::CLIENT_CA), ca, 0o644)?;
        }
        let hba_path = self.data_dir.join("pg_hba.conf");
        self.runner
            .write_server_file(&hba_path, &conf::hba_file(&opts.hba), 0o600)?;
        self.write_devkit_conf()?;

        let conf_path = self.data_dir.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|e| DevkitError::io("opening", &conf_path, e))?;
        file.write_all(conf::postgresql_conf_tail(&opts.extra_conf).as_bytes())
            .map_err(|e| DevkitError::io("appending to", &conf_path, e))
    }

    fn write_devkit_conf(&self) -> Result<(), DevkitError> {
        let text = conf::devkit_conf(&self.settings, &self.socket_dir)?;
        self.runner
            .write_server_file(&self.data_dir.join(conf::DEVKIT_CONF), &text, 0o600)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.settings.port
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The data directory (`<dir>/data`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The unix socket directory (`<dir>/socket`), usable as `host=` in libpq.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log (`<dir>/postgres.log`).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Runs `sql` with `psql -X -v ON_ERROR_STOP=1 -At -q` as superuser `postgres` in database
    /// `db` over the unix socket, and returns its standard output (result rows, `|`-separated).
    ///
    /// # Errors
    /// [`DevkitError::Command`] carrying psql's stderr when a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, DevkitError> {
        let program = self.runner.tool("psql");
        let mut child = Command::new(&program)
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-q",
                "-U",
                SUPERUSER,
                "-d",
                db,
            ])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port().to_string(), "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DevkitError::Spawn {
                program: program.clone(),
                source,
            })?;

        // Feed stdin from another thread so a large result cannot fill stdout and deadlock us.
        let writer = child.stdin.take().map(|mut stdin| {
            let sql = sql.to_string();
            std::thread::spawn(move || stdin.write_all(sql.as_bytes()))
        });
        let output = child
            .wait_with_output()
            .map_err(|source| DevkitError::Spawn {
                program: program.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(DevkitError::Command {
                command: format!("psql -d {db}"),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        // After a failure psql stops reading and the write sees a broken pipe; that case was
        // reported above with psql's own message. Here psql succeeded without all of the SQL.
        if let Some(Ok(Err(source))) = writer.map(std::thread::JoinHandle::join) {
            return Err(DevkitError::io("feeding SQL to", program, source));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server with `pg_ctl -m fast` and waits. Stopping a stopped cluster is a no-op.
    ///
    /// # Errors
    /// [`DevkitError::Command`] if pg_ctl fails.
    pub fn stop(&mut self) -> Result<(), DevkitError> {
        if !self.pid_file().exists() {
            return Ok(());
        }
        run(self.pg_ctl_stop("fast"), "pg_ctl stop -m fast")?;
        tracing::info!(port = self.port(), "cluster stopped");
        Ok(())
    }

    /// Starts the server with `pg_ctl -w` (same directory, same port unless that port was
    /// chosen automatically and got taken by another process, in which case a new one is used).
    ///
    /// # Errors
    /// [`DevkitError::Command`] with pg_ctl's stderr and the tail of the server log.
    pub fn start(&mut self) -> Result<(), DevkitError> {
        let mut attempt = 1;
        loop {
            let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let mut cmd = self.runner.server_command("pg_ctl");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file);
            cmd.args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]);
            let Err(err) = run(cmd, "pg_ctl start") else {
                return Ok(());
            };

            let tail = log_tail(&self.log_file, log_offset);
            if !self.port_is_fixed && attempt < PORT_ATTEMPTS && tail.contains("could not bind") {
                tracing::warn!(
                    port = self.port(),
                    "port taken before the server bound it; retrying"
                );
                attempt += 1;
                self.settings.port = free_port()?;
                self.write_devkit_conf()?;
                continue;
            }
            return Err(with_log_tail(err, &tail));
        }
    }

    /// Stops (fast) and starts the server again.
    ///
    /// # Errors
    /// As [`Cluster::stop`] and [`Cluster::start`].
    pub fn restart(&mut self) -> Result<(), DevkitError> {
        self.stop()?;
        self.start()
    }

    fn pid_file(&self) -> PathBuf {
        self.data_dir.join("postmaster.pid")
    }

    fn pg_ctl_stop(&self, mode: &str) -> Command {
        let mut cmd = self.runner.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir);
        cmd.args(["-m", mode, "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"]);
        cmd
    }
}

/// The last [`LOG_TAIL_BYTES`] of what the server logged after `offset`.
fn log_tail(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = offset.max(len.saturating_sub(LOG_TAIL_BYTES as u64));
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// Adds the server log tail to a command error, where it usually holds the real cause.
fn with_log_tail(err: DevkitError, tail: &str) -> DevkitError {
    match err {
        DevkitError::Command {
            command,
            status,
            stderr,
        } if !tail.trim().is_empty() => {
            let stderr = format!("{stderr}\n--- server log ---\n{}", tail.trim());
            DevkitError::Command {
                command,
                status,
                stderr,
            }
        }
        other => other,
    }
}
