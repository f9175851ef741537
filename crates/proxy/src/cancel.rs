//! Cancel requests. Each client gets a proxy-issued key (the backend's real key never leaves
//! pgcordon); a CancelRequest carrying it, in plaintext (libpq before 17, most drivers) or over
//! TLS (libpq 17+), is forwarded over verified TLS to the backend session serving that client at
//! that moment, with that session's real key. A key that matches nothing is dropped.
//!
//! Race closed here: a cancel sent just as the client's statement finishes could reach the
//! backend session after it was handed to another client. A session with a cancel in flight
//! therefore goes back to the pool only after the server has processed the cancel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::handshake::CancelRequest;
use crate::listener::Shared;

/// The process id and secret key of a backend session, as the server issued them, and the
/// index of the target it belongs to (0 is the primary).
pub type BackendKey = (i32, i32, usize);

#[derive(Default)]
struct SlotState {
    /// The backend session serving the client now, if any.
    target: Option<BackendKey>,
    /// Cancels forwarded to `target` and not yet acknowledged by the server.
    in_flight: usize,
}

/// Where a client's cancel requests go.
#[derive(Default)]
pub struct CancelSlot {
    state: Mutex<SlotState>,
    idle: Notify,
}

impl CancelSlot {
    /// Records the backend session now serving the client (or none).
    pub fn set(&self, target: Option<BackendKey>) {
        if let Ok(mut state) = self.state.lock() {
            state.target = target;
        }
    }

    /// Clears the target; returns whether a cancel to it is still in flight.
    pub fn clear(&self) -> bool {
        match self.state.lock() {
            Ok(mut state) => {
                state.target = None;
                state.in_flight > 0
            }
            Err(_) => true,
        }
    }

    fn begin(&self) -> Option<BackendKey> {
        let mut state = self.state.lock().ok()?;
        let target = state.target?;
        state.in_flight += 1;
        Some(target)
    }

    fn end(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                self.idle.notify_waiters();
            }
        }
    }

    /// Waits until no cancel is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            let busy = self.state.lock().map(|s| s.in_flight > 0).unwrap_or(false);
            if !busy {
                return;
            }
            notified.await;
        }
    }
}

/// Proxy-issued keys of the connected clients.
#[derive(Default)]
pub struct CancelRegistry {
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

impl CancelRegistry {
    /// Issues a fresh random key for a client.
    pub fn register(&self) -> ((i32, i32), Arc<CancelSlot>) {
        let slot = Arc::new(CancelSlot::default());
        loop {
            let key = random_key();
            let Ok(mut slots) = self.slots.lock() else {
                return (key, slot);
            };
            if let std::collections::hash_map::Entry::Vacant(e) = slots.entry(key) {
                e.insert(slot.clone());
                return (key, slot);
            }
        }
    }

    pub fn unregister(&self, key: (i32, i32)) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&key);
        }
    }

    fn lookup(&self, process_id: i32, secret_key: &[u8]) -> Option<Arc<CancelSlot>> {
        let key: [u8; 4] = secret_key.try_into().ok()?;
        let key = i32::from_be_bytes(key);
        self.slots.lock().ok()?.get(&(process_id, key)).cloned()
    }
}

/// Answers one CancelRequest as PostgreSQL does: forwards it while its connection stays open,
/// then closes the connection without a reply (over TLS with close_notify first). libpq 17+
/// takes the end of the connection as the acknowledgement, so the close comes only once the
/// upstream server has received the cancel.
pub async fn answer(shared: &Shared, request: CancelRequest) {
    let CancelRequest {
        process_id,
        secret_key,
        stream,
    } = request;
    forward(shared, process_id, &secret_key).await;
    stream.close().await;
}

/// Forwards one CancelRequest to the backend session serving the client that holds the key.
async fn forward(shared: &Shared, process_id: i32, secret_key: &[u8]) {
    let Some(slot) = shared.cancels.lookup(process_id, secret_key) else {
        tracing::debug!("cancel request matches no client; dropped");
        return;
    };
    let Some((backend_pid, backend_key, target)) = slot.begin() else {
        tracing::debug!("cancel request for a client with no statement running; dropped");
        return;
    };
    let upstream = shared.target_pool(target).upstream();
    let result = pgcordon_upstream::cancel(&upstream, backend_pid, backend_key).await;
    slot.end();
    match result {
        Ok(()) => tracing::debug!(backend.pid = backend_pid, "cancel request forwarded"),
        Err(e) => tracing::warn!(error = %e, "could not forward a cancel request"),
    }
}

fn random_key() -> (i32, i32) {
    let mut bytes = [0u8; 8];
    // ring's system RNG; should it ever fail, the key is still unique (checked by the caller)
    // but guessable, which only lets a peer cancel a statement, never read anything.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let pid = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff;
    let key = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (pid, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_unique_and_a_release_waits_for_cancels_in_flight() {
        let registry = CancelRegistry::default();
        let (k1, slot) = registry.register();
        let (k2, _) = registry.register();
        assert_ne!(k1, k2);
        assert!(registry.lookup(k1.0, &k1.1.to_be_bytes()).is_some());
        assert!(registry
            .lookup(k1.0, &k1.1.wrapping_add(1).to_be_bytes())
            .is_none());
        assert!(registry.lookup(k1.0, &[1, 2, 3]).is_none());

        assert_eq!(slot.begin(), None, "nothing running: nothing to cancel");
        slot.set(Some((42, 7, 0)));
        assert_eq!(slot.begin(), Some((42, 7, 0)));
        assert!(slot.clear(), "a cancel is in flight");
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.wait_idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        slot.end();
        waiter.await.unwrap();
        assert!(!slot.clear());

        registry.unregister(k1);
        assert!(registry.lookup(k1.0, &k1.1.to_be_bytes()).is_none());
    }
}
