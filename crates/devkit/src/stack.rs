//! A complete local stack for pgcordon: a development CA, a PostgreSQL primary with TLS and
//! SCRAM, the application role, the example row-level-security schema, two tenant client
//! certificates, and a pgcordon configuration file pointing at all of it; optionally a
//! streaming replica of the primary, listed in that configuration for read routing.
//!
//! `pgcordon demo` runs exactly this, and the end-to-end tests start from it, so what a new user
//! sees is what the tests check.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::DevkitError;
use crate::pki::{CertAuthority, ClientSpec, IssuedCert};
use crate::{free_port, random, Cluster, ClusterOptions};

/// The role pgcordon authenticates as upstream; neither owner of the tables nor BYPASSRLS.
pub const APP_ROLE: &str = "pgcordon_app";
/// The database the example schema lives in.
pub const APP_DATABASE: &str = "app";
/// The SPIFFE trust domain of the tenant certificates.
pub const TRUST_DOMAIN: &str = "pgcordon.test";
/// The example schema (also under docs/sql/), applied to the app database.
pub const EXAMPLE_SCHEMA: &str = include_str!("../../../docs/sql/example-schema.sql");

/// Identity of the demo's tenant A certificate.
pub const TENANT_A: &str = "6f1c2a8e-0b7d-4c55-9e2f-3a1b5c7d9e01";
/// Identity of the demo's tenant B certificate.
pub const TENANT_B: &str = "c3d4e5f6-1a2b-4c3d-8e9f-0a1b2c3d4e5f";

/// The SPIFFE ID of a tenant.
pub fn spiffe_id(tenant: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/tenant/{tenant}")
}

/// File locations of the stack's TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (trusted by clients, pgcordon and PostgreSQL).
    pub ca: PathBuf,
    /// Server certificate used by both pgcordon and PostgreSQL (localhost, 127.0.0.1).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Tenant A's client certificate and key.
    pub tenant_a: (PathBuf, PathBuf),
    /// Tenant B's client certificate and key.
    pub tenant_b: (PathBuf, PathBuf),
    /// The upstream password file.
    pub password: PathBuf,
}

/// A streaming replica as pgcordon's configuration lists it (`upstream.replicas[]`): its label
/// and the loopback port of the kit cluster. The replica's certificate is the primary's copy,
/// issued for `localhost`, so the entry names that as its `server_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEntry {
    /// The label in logs and metrics (`upstream.replicas[].name`).
    pub name: String,
    /// The port the replica listens on, on 127.0.0.1.
    pub port: u16,
}

impl ReplicaEntry {
    /// The entry for a kit cluster (a replica made by [`Stack::start_replica`]).
    pub fn of(name: &str, cluster: &Cluster) -> ReplicaEntry {
        ReplicaEntry {
            name: name.to_owned(),
            port: cluster.port(),
        }
    }
}

/// A running stack. Dropping it stops PostgreSQL.
pub struct Stack {
    /// The stack's directory.
    pub dir: PathBuf,
    /// The development CA.
    pub ca: CertAuthority,
    /// The PostgreSQL primary.
    pub cluster: Cluster,
    /// Where the TLS material and password are.
    pub files: TlsFiles,
    /// The app role's password.
    pub password: String,
}

impl Stack {
    /// Creates the CA and certificates under `dir/tls`, starts PostgreSQL under `dir/pg`, and
    /// creates the app role, database, schema and a few rows per tenant.
    ///
    /// # Errors
    /// Any step's failure, with the command output or path it concerns.
    pub fn start(dir: &Path) -> Result<Stack, DevkitError> {
        let tls_dir = dir.join("tls");
        fs::create_dir_all(&tls_dir)
            .map_err(|source| io("creating directory", &tls_dir, source))?;

        let ca = CertAuthority::new("pgcordon development CA")?;
        let ca_path = tls_dir.join("ca.crt");
        fs::write(&ca_path, ca.cert_pem()).map_err(|source| io("writing", &ca_path, source))?;
        let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let (server_cert, server_key) = server.write(&tls_dir, "server")?;
        let tenant_a = tenant_cert(&ca, TENANT_A)?.write(&tls_dir, "tenant-a")?;
        let tenant_b = tenant_cert(&ca, TENANT_B)?.write(&tls_dir, "tenant-b")?;

        let password = random::hex(16, "upstream password")?;
        let password_path = tls_dir.join("db-password");
        fs::write(&password_path, format!("{password}\n"))
            .map_err(|source| io("writing", &password_path, source))?;

        let options = ClusterOptions {
            server_tls: Some((server.cert_pem.clone(), server.key_pem.clone())),
            ..ClusterOptions::default()
        };
        let cluster = Cluster::init_and_start(&dir.join("pg"), &options)?;
        cluster.psql(
            "postgres",
            &format!(
                "CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{password}' NOSUPERUSER NOBYPASSRLS;\n\
                 CREATE DATABASE {APP_DATABASE};"
            ),
        )?;
        cluster.psql(APP_DATABASE, EXAMPLE_SCHEMA)?;
        cluster.psql(
            APP_DATABASE,
            &format!(
                "INSERT INTO documents (owner_id, title) VALUES \
                 ('{TENANT_A}', 'tenant A: roadmap'), ('{TENANT_A}', 'tenant A: invoices'), \
                 ('{TENANT_B}', 'tenant B: payroll');"
            ),
        )?;

        let files = TlsFiles {
            ca: ca_path,
            server_cert,
            server_key,
            tenant_a,
            tenant_b,
            password: password_path,
        };
        Ok(Stack {
            dir: dir.to_path_buf(),
            ca,
            cluster,
            files,
            password,
        })
    }

    /// Makes a streaming replica of the primary in `dir/replica` and starts it on a free port
    /// ([`Cluster::start_replica`]: `pg_basebackup -R` over TLS). The copy carries the app role,
    /// database, schema, rows and TLS files, so pgcordon reaches it exactly as it reaches the
    /// primary. Dropping the returned cluster stops the replica.
    ///
    /// # Errors
    /// As [`Cluster::start_replica`].
    pub fn start_replica(&self) -> Result<Cluster, DevkitError> {
        Cluster::start_replica(&self.cluster, &self.dir.join("replica"))
    }

    /// A pgcordon configuration for this stack, listening on `listen` (e.g. "127.0.0.1:6432");
    /// `extra` is appended verbatim (more top-level sections).
    pub fn config_yaml(&self, listen: &str, pool_yaml: &str, extra: &str) -> String {
        self.config_yaml_with_replicas(listen, pool_yaml, &[], extra)
    }

    /// As [`Stack::config_yaml`], with `replicas` listed under `upstream.replicas` (nothing is
    /// added when it is empty). Routing stays off unless `extra` holds a `routing:` section.
    pub fn config_yaml_with_replicas(
        &self,
        listen: &str,
        pool_yaml: &str,
        replicas: &[ReplicaEntry],
        extra: &str,
    ) -> String {
        let f = &self.files;
        let mut replicas_yaml = String::new();
        if !replicas.is_empty() {
            replicas_yaml.push_str("  replicas:\n");
            for r in replicas {
                replicas_yaml.push_str(&format!(
                    "    - address: 127.0.0.1:{}\n      name: {}\n      server_name: localhost\n",
                    r.port, r.name
                ));
            }
        }
        format!(
            "listen:\n  - address: {listen}\n\
             tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n\
             identity:\n  from: san_uri\n  pattern: '^spiffe://pgcordon\\.test/tenant/([0-9a-f-]{{36}})$'\n  settings: [app.current_user_id]\n\
             upstream:\n  database: {APP_DATABASE}\n  user: {APP_ROLE}\n  password_file: {}\n  primary: 127.0.0.1:{}\n{replicas_yaml}  tls:\n    ca: {}\n    server_name: localhost\n\
             pool:\n{pool_yaml}\n{extra}",
            f.server_cert.display(),
            f.server_key.display(),
            f.ca.display(),
            f.password.display(),
            self.cluster.port(),
            f.ca.display(),
        )
    }

    /// Writes [`Stack::config_yaml`] to `dir/pgcordon.yaml` and returns its path.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_config(
        &self,
        listen: &str,
        pool_yaml: &str,
        extra: &str,
    ) -> Result<PathBuf, DevkitError> {
        self.write_config_with_replicas(listen, pool_yaml, &[], extra)
    }

    /// Writes [`Stack::config_yaml_with_replicas`] to `dir/pgcordon.yaml` and returns its path.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_config_with_replicas(
        &self,
        listen: &str,
        pool_yaml: &str,
        replicas: &[ReplicaEntry],
        extra: &str,
    ) -> Result<PathBuf, DevkitError> {
        let path = self.dir.join("pgcordon.yaml");
        let yaml = self.config_yaml_with_replicas(listen, pool_yaml, replicas, extra);
        fs::write(&path, yaml).map_err(|source| io("writing", &path, source))?;
        Ok(path)
    }

    /// A free loopback address for pgcordon to listen on.
    ///
    /// # Errors
    /// No free port.
    pub fn free_listen_addr() -> Result<String, DevkitError> {
        Ok(format!("127.0.0.1:{}", free_port()?))
    }
}

/// A client certificate whose SAN URI is the tenant's SPIFFE ID.
pub fn tenant_cert(ca: &CertAuthority, tenant: &str) -> Result<IssuedCert, DevkitError> {
    ca.issue_client(&ClientSpec {
        common_name: Some(format!("tenant {tenant}")),
        san_uris: vec![spiffe_id(tenant)],
        ..ClientSpec::default()
    })
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> DevkitError {
    DevkitError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
