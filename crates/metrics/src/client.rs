//! Client connection gauges that cannot drift.
//!
//! Owns [`ClientConnection`], a guard that counts one client connection in exactly one state
//! of `pgcordon_client_connections{state}` from accept to drop. Moving between states is two
//! atomic operations on handles resolved at start-up; dropping the guard (on any path,
//! including a panic or an early return) takes the connection out of the gauge, so the gauge
//! never counts connections that are gone. It does not decide when a state changes: the
//! session does.

use std::sync::Arc;

use prometheus::IntGauge;

use crate::labels::ClientState;

/// The per-state gauges, shared by every guard.
pub(crate) struct ClientStates {
    gauges: Vec<IntGauge>,
}

impl ClientStates {
    /// `gauges` holds one handle per [`ClientState`], in `ClientState::ALL` order.
    pub(crate) fn new(gauges: Vec<IntGauge>) -> Self {
        debug_assert_eq!(gauges.len(), ClientState::COUNT);
        ClientStates { gauges }
    }

    fn gauge(&self, state: ClientState) -> &IntGauge {
        &self.gauges[state.index()]
    }
}

/// One client connection counted in `pgcordon_client_connections{state}`.
///
/// Created in [`ClientState::Handshake`] by [`crate::Metrics::client_connection`]; keep it in
/// the connection's task and call [`ClientConnection::set`] as the connection moves on.
#[must_use = "the connection is counted only while the guard lives"]
pub struct ClientConnection {
    states: Arc<ClientStates>,
    current: ClientState,
}

impl ClientConnection {
    pub(crate) fn new(states: Arc<ClientStates>) -> Self {
        states.gauge(ClientState::Handshake).inc();
        ClientConnection {
            states,
            current: ClientState::Handshake,
        }
    }

    /// Moves the connection to `state`; a no-op when it is already there.
    pub fn set(&mut self, state: ClientState) {
        if state == self.current {
            return;
        }
        self.states.gauge(self.current).dec();
        self.states.gauge(state).inc();
        self.current = state;
    }

    /// The state the connection is counted in.
    pub fn state(&self) -> ClientState {
        self.current
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.states.gauge(self.current).dec();
    }
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("state", &self.current)
            .finish()
    }
}
