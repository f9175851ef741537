//! Where a transaction runs: the primary or a healthy replica.
//!
//! This crate owns the upstream targets of one database (a primary and its streaming replicas,
//! each with its pool), their background health checks (`pg_is_in_recovery()`,
//! `pg_last_wal_replay_lsn()` on replicas, `pg_current_wal_lsn()` on the primary), the rules that
//! take a replica out of rotation (down, not in recovery, or past the byte or time lag limit)
//! and bring it back, balancing reads by least outstanding work, and the bookkeeping of
//! read-your-writes: each client's last write position ([`WriteLsns`]) and picking or waiting
//! for a replica that has replayed it. A primary found in recovery is logged as an error and
//! writes are refused ([`RoutingError::PrimaryInRecovery`]), never sent elsewhere.
//!
//! It does not decide whether a statement only reads (the SQL classifier does), drive client
//! sessions, or read configuration; the proxy converts its configuration into
//! [`TargetSpec`]s and [`RoutingSettings`]. WAL positions follow PostgreSQL's `pg_lsn` type;
//! the checks use the simple query flow of the protocol chapter of the PostgreSQL documentation.

mod check;
mod error;
mod health;
mod lsn;
mod monitor;
mod query;
mod select;
mod settings;
mod targets;
mod write_lsns;

pub use error::{CheckError, RoutingError};
pub use health::{HealthSnapshot, Unhealthy};
pub use lsn::{Lsn, LsnParseError};
pub use query::current_wal_lsn;
pub use settings::{Role, RoutingSettings, TargetSpec};
pub use targets::{ReplicaLease, Target, Targets};
pub use write_lsns::WriteLsns;
