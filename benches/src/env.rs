//! The environment `compare` measures: the devkit stack (PostgreSQL 15 with TLS and SCRAM, the
//! development CA, tenant certificates), pgbench's tables and a larger RLS table, pgcordon's
//! release binary as its own process, and PgBouncer. Dropping it stops all of them.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use pgcordon_devkit::stack::{Stack, APP_DATABASE, APP_ROLE, TENANT_A, TENANT_B};

use crate::pgbench::Conn;
use crate::pgbouncer::{Bouncer, BouncerSpec};

/// Server connections of both poolers.
pub const POOL_SIZE: usize = 20;
/// Rows of `documents` (half per tenant) the RLS workload reads.
pub const DOCUMENTS: usize = 20_000;
/// pgbench's scale factor: 500,000 rows in pgbench_accounts, which stay in shared buffers.
const PGBENCH_SCALE: u32 = 5;
/// Room for 1000 direct clients, both pools, pgcordon's side connections and psql.
const MAX_CONNECTIONS: u32 = 1100;

/// Where a pgbench run connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// PostgreSQL itself over TLS (verify-full) with SCRAM: the baseline.
    Direct,
    Pgcordon,
    Pgbouncer,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Direct, Target::Pgcordon, Target::Pgbouncer];

    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgcordon => "pgcordon",
            Target::Pgbouncer => "pgbouncer",
        }
    }
}

/// The running pieces.
pub struct Env {
    // Field order is drop order: the clients of PostgreSQL stop before it does.
    pgcordon: Child,
    bouncer: Bouncer,
    pub stack: Stack,
    pub work: PathBuf,
    pub pgcordon_port: u16,
    pub pgcordon_config: PathBuf,
}

impl Env {
    /// Starts everything under `work` with pgcordon's binary at `pgcordon_bin`.
    ///
    /// # Errors
    /// Any step fails; the message says which.
    pub fn start(work: &Path, pgcordon_bin: &Path) -> anyhow::Result<Env> {
        // PostgreSQL and PgBouncer run as `postgres` and must reach their files.
        fs::set_permissions(work, fs::Permissions::from_mode(0o755))?;
        let mut stack = Stack::start(work).context("starting the devkit stack")?;
        stack.cluster.psql(
            "postgres",
            &format!("ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};"),
        )?;
        stack.cluster.restart().context("restarting PostgreSQL")?;
        load_data(&stack)?;

        let listen = Stack::free_listen_addr()?;
        let pool = format!(
            "  mode: transaction\n  size: {POOL_SIZE}\n  min_idle: {POOL_SIZE}\n  \
             acquire_timeout: 30s"
        );
        let config = stack.write_config(&listen, &pool, "log:\n  level: warn\n")?;
        let pgcordon_port = port_of(&listen)?;
        let log = fs::File::create(work.join("pgcordon.log"))?;
        let mut pgcordon = Command::new(pgcordon_bin)
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", pgcordon_bin.display()))?;
        if let Err(e) = wait_port(pgcordon_port, &mut pgcordon) {
            let _ = pgcordon.kill();
            let log = fs::read_to_string(work.join("pgcordon.log")).unwrap_or_default();
            bail!("{e}\n{log}");
        }

        let spec = BouncerSpec {
            port: pgcordon_devkit::free_port()?,
            server_port: stack.cluster.port(),
            database: APP_DATABASE.into(),
            user: APP_ROLE.into(),
            password: stack.password.clone(),
            pool_size: POOL_SIZE,
            ca: stack.files.ca.clone(),
            server_cert: stack.files.server_cert.clone(),
            server_key: stack.files.server_key.clone(),
        };
        let bouncer = Bouncer::start(&spec, &work.join("pgbouncer"))?;
        Ok(Env {
            pgcordon,
            bouncer,
            stack,
            work: work.to_path_buf(),
            pgcordon_port,
            pgcordon_config: config,
        })
    }

    pub fn pgcordon_pid(&self) -> u32 {
        self.pgcordon.id()
    }

    /// The process whose CPU time a run against `target` is charged to: the proxy's.
    pub fn proxy_pid(&self, target: Target) -> Option<u32> {
        match target {
            Target::Direct => None,
            Target::Pgcordon => Some(self.pgcordon.id()),
            Target::Pgbouncer => Some(self.bouncer.pid()),
        }
    }

    pub fn pgbouncer_ini(&self) -> PathBuf {
        self.bouncer.dir.join("pgbouncer.ini")
    }

    /// libpq settings for pgbench against `target`. Every connection verifies the server's
    /// certificate and host name; the poolers get tenant A's client certificate, PostgreSQL the
    /// app role's password.
    pub fn conn(&self, target: Target) -> Conn {
        let f = &self.stack.files;
        let port = match target {
            Target::Direct => self.stack.cluster.port(),
            Target::Pgcordon => self.pgcordon_port,
            Target::Pgbouncer => self.bouncer.port,
        };
        let mut env = vec![
            ("PGHOST", "localhost".to_string()),
            ("PGHOSTADDR", "127.0.0.1".into()),
            ("PGPORT", port.to_string()),
            ("PGUSER", APP_ROLE.into()),
            ("PGSSLMODE", "verify-full".into()),
            ("PGSSLROOTCERT", f.ca.display().to_string()),
            ("PGCONNECT_TIMEOUT", "60".into()),
        ];
        match target {
            Target::Direct => {
                env.push(("PGPASSWORD", self.stack.password.clone()));
                env.push(("PGSSLCERT", "/nonexistent".into()));
            }
            Target::Pgcordon | Target::Pgbouncer => {
                env.push(("PGSSLCERT", f.tenant_a.0.display().to_string()));
                env.push(("PGSSLKEY", f.tenant_a.1.display().to_string()));
            }
        }
        Conn {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// `/proc/<pid>/status` VmRSS of pgcordon, in KiB.
    pub fn pgcordon_rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pgcordon.id())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.pgcordon.kill();
        let _ = self.pgcordon.wait();
    }
}

/// VmRSS of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib = line.split_whitespace().nth(1).context("malformed VmRSS")?;
    Ok(kib.parse()?)
}

/// CPU time (user + system) of process `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; fields after it are fixed.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks (as /proc counts CPU time) in microseconds.
pub fn ticks_to_us(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = if per_sec > 0 { per_sec as f64 } else { 100.0 };
    ticks as f64 * 1e6 / per_sec
}

/// pgbench's tables (initialised as the superuser over the local socket) readable by the app
/// role, and `documents` filled with [`DOCUMENTS`] rows alternating between the two tenants.
fn load_data(stack: &Stack) -> anyhow::Result<()> {
    let c = &stack.cluster;
    let out = Command::new("pgbench")
        .args(["-i", "-q", "-s", &PGBENCH_SCALE.to_string()])
        .arg("-h")
        .arg(c.socket_dir())
        .args(["-p", &c.port().to_string(), "-U", "postgres", APP_DATABASE])
        .env_remove("PGPASSWORD")
        .output()
        .context("running pgbench -i")?;
    if !out.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    c.psql(
        APP_DATABASE,
        &format!(
            "GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO {APP_ROLE};\n\
             INSERT INTO documents (owner_id, title) \
             SELECT CASE WHEN g % 2 = 0 THEN '{TENANT_A}' ELSE '{TENANT_B}' END, 'document ' || g \
             FROM generate_series(1, {DOCUMENTS}) AS g;\n\
             VACUUM ANALYZE documents;\n\
             VACUUM ANALYZE pgbench_accounts;"
        ),
    )?;
    Ok(())
}

fn port_of(listen: &str) -> anyhow::Result<u16> {
    let (_, port) = listen.rsplit_once(':').context("listen address")?;
    Ok(port.parse()?)
}

fn wait_port(port: u16, child: &mut Child) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Some(status) = child.try_wait()? {
            bail!("pgcordon exited ({status})");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("pgcordon did not listen on port {port} within 30 s")
}
