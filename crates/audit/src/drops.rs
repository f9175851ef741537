//! Counting and reporting lost audit records.
//!
//! Owns the rule that no record is lost silently: every record that cannot be queued (queue
//! full, writer gone) or written (output error) increments
//! `pgcordon_audit_records_dropped_total`, and a warning in the log says how many were lost,
//! at most once per [`WARN_INTERVAL`] so that a stuck output does not flood the log too. The
//! count is never reset, only reported: records dropped between two warnings appear in the
//! next one, and the writer reports the rest when it stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// Shortest time between two "audit records dropped" warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) struct Drops {
    counter: IntCounter,
    unreported: AtomicU64,
    /// Milliseconds after `epoch` before which no warning is written.
    quiet_until_ms: AtomicU64,
    epoch: Instant,
    interval: Duration,
}

impl Drops {
    pub(crate) fn new(counter: IntCounter, interval: Duration) -> Self {
        Drops {
            counter,
            unreported: AtomicU64::new(0),
            quiet_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            interval,
        }
    }

    /// Counts `n` lost records and warns if the last warning is old enough. Never blocks
    /// beyond the log write of at most one warning per interval.
    pub(crate) fn record(&self, n: u64, why: &'static str) {
        self.counter.inc_by(n);
        self.unreported.fetch_add(n, Ordering::Relaxed);

        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_until = self.quiet_until_ms.load(Ordering::Relaxed);
        if now < quiet_until {
            return;
        }
        let next = now.saturating_add(u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX));
        // One caller wins the right to warn for this interval.
        let won = self
            .quiet_until_ms
            .compare_exchange(quiet_until, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.report(why);
        }
    }

    /// Writes the warning for every record not reported yet, if there are any.
    pub(crate) fn report(&self, why: &'static str) {
        let dropped = self.unreported.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                reason = why,
                "audit records dropped since the last warning (see pgcordon_audit_records_dropped_total)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn warnings_are_rate_limited_and_lose_no_count() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let counter = IntCounter::new("t_dropped_total", "test").unwrap();
        // An interval no test run reaches: only the first drop and the final report warn.
        let drops = Drops::new(counter.clone(), Duration::from_secs(24 * 3600));

        tracing::subscriber::with_default(subscriber, || {
            drops.record(1, "queue full");
            drops.record(1, "queue full");
            drops.record(3, "queue full");
            drops.report("writer stopped");
            drops.report("writer stopped");
        });

        assert_eq!(counter.get(), 5);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 2, "{log}");
        assert!(warnings[0].contains("dropped=1"), "{log}");
        assert!(warnings[0].contains("queue full"), "{log}");
        assert!(warnings[1].contains("dropped=4"), "{log}");
        assert!(warnings[1].contains("writer stopped"), "{log}");
    }

    #[test]
    fn a_zero_interval_warns_every_time() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let counter = IntCounter::new("t_dropped_total", "test").unwrap();
        let drops = Drops::new(counter, Duration::ZERO);
        tracing::subscriber::with_default(subscriber, || {
            drops.record(2, "queue full");
            drops.record(1, "queue full");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            log.lines().filter(|l| l.contains("WARN")).count(),
            2,
            "{log}"
        );
    }
}
