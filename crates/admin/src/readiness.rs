//! Readiness: the answer of `/readyz`, decided by the caller.
//!
//! Owns [`ReadinessCheck`], the one question the admin server asks, and [`ReadinessFlags`],
//! a lock-free implementation the proxy can set from anywhere: ready when the client
//! listeners are bound and at least one primary backend is reachable, and never while
//! draining. It does not probe backends itself; whoever checks the pool sets the flag.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether pgcordon should receive new clients now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready: `/readyz` answers 200.
    Ready,
    /// Not ready: `/readyz` answers 503 with this reason.
    NotReady(&'static str),
}

/// Something that can tell whether pgcordon is ready; asked once per `/readyz` request, so
/// it must be quick and must not block.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// The current readiness.
    fn readiness(&self) -> Readiness;
}

impl<F> ReadinessCheck for F
where
    F: Fn() -> Readiness + Send + Sync + 'static,
{
    fn readiness(&self) -> Readiness {
        self()
    }
}

/// Readiness from three flags, all false at first (not ready until proven ready).
#[derive(Debug, Default)]
pub struct ReadinessFlags {
    listeners_bound: AtomicBool,
    primary_reachable: AtomicBool,
    draining: AtomicBool,
}

impl ReadinessFlags {
    /// Flags for a process that has not bound its listeners yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records whether every client listener is bound.
    pub fn set_listeners_bound(&self, bound: bool) {
        self.listeners_bound.store(bound, Ordering::Release);
    }

    /// Records whether at least one primary backend answered its last check.
    pub fn set_primary_reachable(&self, reachable: bool) {
        self.primary_reachable.store(reachable, Ordering::Release);
    }

    /// Marks the process as draining; it stays not ready until it exits.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether [`ReadinessFlags::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl ReadinessCheck for ReadinessFlags {
    fn readiness(&self) -> Readiness {
        // Draining wins: a load balancer must stop sending clients even if all else is fine.
        if self.is_draining() {
            return Readiness::NotReady("draining");
        }
        if !self.listeners_bound.load(Ordering::Acquire) {
            return Readiness::NotReady("client listeners not bound yet");
        }
        if !self.primary_reachable.load(Ordering::Acquire) {
            return Readiness::NotReady("no primary backend reachable");
        }
        Readiness::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_need_listeners_and_a_primary_and_lose_to_draining() {
        let flags = ReadinessFlags::new();
        assert_eq!(
            flags.readiness(),
            Readiness::NotReady("client listeners not bound yet")
        );
        flags.set_listeners_bound(true);
        assert_eq!(
            flags.readiness(),
            Readiness::NotReady("no primary backend reachable")
        );
        flags.set_primary_reachable(true);
        assert_eq!(flags.readiness(), Readiness::Ready);
        flags.set_primary_reachable(false);
        assert_eq!(
            flags.readiness(),
            Readiness::NotReady("no primary backend reachable")
        );
        flags.set_primary_reachable(true);
        flags.start_draining();
        assert_eq!(flags.readiness(), Readiness::NotReady("draining"));
        assert!(flags.is_draining());
    }
}
