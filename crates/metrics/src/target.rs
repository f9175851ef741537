//! Per-target handles: one [`TargetMetrics`] per configured backend target.
//!
//! Owns the metrics labelled `target` (transactions, queries, acquire wait, added latency,
//! upstream failures, replica health) and the rule for target names. A target name comes from
//! the configuration (`primary`, `replica-1`), never from a host name or an address, and the
//! rule below refuses anything that looks like one, so the `target` label stays bounded and
//! leaks no topology. It does not own the pool gauges read at scrape time (`scrape`).

use prometheus::{Gauge, GaugeVec, IntGaugeVec, Opts};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use crate::error::MetricsError;
use crate::labels::{TargetRole, UpstreamAuthFailure, UpstreamConnectFailure};
use crate::registration::Registrar;

/// Longest target name: long enough for `replica-eu-west-1b`, short enough to read in a legend.
pub const MAX_TARGET_NAME: usize = 32;

/// Most targets: a primary and its replicas; far more would mean names are being generated.
pub const MAX_TARGETS: usize = 64;

/// Acquire waits: a warm pool answers in microseconds, opening a backend takes a TLS and SCRAM
/// exchange (about 10 ms), and `pool.acquire_timeout` defaults to 5 s.
const ACQUIRE_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Time pgcordon adds per transaction: tens of microseconds when all is well (see
/// docs/benchmarks.md), milliseconds when the reactor is starved.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// The labelled families behind every [`TargetMetrics`].
pub(crate) struct TargetFamilies {
    transactions: IntCounterVec,
    queries: IntCounterVec,
    acquire_wait: HistogramVec,
    overhead: HistogramVec,
    connect_failures: IntCounterVec,
    auth_failures: IntCounterVec,
    replica_healthy: IntGaugeVec,
    routed: IntCounterVec,
    replica_lag_bytes: IntGaugeVec,
    replica_lag_seconds: GaugeVec,
}

impl TargetFamilies {
    pub(crate) fn register(r: &mut Registrar) -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            HistogramVec::new(opts, &["target"])
        };
        Ok(TargetFamilies {
            transactions: r.add(counter(
                "pgcordon_transactions_total",
                "Client transactions served, by backend target.",
                &["target"],
            ))?,
            queries: r.add(counter(
                "pgcordon_queries_total",
                "Client statements (simple Query and extended Execute messages) forwarded, by backend target.",
                &["target"],
            ))?,
            acquire_wait: r.add(histogram(
                "pgcordon_pool_acquire_wait_seconds",
                "Time a client waited for a backend from the pool.",
                ACQUIRE_BUCKETS,
            ))?,
            overhead: r.add(histogram(
                "pgcordon_transaction_overhead_seconds",
                "Time pgcordon itself added to a transaction, server work and pool waits excluded.",
                OVERHEAD_BUCKETS,
            ))?,
            connect_failures: r.add(counter(
                "pgcordon_upstream_connect_failures_total",
                "Upstream connections that failed before authentication, by reason.",
                &["target", "reason"],
            ))?,
            auth_failures: r.add(counter(
                "pgcordon_upstream_auth_failures_total",
                "Upstream authentications that failed, by reason.",
                &["target", "reason"],
            ))?,
            replica_healthy: r.add(IntGaugeVec::new(
                Opts::new(
                    "pgcordon_replica_healthy",
                    "1 when the replica is in rotation, 0 when it is out (down or lagging).",
                ),
                &["target"],
            ))?,
            routed: r.add(counter(
                "pgcordon_routed_transactions_total",
                "Transactions by the target chosen for them and why: read (a replica), write (the \
                 primary), fallback (a read the primary served because no replica could).",
                &["target", "kind"],
            ))?,
            replica_lag_bytes: r.add(IntGaugeVec::new(
                Opts::new(
                    "pgcordon_replica_lag_bytes",
                    "WAL bytes the replica's replay is behind the primary, at the last check.",
                ),
                &["target"],
            ))?,
            replica_lag_seconds: r.add(GaugeVec::new(
                Opts::new(
                    "pgcordon_replica_lag_seconds",
                    "Seconds the replica's replay is behind the primary, at the last check.",
                ),
                &["target"],
            ))?,
        })
    }

    /// Resolves every handle of one target.
    pub(crate) fn target(&self, name: &str, role: TargetRole) -> TargetMetrics {
        let one = [name];
        let connect_failures = UpstreamConnectFailure::ALL
            .iter()
            .map(|r| self.connect_failures.with_label_values(&[name, r.as_str()]))
            .collect();
        let auth_failures = UpstreamAuthFailure::ALL
            .iter()
            .map(|r| self.auth_failures.with_label_values(&[name, r.as_str()]))
            .collect();
        // A replica starts out of rotation: it joins once its first health check passes.
        let replica_healthy =
            (role == TargetRole::Replica).then(|| self.replica_healthy.with_label_values(&one));
        let replica = role == TargetRole::Replica;
        TargetMetrics {
            routed_reads: self.routed.with_label_values(&[name, "read"]),
            routed_writes: self.routed.with_label_values(&[name, "write"]),
            routing_fallbacks: self.routed.with_label_values(&[name, "fallback"]),
            replica_lag_bytes: replica.then(|| self.replica_lag_bytes.with_label_values(&one)),
            replica_lag_seconds: replica.then(|| self.replica_lag_seconds.with_label_values(&one)),
            name: name.to_owned(),
            role,
            transactions: self.transactions.with_label_values(&one),
            queries: self.queries.with_label_values(&one),
            acquire_wait_seconds: self.acquire_wait.with_label_values(&one),
            transaction_overhead_seconds: self.overhead.with_label_values(&one),
            connect_failures,
            auth_failures,
            replica_healthy,
        }
    }
}

/// The handles of one backend target, resolved once; share it with `Arc`.
#[derive(Debug)]
pub struct TargetMetrics {
    name: String,
    role: TargetRole,
    /// `pgcordon_transactions_total{target}`: increment once per client transaction.
    pub transactions: IntCounter,
    /// `pgcordon_queries_total{target}`: increment per Query or Parse message forwarded.
    pub queries: IntCounter,
    /// `pgcordon_pool_acquire_wait_seconds{target}`: observe the wait of every checkout.
    pub acquire_wait_seconds: Histogram,
    /// `pgcordon_transaction_overhead_seconds{target}`: observe once per transaction.
    pub transaction_overhead_seconds: Histogram,
    /// `pgcordon_routed_transactions_total{target, kind="read"}`: a read routed to this target.
    pub routed_reads: IntCounter,
    /// `...{kind="write"}`: a transaction sent to this (primary) target as a write.
    pub routed_writes: IntCounter,
    /// `...{kind="fallback"}`: a read this (primary) target served because no replica could.
    pub routing_fallbacks: IntCounter,
    connect_failures: Vec<IntCounter>,
    auth_failures: Vec<IntCounter>,
    replica_healthy: Option<IntGauge>,
    replica_lag_bytes: Option<IntGauge>,
    replica_lag_seconds: Option<Gauge>,
}

impl TargetMetrics {
    /// The target's name, as shown in the `target` label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the primary or a replica.
    pub fn role(&self) -> TargetRole {
        self.role
    }

    /// Counts an upstream connection that failed before authentication.
    pub fn connect_failed(&self, reason: UpstreamConnectFailure) {
        self.connect_failures[reason.index()].inc();
    }

    /// Counts an upstream authentication that failed.
    pub fn auth_failed(&self, reason: UpstreamAuthFailure) {
        self.auth_failures[reason.index()].inc();
    }

    /// Sets `pgcordon_replica_healthy`; ignored for the primary, which has no such series.
    pub fn set_healthy(&self, healthy: bool) {
        if let Some(gauge) = &self.replica_healthy {
            gauge.set(i64::from(healthy));
        }
    }

    /// Sets the replica lag gauges; ignored for the primary.
    pub fn set_lag(&self, bytes: u64, seconds: f64) {
        if let Some(gauge) = &self.replica_lag_bytes {
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(gauge) = &self.replica_lag_seconds {
            gauge.set(seconds);
        }
    }
}

/// Checks that `name` is a bounded configuration name and not an address or identity:
/// 1 to 32 characters from `a-z`, `0-9`, `-` and `_`, starting with a letter. Dots and
/// colons are refused, so neither host names nor IP addresses can become label values.
///
/// # Errors
/// [`MetricsError::TargetName`] naming the rule that failed.
pub fn check_target_name(name: &str) -> Result<(), MetricsError> {
    let refuse = |why: &'static str| {
        Err(MetricsError::TargetName {
            name: name.chars().take(MAX_TARGET_NAME * 2).collect(),
            why,
        })
    };
    if name.is_empty() || name.len() > MAX_TARGET_NAME {
        return refuse("it must be 1 to 32 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("it must start with a lowercase letter");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if !name.chars().all(allowed) {
        return refuse("only a-z, 0-9, '-' and '_' are allowed (no host names or addresses)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_target_name;

    #[test]
    fn target_names_cannot_be_addresses_or_identities() {
        for good in ["primary", "replica-1", "replica_eu_west_1b", "r"] {
            assert!(check_target_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "db.internal",
            "10.0.0.5",
            "[::1]:5432",
            "Primary",
            "1replica",
            "spiffe://example.org/tenant/x",
            "a-very-long-target-name-that-goes-on",
        ] {
            let error = check_target_name(bad).expect_err(bad);
            assert!(error.to_string().contains("target name"), "{error}");
        }
    }
}
