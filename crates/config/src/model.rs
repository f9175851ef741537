//! The checked configuration that the rest of pgcordon reads.
//!
//! Owns the public, validated types. Every struct is `#[non_exhaustive]`, so code outside this
//! crate can read the fields but can only obtain a value through [`crate::load`] or
//! [`crate::parse`], that is after validation. Paths are absolute (resolved against the config
//! file's directory) but not checked for existence: the components that read them do that.
//! Converting these into each crate's own settings is the proxy crate's job, not this one's.

use regex::Regex;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::address::HostPort;
use crate::secret::PasswordSource;

/// A validated pgcordon configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The file it was read from (absolute when it could be made so).
    pub source: PathBuf,
    /// Addresses to accept clients on; at least one.
    pub listen: Vec<Listener>,
    /// Whether wildcard listen addresses (0.0.0.0, [::]) were allowed.
    pub allow_wildcard: bool,
    /// TLS towards clients, which must present certificates.
    pub tls: ServerTls,
    /// How a client certificate becomes an identity, and where the identity is set.
    pub identity: Identity,
    /// The PostgreSQL server and how to authenticate to it.
    pub upstream: Upstream,
    /// Upstream connection pooling.
    pub pool: Pool,
    /// Resource limits towards clients.
    pub limits: Limits,
    /// Logging.
    pub log: Log,
    /// The admin HTTP listener (metrics and probes); `None` when the section is absent.
    pub admin: Option<Admin>,
    /// The audit trail; `None` when the section is absent (no audit).
    pub audit: Option<Audit>,
    /// Read routing to replicas; mode off when the section is absent.
    pub routing: Routing,
    /// Shutdown behaviour.
    pub shutdown: Shutdown,
    /// The statement guard's policy.
    pub guard: Guard,
}

/// One listening address (`listen[]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Listener {
    /// IP address and port; port 0 lets the system choose.
    pub address: SocketAddr,
}

/// Client-facing TLS (`tls`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerTls {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// Bundle of CA certificates allowed to sign client certificates, PEM.
    pub client_ca: PathBuf,
    /// Certificate revocation lists for client certificates; may be empty.
    pub crl: Vec<PathBuf>,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
}

/// Identity extraction and injection (`identity`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Identity {
    /// Which part of the client certificate holds the identity.
    pub from: IdentitySource,
    /// The pattern the identity must match; see [`IdentityPattern::extract`].
    pub pattern: IdentityPattern,
    /// Custom settings (GUCs) that receive the identity, lower-cased, unique, at least one.
    pub settings: Vec<String>,
    /// The tamper-proof mode (`identity.proof`), when configured.
    pub proof: Option<Proof>,
}

/// The tamper-proof identity mode (`identity.proof`): an HMAC of the identity and a nonce,
/// keyed by the secret in `key_file`, set beside the identity for the database to verify.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Proof {
    /// File holding the shared secret (read at start and on reload).
    pub key_file: PathBuf,
    /// Setting that receives the proof, lower-cased.
    pub setting: String,
    /// Setting that receives the nonce, lower-cased.
    pub nonce_setting: String,
}

/// Where in the client certificate the identity is read (`identity.from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// The subject's common name.
    SubjectCn,
    /// A URI subject alternative name (SPIFFE IDs live here).
    SanUri,
    /// A DNS subject alternative name.
    SanDns,
    /// Another attribute of the subject name.
    SubjectAttribute(SubjectAttribute),
}

impl IdentitySource {
    /// The YAML spelling of this source.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentitySource::SubjectCn => "subject_cn",
            IdentitySource::SanUri => "san_uri",
            IdentitySource::SanDns => "san_dns",
            IdentitySource::SubjectAttribute(_) => "subject_attribute",
        }
    }
}

/// A subject attribute (`identity.attribute`), by short name or OID.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubjectAttribute {
    /// The short name (`OU`, `emailAddress`) in its usual spelling, or the OID as written.
    pub name: String,
    /// The attribute's object identifier in dotted form, such as `2.5.4.11`.
    pub oid: String,
}

/// The compiled `identity.pattern`: a regular expression with at most one capture group.
#[derive(Clone, Debug)]
pub struct IdentityPattern {
    regex: Regex,
}

impl IdentityPattern {
    pub(crate) fn new(regex: Regex) -> Self {
        IdentityPattern { regex }
    }

    /// The compiled expression.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// The pattern as written in the file.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// The identity in `value`: the capture group if the pattern has one, else the whole
    /// match; `None` when the pattern does not match (or the group did not take part).
    pub fn extract<'t>(&self, value: &'t str) -> Option<&'t str> {
        let captures = self.regex.captures(value)?;
        let group = if self.regex.captures_len() > 1 { 1 } else { 0 };
        captures.get(group).map(|m| m.as_str())
    }
}

/// The PostgreSQL server (`upstream`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Upstream {
    /// The database pgcordon connects to.
    pub database: String,
    /// The database name clients ask for (defaults to `database`).
    pub client_database: String,
    /// The role pgcordon logs in as.
    pub user: String,
    /// Where the role's password comes from.
    pub password: PasswordSource,
    /// The primary server.
    pub primary: HostPort,
    /// Streaming replicas of the primary, in file order; may be empty. They share the
    /// database, role, password and TLS settings of the primary.
    pub replicas: Vec<Replica>,
    /// Time allowed to open a connection, including TLS and authentication.
    pub connect_timeout: Duration,
    /// Whether SCRAM-SHA-256-PLUS (channel binding) is used.
    pub channel_binding: ChannelBinding,
    /// Whether the server may ask for the password in clear text (over TLS).
    pub allow_cleartext_password: bool,
    /// Whether the server may ask for an MD5 password hash.
    pub allow_md5_password: bool,
    /// TLS towards the server; always verify-full.
    pub tls: UpstreamTls,
}

/// One streaming replica (`upstream.replicas[]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Replica {
    /// Label for logs and metrics: 1 to 32 of `a-z`, `0-9`, `_`, `-`, unique, never
    /// `primary`; `replica-N` (counting from 1) when not given.
    pub name: String,
    /// Where the replica listens; never the primary's address.
    pub address: HostPort,
    /// Name checked against the replica's certificate, resolved at load time: the key if
    /// given, else `upstream.tls.server_name` if that was given, else the address's host.
    pub server_name: String,
}

/// TLS towards PostgreSQL (`upstream.tls`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UpstreamTls {
    /// CA bundle that must have signed the server's certificate, PEM.
    pub ca: PathBuf,
    /// Name checked against the server certificate: a DNS name or an IP address.
    pub server_name: String,
    /// Certificate pgcordon presents to PostgreSQL, if any.
    pub client_cert: Option<ClientCertificate>,
}

/// A certificate and its key (`upstream.tls.client_cert` / `client_key`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientCertificate {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Channel binding policy (`upstream.channel_binding`), as in libpq's option of that name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelBinding {
    /// Use SCRAM-SHA-256-PLUS when the server offers it.
    #[default]
    Prefer,
    /// Refuse to authenticate without channel binding.
    Require,
    /// Never use channel binding.
    Disable,
}

/// Pooling (`pool`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Pool {
    /// When a server connection returns to the pool.
    pub mode: PoolMode,
    /// Most server connections open at once, 1 to 10000.
    pub size: u32,
    /// Idle server connections kept open, at most `size`.
    pub min_idle: u32,
    /// Longest a client waits for a server connection.
    pub acquire_timeout: Duration,
    /// Age after which a server connection is closed once idle.
    pub server_lifetime: Duration,
    /// Idle time after which a server connection above `min_idle` is closed.
    pub idle_timeout: Duration,
}

/// Pooling mode (`pool.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// A server connection serves one client transaction at a time.
    #[default]
    Transaction,
    /// A server connection belongs to one client session until it ends.
    Session,
}

/// Limits towards clients (`limits`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Time from TCP accept to the end of authentication.
    pub startup_timeout: Duration,
    /// Largest client message accepted after startup, in bytes.
    pub max_frame_bytes: u32,
    /// Most client connections open at once.
    pub max_client_connections: u32,
    /// Most concurrent sessions of one identity; `None` is no limit (`0` in the file).
    pub max_connections_per_identity: Option<u32>,
    /// Idle time between transactions after which a client is disconnected; `None` is never.
    pub client_idle_timeout: Option<Duration>,
    /// Idle time inside a transaction after which a client is disconnected and its transaction
    /// rolled back; `None` is never.
    pub idle_in_transaction_timeout: Option<Duration>,
}

/// Logging (`log`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Log {
    /// Output format.
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive string; checked by the binary, which owns tracing.
    pub level: String,
}

/// Log output format (`log.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The admin HTTP listener (`admin`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Admin {
    /// IP address and port of `/metrics`, `/healthz` and `/readyz`; port 0 lets the system
    /// choose.
    pub listen: SocketAddr,
}

/// The audit trail (`audit`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Audit {
    /// Where the JSON lines go.
    pub output: AuditOutput,
    /// Whether each transaction gets a line.
    pub transactions: bool,
    /// Whether each statement text gets a line.
    pub statements: bool,
    /// Records that may wait for the writer before new ones are dropped (and counted).
    pub queue: u32,
}

/// Where audit lines go (`audit.path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output (`path: stdout`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// Shutdown (`shutdown`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Shutdown {
    /// After a stop signal, how long open client sessions may finish before they are closed.
    pub drain_timeout: Duration,
}

/// The statement guard (`guard`). Statements that touch the identity settings are always
/// refused; this section only widens what else passes.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Guard {
    /// Privileged statement kinds let through, each once, in file order; empty (the default)
    /// refuses them all.
    pub allow: Vec<GuardAllow>,
}

/// A privileged statement kind that `guard.allow` can let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardAllow {
    /// `SET ROLE`, `RESET ROLE`, `SET role = ...`, `set_config('role', ...)`.
    SetRole,
    /// `SET SESSION AUTHORIZATION`, `RESET SESSION AUTHORIZATION`, `session_authorization`.
    SetSessionAuthorization,
    /// `ALTER ROLE`, `ALTER USER`, `ALTER GROUP` in every form.
    AlterRole,
    /// `ALTER SYSTEM`.
    AlterSystem,
}

impl GuardAllow {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [GuardAllow; 4] = [
        GuardAllow::SetRole,
        GuardAllow::SetSessionAuthorization,
        GuardAllow::AlterRole,
        GuardAllow::AlterSystem,
    ];
}

/// Read routing (`routing`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Routing {
    /// Which statements may go to a replica.
    pub mode: RoutingMode,
    /// Time between two health checks of the same server.
    pub check_interval: Duration,
    /// Longest one health check may take before it counts as failed.
    pub check_timeout: Duration,
    /// A replica more than this many WAL bytes behind the primary leaves rotation.
    pub max_lag_bytes: u64,
    /// A replica more than this far behind in time leaves rotation.
    pub max_lag: Duration,
    /// Whose writes a later read must see.
    pub read_your_writes: ReadYourWrites,
    /// How long such a read may wait for a replica to catch up before it goes to the primary;
    /// zero sends it to the primary at once.
    pub read_your_writes_wait: Duration,
    /// Functions beyond the built-in read-only ones that a replica may run: `name` or
    /// `schema.name`, as written, each once (compared without regard to case).
    pub allow_functions: Vec<String>,
}

/// Routing mode (`routing.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    /// Everything goes to the primary.
    #[default]
    Off,
    /// Transactions the client declares read-only (`BEGIN READ ONLY`, `SET TRANSACTION READ
    /// ONLY`) go to a replica.
    ReadOnlyTransactions,
    /// Read-only transactions, and also statements outside an explicit transaction that
    /// pgcordon can prove only read, go to a replica.
    Auto,
}

/// Read-your-writes scope (`routing.read_your_writes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWrites {
    /// No guarantee: a read may go to a replica that has not replayed an earlier write.
    Off,
    /// A read sees the earlier writes of the same client connection.
    #[default]
    Connection,
    /// A read sees the earlier writes of every connection with the same identity.
    Identity,
}

macro_rules! yaml_names {
    ($($ty:ty { $($variant:ident => $name:literal),+ })+) => {$(
        impl $ty {
            /// The YAML spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

yaml_names! {
    ChannelBinding { Prefer => "prefer", Require => "require", Disable => "disable" }
    PoolMode { Transaction => "transaction", Session => "session" }
    LogFormat { Text => "text", Json => "json" }
    RoutingMode {
        Off => "off",
        ReadOnlyTransactions => "read_only_transactions",
        Auto => "auto"
    }
    ReadYourWrites { Off => "off", Connection => "connection", Identity => "identity" }
    GuardAllow {
        SetRole => "set_role",
        SetSessionAuthorization => "set_session_authorization",
        AlterRole => "alter_role",
        AlterSystem => "alter_system"
    }
}
