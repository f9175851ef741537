//! Choosing the backend target of a transaction: a replica for provable reads (per the routing
//! mode), the primary for everything else, and read-your-writes: a client's reads after its
//! own committed write go only to replicas that have replayed that write's WAL position.

use std::sync::Arc;
use std::time::Duration;

use pgcordon_routing::{Lsn, ReplicaLease, Targets, WriteLsns};
use pgcordon_sql::{Classifier, Route};

/// How reads are recognised (`routing.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    /// Everything goes to the primary.
    Off,
    /// Only transactions that declare themselves READ ONLY go to replicas.
    ReadOnlyTransactions,
    /// READ ONLY transactions and autocommit statements that provably only read.
    Auto,
}

/// Whose writes a read must see (`routing.read_your_writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    Off,
    /// The same client connection's committed writes.
    Connection,
    /// The committed writes of every connection with the same identity.
    Identity,
}

/// The proxy's routing settings.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub mode: RoutingMode,
    pub read_your_writes: WriteScope,
    /// Functions reads may call and still go to a replica.
    pub allow_functions: Vec<String>,
}

/// Why a transaction went where it went (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Read,
    Write,
    /// A read the primary serves because no replica could (none healthy or caught up).
    Fallback,
}

/// What the first message of a transaction says about it.
pub enum Intent<'a> {
    Sql(&'a [u8]),
    Unknown,
}

/// The chosen target: index 0 is the primary, i > 0 the replica `i - 1`.
pub struct Routed {
    pub index: usize,
    pub lease: Option<ReplicaLease>,
    pub kind: RouteKind,
}

/// Longest a read waits for the client's previous write's position to be learned (one round
/// trip to the primary, normally well under a millisecond).
const LSN_LEARN_BOUND: Duration = Duration::from_secs(1);

/// Routing state shared by all sessions.
pub struct Router {
    pub targets: Targets,
    pub settings: RouteSettings,
    classifier: Classifier,
    /// Write positions by identity, for `WriteScope::Identity`.
    pub by_identity: WriteLsns<Arc<str>>,
}

impl Router {
    pub fn new(targets: Targets, settings: RouteSettings) -> Router {
        // Entries live at least as long as a replica may lag, so a write is never forgotten
        // while a replica could still be missing it.
        let ttl = targets.settings().max_lag.max(Duration::from_secs(60));
        Router {
            targets,
            settings,
            classifier: Classifier::new(),
            by_identity: WriteLsns::new(100_000, ttl),
        }
    }

    /// The SQL classifier (routing and session effects share its cache).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Whether reads can ever go to a replica.
    pub fn routes_reads(&self) -> bool {
        self.settings.mode != RoutingMode::Off && !self.targets.replicas().is_empty()
    }

    fn is_read(&self, intent: &Intent<'_>) -> bool {
        let Intent::Sql(text) = intent else {
            return false;
        };
        let sql = String::from_utf8_lossy(text);
        if self.classifier.route(&sql, &self.settings.allow_functions) != Route::Replica {
            return false;
        }
        match self.settings.mode {
            RoutingMode::Off => false,
            RoutingMode::Auto => true,
            RoutingMode::ReadOnlyTransactions => declares_read_only(&sql),
        }
    }

    /// Picks the target for a transaction whose first message is `intent`. `min_lsn` is the
    /// write position the client must see; `force_primary` retries a read on the primary.
    pub async fn choose(
        &self,
        intent: &Intent<'_>,
        min_lsn: Option<Lsn>,
        force_primary: bool,
    ) -> Routed {
        let primary = |kind| Routed {
            index: 0,
            lease: None,
            kind,
        };
        if !self.routes_reads() || !self.is_read(intent) {
            return primary(RouteKind::Write);
        }
        if force_primary {
            return primary(RouteKind::Fallback);
        }
        let mut lease = self.targets.pick_replica(min_lsn);
        if lease.is_none() {
            if let Some(lsn) = min_lsn {
                if !self.targets.settings().ryw_wait.is_zero() {
                    lease = self.targets.wait_for_replica(lsn).await;
                }
            }
        }
        let Some(lease) = lease else {
            return primary(RouteKind::Fallback);
        };
        let index = self
            .targets
            .replicas()
            .iter()
            .position(|r| r.name() == lease.name())
            .map_or(0, |i| i + 1);
        Routed {
            index,
            lease: Some(lease),
            kind: RouteKind::Read,
        }
    }

    /// The write position a read of `identity` must see, besides the connection's own.
    pub fn identity_lsn(&self, identity: &Arc<str>) -> Option<Lsn> {
        match self.settings.read_your_writes {
            WriteScope::Identity => self.by_identity.get(&**identity),
            _ => None,
        }
    }

    pub fn learn_bound(&self) -> Duration {
        LSN_LEARN_BOUND
    }
}

/// Whether the text starts a transaction declared READ ONLY (BEGIN/START TRANSACTION ... READ
/// ONLY, or SET TRANSACTION READ ONLY). The classifier has already proved it only reads.
fn declares_read_only(sql: &str) -> bool {
    let lowered = sql.trim_start().to_ascii_lowercase();
    (lowered.starts_with("begin") || lowered.starts_with("start") || lowered.starts_with("set"))
        && lowered.contains("read only")
}

#[cfg(test)]
mod tests {
    use super::declares_read_only;

    #[test]
    fn read_only_declarations_are_recognised() {
        assert!(declares_read_only("BEGIN READ ONLY"));
        assert!(declares_read_only(
            "  start transaction isolation level serializable, read only"
        ));
        assert!(!declares_read_only("SELECT 1"));
        assert!(!declares_read_only("BEGIN"));
    }
}
