//! Gauges whose value is read when Prometheus scrapes, not pushed by the data path.
//!
//! Owns the pool gauges (`pgcordon_pool_*`, read from a callback per target), the seconds
//! until each certificate expires (computed from the stored notAfter at scrape time, so the
//! value is always current without a timer), and the CRL next-update time. A value that
//! was never set (no upstream client certificate, no CRL) produces no series, so an alert on
//! "expires within 7 days" never fires for a certificate that does not exist. It does not
//! read certificates or pools itself: the proxy reports notAfter times and installs the pool
//! callbacks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts};

use crate::labels::CertificateKind;

/// A snapshot of one pool, returned by the callback given to
/// [`crate::Metrics::set_pool_source`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Backends open and idle in the pool.
    pub idle: u64,
    /// Backends checked out by clients.
    pub active: u64,
    /// The most backends the pool may open (`pool.size`).
    pub max: u64,
    /// Clients waiting for a backend.
    pub waiting: u64,
}

/// The callback that reads a pool; it runs on the scraping thread and must not block.
pub type PoolSource = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// Marks an unset timestamp; no certificate has a notAfter in the year -292 billion.
const UNSET: i64 = i64::MIN;

struct PoolEntry {
    target: String,
    idle: IntGauge,
    active: IntGauge,
    max: IntGauge,
    waiting: IntGauge,
    read: PoolSource,
}

/// The collector registered once; see the module documentation.
pub(crate) struct ScrapeCollector {
    pool_connections: IntGaugeVec,
    pool_max: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    expiry: GaugeVec,
    crl_next_update: Gauge,
    pools: Mutex<Vec<PoolEntry>>,
    not_after: [AtomicI64; CertificateKind::COUNT],
    crl: AtomicI64,
    clock: fn() -> SystemTime,
}

impl ScrapeCollector {
    pub(crate) fn new(clock: fn() -> SystemTime) -> prometheus::Result<Self> {
        Ok(ScrapeCollector {
            pool_connections: IntGaugeVec::new(
                Opts::new(
                    "pgcordon_pool_connections",
                    "Backends open in the pool, by target and state (idle or active).",
                ),
                &["target", "state"],
            )?,
            pool_max: IntGaugeVec::new(
                Opts::new(
                    "pgcordon_pool_max_connections",
                    "The most backends the pool may open (pool.size), by target.",
                ),
                &["target"],
            )?,
            pool_waiting: IntGaugeVec::new(
                Opts::new(
                    "pgcordon_pool_waiting_clients",
                    "Clients waiting for a backend, by target.",
                ),
                &["target"],
            )?,
            expiry: GaugeVec::new(
                Opts::new(
                    "pgcordon_certificate_seconds_until_expiry",
                    "Seconds until the certificate (or the earliest in a CA bundle) expires; \
                     negative once expired.",
                ),
                &["certificate"],
            )?,
            crl_next_update: Gauge::with_opts(Opts::new(
                "pgcordon_crl_next_update_timestamp_seconds",
                "Earliest nextUpdate of the configured client CRLs, in Unix seconds.",
            ))?,
            pools: Mutex::new(Vec::new()),
            not_after: std::array::from_fn(|_| AtomicI64::new(UNSET)),
            crl: AtomicI64::new(UNSET),
            clock,
        })
    }

    /// Installs (or replaces) the callback for `target`, resolving its four handles now.
    pub(crate) fn set_pool(&self, target: &str, read: PoolSource) {
        let entry = PoolEntry {
            target: target.to_owned(),
            idle: self.pool_connections.with_label_values(&[target, "idle"]),
            active: self.pool_connections.with_label_values(&[target, "active"]),
            max: self.pool_max.with_label_values(&[target]),
            waiting: self.pool_waiting.with_label_values(&[target]),
            read,
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|p| p.target != target);
        pools.push(entry);
    }

    pub(crate) fn set_not_after(&self, kind: CertificateKind, at: Option<SystemTime>) {
        self.not_after[kind.index()].store(at.map_or(UNSET, unix_seconds), Ordering::Relaxed);
    }

    pub(crate) fn set_crl_next_update(&self, at: Option<SystemTime>) {
        self.crl
            .store(at.map_or(UNSET, unix_seconds), Ordering::Relaxed);
    }

    fn refresh_pools(&self) {
        // Copy the handles out so that no lock is held while a callback runs.
        let entries: Vec<(PoolSource, [IntGauge; 4])> = {
            let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            pools
                .iter()
                .map(|p| {
                    let gauges = [
                        p.idle.clone(),
                        p.active.clone(),
                        p.max.clone(),
                        p.waiting.clone(),
                    ];
                    (p.read.clone(), gauges)
                })
                .collect()
        };
        for (read, [idle, active, max, waiting]) in entries {
            let stats = read();
            idle.set(saturating_i64(stats.idle));
            active.set(saturating_i64(stats.active));
            max.set(saturating_i64(stats.max));
            waiting.set(saturating_i64(stats.waiting));
        }
    }

    fn refresh_expiry(&self) -> bool {
        let now = unix_seconds((self.clock)());
        self.expiry.reset();
        for kind in CertificateKind::ALL {
            let at = self.not_after[kind.index()].load(Ordering::Relaxed);
            if at != UNSET {
                let left = at.saturating_sub(now);
                self.expiry
                    .with_label_values(&[kind.as_str()])
                    .set(left as f64);
            }
        }
        let crl = self.crl.load(Ordering::Relaxed);
        if crl != UNSET {
            self.crl_next_update.set(crl as f64);
        }
        crl != UNSET
    }
}

impl Collector for ScrapeCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = Vec::new();
        descs.extend(self.pool_connections.desc());
        descs.extend(self.pool_max.desc());
        descs.extend(self.pool_waiting.desc());
        descs.extend(self.expiry.desc());
        descs.extend(self.crl_next_update.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh_pools();
        let crl_set = self.refresh_expiry();
        let mut families = Vec::new();
        families.extend(self.pool_connections.collect());
        families.extend(self.pool_max.collect());
        families.extend(self.pool_waiting.collect());
        families.extend(self.expiry.collect());
        if crl_set {
            families.extend(self.crl_next_update.collect());
        }
        families
    }
}

/// Seconds since the Unix epoch, negative before it.
fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN + 1, |s| -s),
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn value_of(families: &[MetricFamily], name: &str, label: &str) -> Option<f64> {
        let family = families.iter().find(|f| f.name() == name)?;
        family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == label))
            .map(|m| m.get_gauge().get_value())
    }

    #[test]
    fn expiry_is_computed_from_the_clock_at_scrape_time() {
        let collector = ScrapeCollector::new(fixed_clock).unwrap();
        let in_a_week = fixed_clock() + Duration::from_secs(7 * 86_400);
        let expired = fixed_clock() - Duration::from_secs(60);
        collector.set_not_after(CertificateKind::Server, Some(in_a_week));
        collector.set_not_after(CertificateKind::UpstreamCa, Some(expired));

        let families = collector.collect();
        let name = "pgcordon_certificate_seconds_until_expiry";
        assert_eq!(value_of(&families, name, "server"), Some(604_800.0));
        assert_eq!(value_of(&families, name, "upstream_ca"), Some(-60.0));
        // Never reported: no series at all.
        assert_eq!(value_of(&families, name, "upstream_client"), None);
        assert!(!families
            .iter()
            .any(|f| f.name() == "pgcordon_crl_next_update_timestamp_seconds"));

        collector.set_not_after(CertificateKind::Server, None);
        collector.set_crl_next_update(Some(UNIX_EPOCH + Duration::from_secs(1_700_086_400)));
        let families = collector.collect();
        assert_eq!(value_of(&families, name, "server"), None);
        let crl = families
            .iter()
            .find(|f| f.name() == "pgcordon_crl_next_update_timestamp_seconds")
            .expect("CRL family once set");
        assert_eq!(crl.get_metric()[0].get_gauge().get_value(), 1_700_086_400.0);
    }

    #[test]
    fn unix_seconds_before_and_after_the_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
