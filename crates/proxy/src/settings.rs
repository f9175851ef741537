//! The proxy's own settings, built from the validated configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgcordon_pool::PoolSettings;
use pgcordon_tls::IdentityRule;
use pgcordon_upstream::UpstreamSettings;

/// When a backend session is given back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// At the end of each transaction (ReadyForQuery with status idle).
    Transaction,
    /// When the client disconnects.
    Session,
}

/// Everything a running proxy needs, already validated and loaded.
pub struct ProxySettings {
    pub listen: Vec<SocketAddr>,
    pub tls: Arc<rustls::ServerConfig>,
    pub identity: IdentityRule,
    /// Settings that receive the identity (e.g. app.current_user_id).
    pub identity_settings: Vec<String>,
    /// Settings clients may not change: the identity settings and, in proof mode, the proof and
    /// nonce settings.
    pub protected_settings: Vec<String>,
    /// The privileged statement kinds (`SET ROLE`, `ALTER ROLE`, ...) clients may run.
    pub guard_policy: pgcordon_sql::GuardPolicy,
    /// Tamper-proof identity: a proof the database can verify is set beside the identity.
    pub proof: Option<ProofSettings>,
    /// Per-client limits.
    pub limits: ClientLimits,
    /// The database name clients must ask for.
    pub client_database: String,
    pub pool_mode: PoolMode,
    pub handshake_timeout: Duration,
    pub startup_timeout: Duration,
    pub max_frame_bytes: usize,
    pub max_client_connections: usize,
    pub upstream: UpstreamSettings,
    pub pool: PoolSettings,
    /// Streaming replicas reads may go to.
    pub replicas: Vec<ReplicaSettings>,
    /// How reads are recognised and whose writes they must see.
    pub routing: crate::route::RouteSettings,
    /// Health checks and lag limits of the targets.
    pub routing_checks: pgcordon_routing::RoutingSettings,
    /// How long in-flight transactions may run after a shutdown signal.
    pub drain_timeout: Duration,
    /// The server TLS files, read again on reload.
    pub tls_files: pgcordon_tls::ServerTlsSettings,
    /// The upstream TLS files, read again on reload.
    pub upstream_tls_files: pgcordon_tls::UpstreamTlsSettings,
}

/// The tamper-proof identity mode: besides the identity, pgcordon sets a fresh nonce and an
/// HMAC-SHA256 over `identity ":" nonce` keyed by a secret only it and the database's verifying
/// function know (docs/sql/tamper-proof.sql). An identity changed by any path the statement guard
/// cannot see (a function, dynamic SQL) then no longer verifies, and the policies see no identity.
#[derive(Clone)]
pub struct ProofSettings {
    pub key: ring::hmac::Key,
    /// The setting that receives the proof (hex).
    pub setting: String,
    /// The setting that receives the nonce (hex).
    pub nonce_setting: String,
}

impl std::fmt::Debug for ProofSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofSettings")
            .field("setting", &self.setting)
            .field("nonce_setting", &self.nonce_setting)
            .finish_non_exhaustive()
    }
}

impl ProofSettings {
    /// The nonce and proof for `identity`: a fresh random nonce each time.
    pub fn prove(&self, identity: &str) -> (String, String) {
        let mut nonce = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
        let nonce = hex(&nonce);
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(identity.as_bytes());
        ctx.update(b":");
        ctx.update(nonce.as_bytes());
        (nonce, hex(ctx.sign().as_ref()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Limits on client sessions; `None` is no limit.
#[derive(Debug, Clone, Default)]
pub struct ClientLimits {
    /// Most concurrent sessions of one identity.
    pub max_connections_per_identity: Option<usize>,
    /// A client idle between transactions this long is disconnected (57P05).
    pub idle_timeout: Option<Duration>,
    /// A client idle inside a transaction this long is disconnected and its transaction rolled
    /// back (25P03): it holds a pooled backend others may be waiting for.
    pub idle_in_transaction_timeout: Option<Duration>,
}

/// One replica target.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    pub name: String,
    pub upstream: UpstreamSettings,
}

/// Why settings could not be turned into a running proxy.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid pool settings: {0}")]
    Pool(String),
    #[error("invalid guard settings: {0}")]
    Guard(String),
}

/// The guard policy of `guard.allow`: the configuration and the guard name the same kinds.
fn guard_policy(guard: &pgcordon_config::Guard) -> pgcordon_sql::GuardPolicy {
    use pgcordon_config::GuardAllow as A;
    use pgcordon_sql::PrivilegedStatement as P;
    guard
        .allow
        .iter()
        .fold(pgcordon_sql::GuardPolicy::refuse_all(), |policy, kind| {
            policy.allow(match kind {
                A::SetRole => P::SetRole,
                A::SetSessionAuthorization => P::SetSessionAuthorization,
                A::AlterRole => P::AlterRole,
                A::AlterSystem => P::AlterSystem,
            })
        })
}

/// Reads the proof key: the file's text without surrounding white space.
fn load_proof(p: &pgcordon_config::Proof) -> Result<ProofSettings, LoadError> {
    let text = std::fs::read_to_string(&p.key_file).map_err(|source| LoadError::ProofKey {
        path: p.key_file.clone(),
        detail: source.to_string(),
    })?;
    let secret = text.trim();
    // Shorter secrets make the HMAC guessable offline from one observed proof.
    if secret.len() < 32 {
        return Err(LoadError::ProofKey {
            path: p.key_file.clone(),
            detail: format!(
                "the secret has {} bytes; at least 32 are required",
                secret.len()
            ),
        });
    }
    Ok(ProofSettings {
        key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        setting: p.setting.clone(),
        nonce_setting: p.nonce_setting.clone(),
    })
}

/// Why a validated configuration could not be loaded into settings (its files are read here).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("identity.proof.key_file {path}: {detail}")]
    ProofKey {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("tls: {0}")]
    Tls(#[from] pgcordon_tls::TlsError),
    #[error("identity: {0}")]
    Identity(pgcordon_tls::TlsError),
    #[error("upstream.tls: {0}")]
    UpstreamTls(pgcordon_tls::TlsError),
}

impl ProxySettings {
    /// Loads the TLS material and identity rule a validated configuration names.
    ///
    /// # Errors
    /// A certificate, key or CRL file that is missing or invalid, named in the error.
    pub fn from_config(cfg: &pgcordon_config::Config) -> Result<ProxySettings, LoadError> {
        use pgcordon_config as c;

        let tls_files = pgcordon_tls::ServerTlsSettings {
            cert: cfg.tls.cert.clone(),
            key: cfg.tls.key.clone(),
            client_ca: cfg.tls.client_ca.clone(),
            crls: cfg.tls.crl.clone(),
        };
        let tls = pgcordon_tls::server_config(&tls_files)?;

        let source = match &cfg.identity.from {
            c::IdentitySource::SubjectCn => pgcordon_tls::IdentitySource::SubjectCn,
            c::IdentitySource::SanUri => pgcordon_tls::IdentitySource::SanUri,
            c::IdentitySource::SanDns => pgcordon_tls::IdentitySource::SanDns,
            c::IdentitySource::SubjectAttribute(a) => {
                pgcordon_tls::IdentitySource::SubjectAttribute(a.oid.clone())
            }
        };
        let identity = IdentityRule::new(source, cfg.identity.pattern.as_str())
            .map_err(LoadError::Identity)?;

        let up = &cfg.upstream;
        let upstream_tls_files = pgcordon_tls::UpstreamTlsSettings {
            ca: up.tls.ca.clone(),
            server_name: up.tls.server_name.clone(),
            client_cert: up
                .tls
                .client_cert
                .as_ref()
                .map(|c| (c.cert.clone(), c.key.clone())),
        };
        let (client_tls, server_name) =
            pgcordon_tls::upstream_config(&upstream_tls_files).map_err(LoadError::UpstreamTls)?;
        let password = match &up.password {
            c::PasswordSource::File(path) => pgcordon_upstream::PasswordSource::File(path.clone()),
            c::PasswordSource::Env { variable, .. } => {
                pgcordon_upstream::PasswordSource::Env(variable.clone())
            }
        };
        let channel_binding = match up.channel_binding {
            c::ChannelBinding::Prefer => pgcordon_upstream::ChannelBindingPolicy::Prefer,
            c::ChannelBinding::Require => pgcordon_upstream::ChannelBindingPolicy::Require,
            c::ChannelBinding::Disable => pgcordon_upstream::ChannelBindingPolicy::Disable,
        };
        let upstream = UpstreamSettings {
            host: up.primary.host.to_string(),
            port: up.primary.port,
            database: up.database.clone(),
            user: up.user.clone(),
            password,
            tls: client_tls,
            server_name,
            connect_timeout: up.connect_timeout,
            channel_binding,
            allow_cleartext_password: up.allow_cleartext_password,
            allow_md5_password: up.allow_md5_password,
            startup_params: vec![("application_name".into(), "pgcordon".into())],
        };

        // Replicas share the primary's database, role, password, TLS roots and timeouts; each has
        // its own address and TLS name.
        let mut replicas = Vec::with_capacity(up.replicas.len());
        for replica in &up.replicas {
            let server_name = rustls_pki_types::ServerName::try_from(replica.server_name.clone())
                .map_err(|source| {
                LoadError::UpstreamTls(pgcordon_tls::TlsError::InvalidServerName {
                    name: replica.server_name.clone(),
                    source,
                })
            })?;
            let mut settings = upstream.clone();
            settings.host = replica.address.host.to_string();
            settings.port = replica.address.port;
            settings.server_name = server_name;
            replicas.push(ReplicaSettings {
                name: replica.name.clone(),
                upstream: settings,
            });
        }
        let r = &cfg.routing;

        let proof = cfg.identity.proof.as_ref().map(load_proof).transpose()?;
        let mut protected_settings = cfg.identity.settings.clone();
        if let Some(p) = &proof {
            protected_settings.push(p.setting.clone());
            protected_settings.push(p.nonce_setting.clone());
        }

        Ok(ProxySettings {
            listen: cfg.listen.iter().map(|l| l.address).collect(),
            tls,
            identity,
            identity_settings: cfg.identity.settings.clone(),
            protected_settings,
            guard_policy: guard_policy(&cfg.guard),
            client_database: up.client_database.clone(),
            pool_mode: match cfg.pool.mode {
                c::PoolMode::Transaction => PoolMode::Transaction,
                c::PoolMode::Session => PoolMode::Session,
            },
            handshake_timeout: cfg.tls.handshake_timeout,
            startup_timeout: cfg.limits.startup_timeout,
            max_frame_bytes: cfg.limits.max_frame_bytes as usize,
            max_client_connections: cfg.limits.max_client_connections as usize,
            upstream,
            pool: PoolSettings {
                size: cfg.pool.size as usize,
                min_idle: cfg.pool.min_idle as usize,
                acquire_timeout: cfg.pool.acquire_timeout,
                server_lifetime: cfg.pool.server_lifetime,
                idle_timeout: cfg.pool.idle_timeout,
            },
            proof,
            limits: ClientLimits {
                max_connections_per_identity: cfg
                    .limits
                    .max_connections_per_identity
                    .map(|n| n as usize),
                idle_timeout: cfg.limits.client_idle_timeout,
                idle_in_transaction_timeout: cfg.limits.idle_in_transaction_timeout,
            },
            replicas,
            routing: crate::route::RouteSettings {
                mode: match r.mode {
                    c::RoutingMode::Off => crate::route::RoutingMode::Off,
                    c::RoutingMode::ReadOnlyTransactions => {
                        crate::route::RoutingMode::ReadOnlyTransactions
                    }
                    c::RoutingMode::Auto => crate::route::RoutingMode::Auto,
                },
                read_your_writes: match r.read_your_writes {
                    c::ReadYourWrites::Off => crate::route::WriteScope::Off,
                    c::ReadYourWrites::Connection => crate::route::WriteScope::Connection,
                    c::ReadYourWrites::Identity => crate::route::WriteScope::Identity,
                },
                allow_functions: r.allow_functions.clone(),
            },
            routing_checks: pgcordon_routing::RoutingSettings {
                check_interval: r.check_interval,
                check_timeout: r.check_timeout,
                max_lag_bytes: r.max_lag_bytes,
                max_lag: r.max_lag,
                ryw_wait: r.read_your_writes_wait,
            },
            drain_timeout: cfg.shutdown.drain_timeout,
            tls_files,
            upstream_tls_files,
        })
    }
}
