//! The configuration file exactly as written: the serde shape of the YAML schema.
//!
//! Owns the structs that mirror the file, with `deny_unknown_fields` so that a misspelt key is
//! an error instead of a silently ignored setting. Optional keys are `Option`s here; defaults
//! and every rule beyond "is this the right type" are applied in `validate`, which turns these
//! into the checked types of `model`.

use serde::Deserialize;

use crate::model::{ChannelBinding, LogFormat, PoolMode, ReadYourWrites, RoutingMode};
use crate::units::{AnyDuration, ByteSize, Int, PositiveDuration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Vec<RawListener>,
    pub allow_wildcard: Option<bool>,
    pub tls: RawServerTls,
    pub identity: RawIdentity,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    pub admin: Option<RawAdmin>,
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub guard: RawGuard,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
    pub crl: Option<Vec<String>>,
    pub handshake_timeout: Option<PositiveDuration>,
}

/// `identity.from`; the attribute itself is a separate key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawIdentityFrom {
    SubjectCn,
    SanUri,
    SanDns,
    SubjectAttribute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub from: RawIdentityFrom,
    pub attribute: Option<String>,
    pub pattern: String,
    pub settings: Option<Vec<String>>,
    pub proof: Option<RawProof>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProof {
    pub key_file: String,
    pub setting: Option<String>,
    pub nonce_setting: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub database: String,
    pub client_database: Option<String>,
    pub user: String,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub primary: String,
    pub replicas: Option<Vec<RawReplica>>,
    pub connect_timeout: Option<PositiveDuration>,
    pub channel_binding: Option<ChannelBinding>,
    pub allow_cleartext_password: Option<bool>,
    pub allow_md5_password: Option<bool>,
    pub tls: RawUpstreamTls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplica {
    pub address: String,
    pub name: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub ca: String,
    pub server_name: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub mode: Option<PoolMode>,
    pub size: Option<Int>,
    pub min_idle: Option<Int>,
    pub acquire_timeout: Option<PositiveDuration>,
    pub server_lifetime: Option<PositiveDuration>,
    pub idle_timeout: Option<PositiveDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub startup_timeout: Option<PositiveDuration>,
    pub max_frame_bytes: Option<ByteSize>,
    pub max_client_connections: Option<Int>,
    pub max_connections_per_identity: Option<Int>,
    pub client_idle_timeout: Option<AnyDuration>,
    pub idle_in_transaction_timeout: Option<AnyDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub path: Option<String>,
    pub transactions: Option<bool>,
    pub statements: Option<bool>,
    pub queue: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub mode: Option<RoutingMode>,
    pub check_interval: Option<PositiveDuration>,
    pub check_timeout: Option<PositiveDuration>,
    pub max_lag_bytes: Option<ByteSize>,
    pub max_lag: Option<PositiveDuration>,
    pub read_your_writes: Option<ReadYourWrites>,
    pub read_your_writes_wait: Option<AnyDuration>,
    pub allow_functions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    pub allow: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShutdown {
    pub drain_timeout: Option<PositiveDuration>,
}
