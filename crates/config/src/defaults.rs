//! Default values and bounds of the optional keys, in one place.
//!
//! Owns the numbers that docs/configuration.md and `config/pgcordon.yaml` repeat; tests check
//! that a minimal file yields exactly these. It does not apply them (that is `validate`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// `tls.handshake_timeout`: a client that cannot finish TLS in 5 s is broken or hostile.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `identity.settings`: the setting row-level-security policies read by convention.
pub const IDENTITY_SETTING: &str = "app.current_user_id";

/// `upstream.connect_timeout`: covers TCP, TLS and SCRAM (PBKDF2 is the slow part).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `pool.size` default.
pub const POOL_SIZE: u32 = 20;

/// Largest `pool.size`: far above what one PostgreSQL server serves well (its own
/// `max_connections` default is 100); a larger value is almost surely a typo.
pub const POOL_SIZE_MAX: u32 = 10_000;

/// `pool.min_idle` default: open server connections only when clients need them.
pub const MIN_IDLE: u32 = 0;

/// `pool.acquire_timeout` default.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `pool.server_lifetime` default: recycle connections hourly so server-side memory growth
/// and DNS or failover changes are picked up.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// `pool.idle_timeout` default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// `limits.startup_timeout`: from the StartupMessage to the first ReadyForQuery.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// `limits.max_frame_bytes` default: large enough for big COPY rows and bulk inserts, small
/// enough that a few hundred clients cannot exhaust memory with oversized messages.
pub const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// Smallest `limits.max_frame_bytes`: ordinary queries and Bind messages of ORMs routinely
/// exceed a few kilobytes; below 64 KiB clients would fail in confusing ways.
pub const MIN_FRAME_BYTES: u32 = 64 * 1024;

/// Largest `limits.max_frame_bytes`: PostgreSQL itself cannot allocate more than 1 GB for one
/// value, so a larger frame could never be served.
pub const MAX_FRAME_BYTES_LIMIT: u32 = 1024 * 1024 * 1024;

/// `limits.max_client_connections` default.
pub const MAX_CLIENT_CONNECTIONS: u32 = 10_000;

/// `limits.idle_in_transaction_timeout`: a client idle inside a transaction holds a pooled
/// backend that others may be waiting for; a minute is far beyond any interactive pause of an
/// API request and still bounds the damage of a stuck client.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// `identity.proof.setting` and `identity.proof.nonce_setting` defaults.
pub const PROOF_SETTING: &str = "app.identity_proof";
pub const PROOF_NONCE_SETTING: &str = "app.identity_nonce";

/// `log.level` default.
pub const LOG_LEVEL: &str = "info";

/// Longest database or role name PostgreSQL keeps (NAMEDATALEN - 1); longer names are
/// silently truncated by the server, which would make `client_database` comparisons lie.
pub const MAX_NAME_BYTES: usize = 63;

/// `admin.listen` default: loopback, so metrics and probes are not exposed beyond the host
/// unless the operator chooses an address. 9187 is not a PostgreSQL port and is rarely taken.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9187));

/// The `audit.path` value that means standard output rather than a file.
pub const AUDIT_STDOUT: &str = "stdout";

/// `audit.queue` default: records waiting for the writer; at a few hundred bytes each, about
/// 5 MB, enough to ride out a disk stall of a second or two at thousands of transactions a
/// second.
pub const AUDIT_QUEUE: u32 = 10_000;

/// Largest `audit.queue`: statement records can hold 16 KiB of text each, so a million of them
/// could already take gigabytes; a larger queue would trade a bounded loss for unbounded memory.
pub const AUDIT_QUEUE_MAX: u32 = 1_000_000;

/// Longest `upstream.replicas[].name`: it becomes a metric label and a log field, so it is
/// kept short and to a charset every metrics backend accepts unquoted.
pub const REPLICA_NAME_MAX: usize = 32;

/// The label of the primary in logs and metrics, which no replica may take.
pub const PRIMARY_NAME: &str = "primary";

/// Start of a replica's default name; `replica-1` is the first entry of the list.
pub const REPLICA_NAME_PREFIX: &str = "replica-";

/// `routing.check_interval` default: a replica that falls behind or goes away leaves
/// rotation within about a second, at the cost of one tiny query per server per second.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `routing.check_timeout` default: a check that has not answered in 2 s counts as failed;
/// that covers a new connection (TLS and SCRAM) to a server that is busy but alive.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `routing.max_lag_bytes` default: 16 MiB of WAL is one default-sized WAL segment, a few
/// seconds of replay on a busy server; further behind and reads would look clearly stale.
pub const MAX_LAG_BYTES: u64 = 16 * 1024 * 1024;

/// `routing.max_lag` default: reads up to 10 s stale are acceptable for most read paths
/// that are routed to replicas at all.
pub const MAX_LAG: Duration = Duration::from_secs(10);

/// `routing.read_your_writes_wait` default: zero, so a read that a replica cannot yet serve
/// goes to the primary at once instead of adding latency.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::ZERO;

/// `shutdown.drain_timeout` default: long enough for ordinary transactions to finish, and
/// the same as Kubernetes' default termination grace period.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
