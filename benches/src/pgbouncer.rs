//! PgBouncer from the Debian package, configured for the work pgcordon does: clients must present
//! a certificate from the development CA (`client_tls_sslmode = verify-full`), the server is
//! reached over TLS with its certificate and host name verified (`server_tls_sslmode =
//! verify-full`) and authenticated with SCRAM-SHA-256, transaction pooling, 20 server
//! connections.
//!
//! PgBouncer refuses to run as root, so when the benchmark runs as root it starts PgBouncer as the
//! `postgres` user, with its files copied into a directory that user owns.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// What the configuration is made from.
#[derive(Debug, Clone)]
pub struct BouncerSpec {
    /// Where PgBouncer listens (127.0.0.1).
    pub port: u16,
    /// The PostgreSQL primary's port on 127.0.0.1.
    pub server_port: u16,
    pub database: String,
    /// The role PgBouncer logs in as upstream, and the name its clients use.
    pub user: String,
    pub password: String,
    pub pool_size: usize,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The pgbouncer.ini text for `spec`, with its files under `dir`. The password is written into
/// the `[databases]` line, which is how PgBouncer is given a fixed upstream login; the
/// documentation shows it with the password elided.
pub fn ini(spec: &BouncerSpec, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[databases]\n\
         {db} = host=127.0.0.1 port={sport} dbname={db} user={user} password={password}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         ; clients: a certificate from the CA is required; no password (as with pgcordon)\n\
         auth_type = trust\n\
         auth_file = {d}/userlist.txt\n\
         client_tls_sslmode = verify-full\n\
         client_tls_ca_file = {d}/ca.crt\n\
         client_tls_cert_file = {d}/server.crt\n\
         client_tls_key_file = {d}/server.key\n\
         ; server: TLS with certificate and host name verified, SCRAM-SHA-256\n\
         server_tls_sslmode = verify-full\n\
         server_tls_ca_file = {d}/ca.crt\n\
         pool_mode = transaction\n\
         default_pool_size = {pool}\n\
         min_pool_size = {pool}\n\
         max_db_connections = {pool}\n\
         max_client_conn = 10000\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         logfile = {d}/pgbouncer.log\n\
         pidfile = {d}/pgbouncer.pid\n",
        db = spec.database,
        sport = spec.server_port,
        user = spec.user,
        password = spec.password,
        port = spec.port,
        pool = spec.pool_size,
    )
}

/// A running PgBouncer; dropping it stops the process.
pub struct Bouncer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Bouncer {
    /// Writes the configuration and its files into `dir` and starts PgBouncer, waiting until it
    /// accepts connections.
    ///
    /// # Errors
    /// `pgbouncer` is not installed, a file cannot be written, or it does not start listening.
    pub fn start(spec: &BouncerSpec, dir: &Path) -> anyhow::Result<Bouncer> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("pgbouncer.ini"), ini(spec, dir))?;
        fs::write(
            dir.join("userlist.txt"),
            format!("\"{}\" \"\"\n", spec.user),
        )?;
        fs::copy(&spec.ca, dir.join("ca.crt"))?;
        fs::copy(&spec.server_cert, dir.join("server.crt"))?;
        fs::copy(&spec.server_key, dir.join("server.key"))?;
        fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))?;

        let mut cmd = Command::new("pgbouncer");
        cmd.arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            let (uid, gid) = postgres_ids()?;
            for entry in fs::read_dir(dir)? {
                std::os::unix::fs::chown(entry?.path(), Some(uid), Some(gid))?;
            }
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .context("starting pgbouncer (apt-get install pgbouncer)")?;
        let mut bouncer = Bouncer {
            child,
            port: spec.port,
            dir: dir.to_path_buf(),
        };
        bouncer.wait_listening()?;
        Ok(bouncer)
    }

    /// The PgBouncer process (it runs in the foreground, so this is PgBouncer itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait()? {
                let log = fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
                bail!("pgbouncer exited ({status}):\n{log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("pgbouncer did not listen on port {} within 10 s", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the `postgres` user, from `id`.
fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("no postgres user: `id {flag} postgres` failed");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_requires_client_certificates_and_verifies_the_server() {
        let spec = BouncerSpec {
            port: 7000,
            server_port: 5999,
            database: "app".into(),
            user: "pgcordon_app".into(),
            password: "secret".into(),
            pool_size: 20,
            ca: "/x/ca.crt".into(),
            server_cert: "/x/s.crt".into(),
            server_key: "/x/s.key".into(),
        };
        let text = ini(&spec, Path::new("/b"));
        for line in [
            "app = host=127.0.0.1 port=5999 dbname=app user=pgcordon_app password=secret",
            "client_tls_sslmode = verify-full",
            "client_tls_ca_file = /b/ca.crt",
            "server_tls_sslmode = verify-full",
            "pool_mode = transaction",
            "default_pool_size = 20",
            "listen_port = 7000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
