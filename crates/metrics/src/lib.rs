//! pgcordon's metrics: every Prometheus handle, created once, and their text rendering.
//!
//! Owns the metric set (names `pgcordon_*`, base units, bounded labels), the closed label
//! sets (`labels`), and [`Metrics`], the struct the proxy keeps in an `Arc` and reads handles
//! from. Handles are resolved at start-up: counters and histograms for every value of every
//! closed label set exist before the first connection, so the data path increments an
//! atomic and never looks a label up or allocates. Per-target handles are resolved once per
//! configured target ([`Metrics::target`]). Gauges that describe state owned elsewhere
//! (pools, certificate expiry, CRL freshness) are read at scrape time (`scrape`).
//!
//! It does not serve HTTP (pgcordon-admin does), decide when something is counted (the proxy
//! does), or map other crates' error types to label values (the proxy does, so this crate
//! imports no other pgcordon crate). Names follow the Prometheus naming conventions
//! (<https://prometheus.io/docs/practices/naming/>); the output is the text exposition format
//! 0.0.4.

mod client;
mod error;
mod labels;
mod registration;
mod scrape;
mod target;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge};
use prometheus::{IntGaugeVec, Opts, TextEncoder};

pub use client::ClientConnection;
pub use error::MetricsError;
pub use labels::{
    Attempt, CertificateKind, CertificateRefusal, ClientState, IdentityRefusal, Limit,
    ReloadOutcome, StatementRefusal, TargetRole, TlsFailure, UpstreamAuthFailure,
    UpstreamConnectFailure,
};
pub use prometheus::TEXT_FORMAT;

/// The `reason` labels of `pgcordon_session_pins_total`: the classifier's fixed pin reasons
/// (pgcordon-sql `PinReason::as_str`). A reason outside this list is still counted.
pub const PIN_REASONS: [&str; 12] = [
    "listen",
    "session_set",
    "temp_table",
    "hold_cursor",
    "advisory_lock",
    "sql_prepare",
    "role",
    "load",
    "do_block",
    "set_config_dynamic",
    "ambiguous_escapes",
    "unparsable",
];
pub use scrape::{PoolSource, PoolStats};
pub use target::{check_target_name, TargetMetrics, MAX_TARGETS, MAX_TARGET_NAME};

use client::ClientStates;
use registration::Registrar;
use scrape::ScrapeCollector;
use target::TargetFamilies;

/// TLS handshakes: a local client finishes in about a millisecond, a distant or slow one in
/// tens; `tls.handshake_timeout` defaults to 5 s.
const HANDSHAKE_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric of one pgcordon process. Create it once with [`Metrics::new`] and share the
/// `Arc`; the public fields are handles to use directly (`metrics.client_received_bytes
/// .inc_by(n)`), the methods take a label enum and index a pre-created handle.
pub struct Metrics {
    registrar: Registrar,
    clients: Arc<ClientStates>,
    attempts: Vec<IntCounter>,
    refused_statements: Vec<IntCounter>,
    limits_reached: Vec<IntCounter>,
    reloads: Vec<IntCounter>,
    last_reload_successful: IntGauge,
    target_families: TargetFamilies,
    targets: Mutex<Vec<Arc<TargetMetrics>>>,
    scrape: Arc<ScrapeCollector>,
    /// `pgcordon_tls_handshake_duration_seconds`: observe each finished or failed handshake.
    pub tls_handshake_seconds: Histogram,
    /// `pgcordon_client_received_bytes_total`: bytes read from clients (after TLS).
    pub client_received_bytes: IntCounter,
    /// `pgcordon_client_sent_bytes_total`: bytes written to clients (before TLS).
    pub client_sent_bytes: IntCounter,
    /// `pgcordon_audit_records_dropped_total`: give a clone to the audit sink.
    pub audit_records_dropped: IntCounter,
    session_pins: prometheus::IntCounterVec,
}

impl Metrics {
    /// Creates the full metric set on a fresh registry (never the process-global one, so
    /// tests and embedders can hold several).
    ///
    /// # Panics
    /// Only if the fixed definitions in this crate are invalid, which its tests rule out.
    pub fn new() -> Arc<Metrics> {
        match Metrics::try_new() {
            Ok(metrics) => metrics,
            Err(error) => panic!("pgcordon's fixed metric definitions are invalid: {error}"),
        }
    }

    /// As [`Metrics::new`], returning the definition error instead of panicking.
    ///
    /// # Errors
    /// [`MetricsError::Define`] if the prometheus crate refuses a definition.
    pub fn try_new() -> Result<Arc<Metrics>, MetricsError> {
        Metrics::with_clock(SystemTime::now)
    }

    /// As [`Metrics::try_new`] with the clock used for "seconds until expiry".
    pub(crate) fn with_clock(clock: fn() -> SystemTime) -> Result<Arc<Metrics>, MetricsError> {
        let mut r = Registrar::new();

        let build_info = r.add(IntGaugeVec::new(
            Opts::new(
                "pgcordon_build_info",
                "Always 1; the version label names the build.",
            ),
            &["version"],
        ))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let states = r.add(IntGaugeVec::new(
            Opts::new(
                "pgcordon_client_connections",
                "Client connections open now, by state.",
            ),
            &["state"],
        ))?;
        let clients = ClientStates::new(
            ClientState::ALL
                .iter()
                .map(|s| states.with_label_values(&[s.as_str()]))
                .collect(),
        );

        let attempts_vec = r.add(IntCounterVec::new(
            Opts::new(
                "pgcordon_client_connection_attempts_total",
                "Client connection attempts, by outcome and reason.",
            ),
            &["outcome", "reason"],
        ))?;
        let attempts = Attempt::all()
            .into_iter()
            .map(|a| attempts_vec.with_label_values(&[a.outcome(), a.reason()]))
            .collect();

        let tls_handshake_seconds = r.add(Histogram::with_opts(
            HistogramOpts::new(
                "pgcordon_tls_handshake_duration_seconds",
                "Duration of client TLS handshakes, failed ones included.",
            )
            .buckets(HANDSHAKE_BUCKETS.to_vec()),
        ))?;

        let refused_vec = r.add(IntCounterVec::new(
            Opts::new(
                "pgcordon_statements_refused_total",
                "Statements and startup options refused for touching a protected setting.",
            ),
            &["reason"],
        ))?;
        let refused_statements = labelled(&refused_vec, StatementRefusal::ALL, |v| v.as_str());

        let limits_vec = r.add(IntCounterVec::new(
            Opts::new(
                "pgcordon_limits_reached_total",
                "Client connections refused or ended because they reached a configured limit.",
            ),
            &["limit"],
        ))?;
        let limits_reached = labelled(&limits_vec, Limit::ALL, |v| v.as_str());

        let client_received_bytes = r.add(IntCounter::new(
            "pgcordon_client_received_bytes_total",
            "Bytes received from clients, after TLS decryption.",
        ))?;
        let client_sent_bytes = r.add(IntCounter::new(
            "pgcordon_client_sent_bytes_total",
            "Bytes sent to clients, before TLS encryption.",
        ))?;

        let reloads_vec = r.add(IntCounterVec::new(
            Opts::new(
                "pgcordon_reloads_total",
                "Configuration and certificate reloads, by outcome.",
            ),
            &["outcome"],
        ))?;
        let reloads = labelled(&reloads_vec, ReloadOutcome::ALL, |v| v.as_str());
        let last_reload_successful = r.add(IntGauge::new(
            "pgcordon_last_reload_successful",
            "1 if the last reload succeeded (or none was tried), 0 if it failed.",
        ))?;
        last_reload_successful.set(1);

        let audit_records_dropped = r.add(IntCounter::new(
            "pgcordon_audit_records_dropped_total",
            "Audit records lost because the audit queue was full or the output failed.",
        ))?;

        let session_pins = r.add(prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "pgcordon_session_pins_total",
                "Client sessions pinned to their backend under transaction pooling, by the \
                 session state that required it (listen, session_set, temp_table, ...).",
            ),
            &["reason"],
        ))?;
        // Every reason is exported from the start, so a scrape shows the family (at zero)
        // before the first pin, and alerts can rate() it.
        for reason in PIN_REASONS {
            session_pins.with_label_values(&[reason]);
        }

        let target_families = TargetFamilies::register(&mut r)?;

        let scrape =
            Arc::new(
                ScrapeCollector::new(clock).map_err(|source| MetricsError::Define {
                    name: "pgcordon_pool_connections".to_owned(),
                    source,
                })?,
            );
        r.add_boxed(Box::new(SharedCollector(scrape.clone())))?;

        Ok(Arc::new(Metrics {
            registrar: r,
            clients: Arc::new(clients),
            attempts,
            refused_statements,
            limits_reached,
            reloads,
            last_reload_successful,
            target_families,
            targets: Mutex::new(Vec::new()),
            scrape,
            tls_handshake_seconds,
            client_received_bytes,
            client_sent_bytes,
            audit_records_dropped,
            session_pins,
        }))
    }

    /// Counts a session pinned to its backend. `reason` is one of the classifier's fixed
    /// labels (a closed set), never free text.
    pub fn pinned(&self, reason: &'static str) {
        self.session_pins.with_label_values(&[reason]).inc();
    }

    /// Starts counting a new client connection, in [`ClientState::Handshake`]. Call it at
    /// accept and keep the guard for the connection's life.
    pub fn client_connection(&self) -> ClientConnection {
        ClientConnection::new(self.clients.clone())
    }

    /// Counts one connection attempt with its outcome.
    pub fn attempt(&self, attempt: Attempt) {
        self.attempts[attempt.index()].inc();
    }

    /// Counts one refused statement (or startup option).
    pub fn statement_refused(&self, reason: StatementRefusal) {
        self.refused_statements[reason.index()].inc();
    }

    /// Counts a client connection refused or ended by `limit`.
    pub fn limit_reached(&self, limit: Limit) {
        self.limits_reached[limit.index()].inc();
    }

    /// Counts a reload and sets `pgcordon_last_reload_successful`.
    pub fn reload(&self, outcome: ReloadOutcome) {
        self.reloads[outcome.index()].inc();
        let ok = outcome == ReloadOutcome::Success;
        self.last_reload_successful.set(i64::from(ok));
    }

    /// The handles of the backend target `name`, created on first use and shared after.
    ///
    /// Call it once per target at start-up (or reload) and keep the `Arc`.
    ///
    /// # Errors
    /// [`MetricsError::TargetName`] for a name that is not a short lowercase word (so no host
    /// name, address or identity becomes a label value), [`MetricsError::TooManyTargets`]
    /// past [`MAX_TARGETS`], [`MetricsError::RoleMismatch`] if `name` exists with the other
    /// role.
    pub fn target(&self, name: &str, role: TargetRole) -> Result<Arc<TargetMetrics>, MetricsError> {
        check_target_name(name)?;
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = targets.iter().find(|t| t.name() == name) {
            if existing.role() != role {
                return Err(MetricsError::RoleMismatch {
                    name: name.to_owned(),
                    registered: existing.role(),
                    requested: role,
                });
            }
            return Ok(existing.clone());
        }
        if targets.len() >= MAX_TARGETS {
            return Err(MetricsError::TooManyTargets { max: MAX_TARGETS });
        }
        let created = Arc::new(self.target_families.target(name, role));
        targets.push(created.clone());
        Ok(created)
    }

    /// Installs the callback read at every scrape for the pool of `target`, replacing any
    /// earlier one. The callback must be quick and must not block (it runs on the admin
    /// server's task).
    pub fn set_pool_source<F>(&self, target: &TargetMetrics, read: F)
    where
        F: Fn() -> PoolStats + Send + Sync + 'static,
    {
        self.scrape.set_pool(target.name(), Arc::new(read));
    }

    /// Records the notAfter of a certificate (the earliest of a CA bundle); `None` removes
    /// the series, for a certificate that is no longer configured.
    pub fn set_certificate_expiry(&self, kind: CertificateKind, not_after: Option<SystemTime>) {
        self.scrape.set_not_after(kind, not_after);
    }

    /// Records the earliest nextUpdate of the client CRLs; `None` when none is configured.
    pub fn set_crl_next_update(&self, next_update: Option<SystemTime>) {
        self.scrape.set_crl_next_update(next_update);
    }

    /// Every metric in the Prometheus text exposition format.
    ///
    /// # Errors
    /// [`MetricsError::Encode`] if the encoder refuses the gathered families.
    pub fn try_render(&self) -> Result<String, MetricsError> {
        let families = self.registrar.registry.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&families, &mut out)
            .map_err(MetricsError::Encode)?;
        // The text encoder writes label values escaped and help texts from this crate only.
        String::from_utf8(out)
            .map_err(|e| MetricsError::Encode(prometheus::Error::Msg(format!("not UTF-8: {e}"))))
    }

    /// As [`Metrics::try_render`]; on the (unexpected) encoder error the text is a single
    /// comment line naming it, which Prometheus reads as an empty scrape.
    pub fn render(&self) -> String {
        self.try_render()
            .unwrap_or_else(|error| format!("# pgcordon: {error}\n"))
    }

    /// The name of every metric family this process defines, whether or not it has a
    /// series yet. Histograms are listed by their base name; their series carry the
    /// `_bucket`, `_sum` and `_count` suffixes.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names = self.registrar.names.clone();
        names.sort();
        names.dedup();
        names
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("families", &self.registrar.names.len())
            .finish_non_exhaustive()
    }
}

/// One counter per value of a closed label set, in `ALL` order.
fn labelled<T: Copy>(
    vec: &IntCounterVec,
    all: &[T],
    text: fn(T) -> &'static str,
) -> Vec<IntCounter> {
    all.iter()
        .map(|v| vec.with_label_values(&[text(*v)]))
        .collect()
}

/// Lets the registry own a collector that [`Metrics`] also keeps.
struct SharedCollector(Arc<ScrapeCollector>);

impl prometheus::core::Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
mod tests;
