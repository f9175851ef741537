//! Streaming replicas of a kit cluster.
//!
//! Owns making a replica with `pg_basebackup -R -X stream -C -S <slot>` over TLS, as a
//! replication role created for that replica alone (so replicas never share a password or a
//! slot), and starting it on its own port and socket directory. It does not drop the slot or
//! the role when the replica goes away: both die with the primary's throw-away cluster.

use std::path::Path;

use super::conf::Settings;
use super::runner::run;
use super::{free_port, Cluster, HOST, SUPERUSER};
use crate::{random, DevkitError};

impl Cluster {
    /// Makes a streaming replica of `primary` in `dir` (same layout as a primary) and starts it
    /// on a free port. The base backup and the replication connection use TLS
    /// (`sslmode=require`) and SCRAM as a fresh role with the REPLICATION attribute.
    ///
    /// The primary must have TLS and a `pg_hba.conf` that allows `hostssl replication` from
    /// 127.0.0.1 with a password (the default set does).
    ///
    /// # Errors
    /// [`DevkitError::Invalid`] if the primary has no TLS; [`DevkitError::Command`] if creating
    /// the role, the base backup or the start fails (with stderr and the server log tail).
    pub fn start_replica(primary: &Cluster, dir: &Path) -> Result<Cluster, DevkitError> {
        if !primary.settings.tls {
            return Err(DevkitError::Invalid(
                "a replica connects with sslmode=require; start the primary with server_tls".into(),
            ));
        }

        // Hex only, so the values are safe inside SQL and conninfo without quoting.
        let suffix = random::hex(6, "naming a replication role")?;
        let role = format!("devkit_replica_{suffix}");
        let password = random::hex(16, "making a replication password")?;
        primary.psql(
            SUPERUSER,
            &format!("CREATE ROLE {role} WITH LOGIN REPLICATION PASSWORD '{password}';"),
        )?;

        let settings = Settings {
            port: free_port()?,
            ..primary.settings.clone()
        };
        let mut replica = Cluster::prepare(primary.runner.clone(), dir, settings, false)?;

        // The conninfo is written into the replica's postgresql.auto.conf as primary_conninfo,
        // so the password has to be in it; it is random and only valid on this local cluster.
        let conninfo = format!(
            "host={HOST} port={} user={role} password={password} sslmode=require \
             application_name={role}",
            primary.port()
        );
        let mut backup = replica.runner.server_command("pg_basebackup");
        backup.arg("-D").arg(&replica.data_dir);
        backup.args([
            "-R",
            "-X",
            "stream",
            "-C",
            "-S",
            &role,
            "-c",
            "fast",
            "--no-sync",
        ]);
        backup.arg("-d").arg(&conninfo);
        let display = format!(
            "pg_basebackup -R -X stream -C -S {role} (from port {})",
            primary.port()
        );
        run(backup, &display)?;

        // The copy carries the primary's devkit.conf: give the replica its own port and socket.
        replica.write_devkit_conf()?;
        replica.start()?;
        tracing::info!(
            port = replica.port(),
            primary_port = primary.port(),
            slot = %role,
            "replica started"
        );
        Ok(replica)
    }
}
