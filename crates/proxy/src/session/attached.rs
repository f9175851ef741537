//! A backend session attached to a client: what pgcordon sends it, the responses it expects
//! back, and the identity and parameters it applies at each transaction start.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgcordon_pool::Checkout;
use pgcordon_wire::{inspect, RawMessage};

use crate::inject;
use crate::params::{canonical_value, tracked_name};
use crate::prepared::{self, Statement};
use crate::responses::{Disposition, Note, OnError, Request, ResponseQueue};
use crate::route::{RouteKind, Routed};
use pgcordon_routing::ReplicaLease;

/// Swallow a request of pgcordon's own; an error is the client's concern and is passed on.
const SWALLOW: Disposition = Disposition::Swallow {
    on_error: OnError::Forward,
};

/// Name of the throwaway statement used to raise an error in place (see `raise_in_place`).
const REFUSAL_STATEMENT: &str = "pgcordon_refusal";

pub(super) struct Attached {
    pub(super) checkout: Checkout,
    /// Messages waiting to be written to the backend.
    pub(super) to_backend: BytesMut,
    /// One entry per request sent and not fully answered.
    pub(super) queue: ResponseQueue,
    /// Extended-protocol requests sent since the last Sync.
    pub(super) unsynced: bool,
    /// Transaction status of the last ReadyForQuery.
    pub(super) status: u8,
    /// The transaction in progress, from its first message to the idle ReadyForQuery.
    pub(super) tx: Option<super::TxStats>,
    /// The target this session belongs to (0 is the primary), why it was chosen, and, for a
    /// replica, the lease that counts it as outstanding work until the session is released.
    pub(super) target: usize,
    pub(super) kind: RouteKind,
    pub(super) _lease: Option<ReplicaLease>,
}

impl Attached {
    pub(super) fn new(checkout: Checkout, routed: Routed) -> Attached {
        Attached {
            checkout,
            to_backend: BytesMut::with_capacity(4096),
            queue: ResponseQueue::default(),
            unsynced: false,
            status: b'I',
            tx: None,
            target: routed.index,
            kind: routed.kind,
            _lease: routed.lease,
        }
    }

    /// Between transactions: nothing queued or outstanding, so an injection may go first.
    pub(super) fn at_transaction_start(&self) -> bool {
        self.queue.is_empty() && !self.unsynced && self.status == b'I' && self.to_backend.is_empty()
    }

    /// Idle, nothing outstanding: the session can serve another client.
    pub(super) fn is_quiescent(&self) -> bool {
        self.at_transaction_start() && self.checkout.backend.read_buf.is_empty()
    }

    /// Sends one of the client's messages whose responses go back to the client.
    pub(super) fn send_client(&mut self, msg: &RawMessage) {
        self.send(msg.tag, &msg.bytes, Disposition::Forward, Note::None);
    }

    /// Sends a message and records how its responses are handled.
    pub(super) fn send(&mut self, tag: u8, bytes: &[u8], disposition: Disposition, note: Note) {
        self.to_backend.put_slice(bytes);
        let describe_kind = if tag == b'D' {
            bytes.get(5).copied()
        } else {
            None
        };
        if let Some(request) = Request::of_client_message(tag, describe_kind) {
            self.queue.push(request, disposition, note);
        }
        match tag {
            b'Q' | b'S' | b'F' => self.unsynced = false,
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.unsynced = true,
            _ => {}
        }
    }

    /// Answers a request of the client's with `tag` when its turn comes, sending nothing.
    pub(super) fn synthesize(&mut self, request: Request, tag: u8) {
        self.queue
            .push(request, Disposition::Synthesize(tag), Note::None);
    }

    /// Makes sure this session has `statement` prepared. When the client's own Parse asked for
    /// it (`for_client`), the client gets one ParseComplete (or the server's error).
    pub(super) fn prepare(&mut self, statement: &Statement, for_client: bool) {
        let name = statement.backend_name.as_str();
        if self.checkout.prepared.contains_key(name) {
            prepared::touch(&mut self.checkout.prepared, name);
            if for_client {
                self.synthesize(Request::Parse, b'1');
            }
            return;
        }
        // Close first: after a DEALLOCATE or DISCARD pgcordon may believe a statement is gone
        // that the server still has, and closing an absent statement is not an error.
        self.send(b'C', &prepared::close_statement(name), SWALLOW, Note::None);
        let disposition = if for_client {
            Disposition::Forward
        } else {
            SWALLOW
        };
        let parse = prepared::parse_message(name, &statement.parse_rest);
        self.send(b'P', &parse, disposition, Note::Prepares(name.to_owned()));
        for evicted in prepared::touch(&mut self.checkout.prepared, name) {
            self.send(
                b'C',
                &prepared::close_statement(&evicted),
                SWALLOW,
                Note::None,
            );
        }
    }

    /// Makes the server raise `code`/`message` at this point of the client's batch, so that it
    /// aborts the transaction and skips to the next Sync exactly as for any other error. Used for
    /// refusals inside an extended-protocol batch; only the error reaches the client.
    pub(super) fn raise_in_place(&mut self, code: &str, message: &str) {
        let sql = inject::raising_sql(code, message);
        let mut parse = BytesMut::new();
        let mut rest = BytesMut::new();
        let _ = postgres_protocol::message::frontend::parse(
            REFUSAL_STATEMENT,
            &sql,
            std::iter::empty(),
            &mut parse,
        );
        let _ = postgres_protocol::message::frontend::bind(
            "",
            REFUSAL_STATEMENT,
            std::iter::empty::<i16>(),
            std::iter::empty::<&str>(),
            |_: &str, _| {
                Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
            },
            std::iter::empty::<i16>(),
            &mut rest,
        );
        let _ = postgres_protocol::message::frontend::execute("", 0, &mut rest);
        // A named throwaway statement, closed first, leaves the client's unnamed statement alone.
        self.send(
            b'C',
            &prepared::close_statement(REFUSAL_STATEMENT),
            SWALLOW,
            Note::None,
        );
        self.send(b'P', &parse, SWALLOW, Note::None);
        let (bind, execute) = rest.split_at(rest.len() - 10);
        self.send(b'B', bind, SWALLOW, Note::None);
        self.send(b'E', execute, SWALLOW, Note::None);
    }

    /// Queues the identity injection when the session holds anything other than `identity` and
    /// the `desired` parameter values. Its requests are swallowed; any error ends the session.
    pub(super) fn apply_identity(
        &mut self,
        identity: &Arc<str>,
        desired: &BTreeMap<String, String>,
        identity_settings: &[String],
        proof: Option<&crate::settings::ProofSettings>,
    ) {
        let mut assignments: Vec<(String, String)> = Vec::new();
        if self.checkout.identity.as_deref() != Some(&**identity) {
            for setting in identity_settings {
                assignments.push((setting.clone(), identity.to_string()));
            }
            if let Some(proof) = proof {
                let (nonce, signature) = proof.prove(identity);
                assignments.push((proof.nonce_setting.clone(), nonce));
                assignments.push((proof.setting.clone(), signature));
            }
        }
        for (name, value) in desired {
            let current = self
                .checkout
                .params
                .get(name)
                .map(|v| canonical_value(name, v));
            if current.as_deref() != Some(value.as_str()) {
                assignments.push((name.clone(), value.clone()));
            }
        }
        if assignments.is_empty() {
            return;
        }

        let fatal = Disposition::Swallow {
            on_error: OnError::Fatal,
        };
        let pairs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let statements = inject::write_injection(&mut self.to_backend, &pairs);
        for _ in 0..statements {
            for request in [Request::Parse, Request::Bind, Request::Execute] {
                self.queue.push(request, fatal.clone(), Note::None);
            }
        }
        self.unsynced = true;
        self.checkout.identity = Some(identity.clone());
        for (name, value) in assignments {
            if tracked_name(&name).is_some() {
                self.checkout.params.insert(name, value);
            }
        }
    }

    /// Forgets which statements the session has (after DEALLOCATE or DISCARD by the client).
    pub(super) fn forget_prepared(&mut self) {
        self.checkout.prepared.clear();
    }
}

/// Whether a statement text may deallocate prepared statements (DEALLOCATE, DISCARD). Checked
/// loosely on purpose: a false positive only costs a re-prepare.
pub(super) fn may_deallocate(text: &[u8]) -> bool {
    [&b"deallocate"[..], b"discard"]
        .iter()
        .any(|w| text.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)))
}

/// The statement name a Describe or Close targets, if it is a named statement.
pub(super) fn named_statement(body: &[u8]) -> Option<&[u8]> {
    match inspect::target_of(body) {
        Some((b'S', name)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::may_deallocate;

    #[test]
    fn deallocating_statements_are_recognised_in_any_case() {
        for text in [
            "DEALLOCATE ALL",
            "deallocate s1",
            "DisCard ALL",
            "select 1; discard plans",
        ] {
            assert!(may_deallocate(text.as_bytes()), "{text}");
        }
        for text in ["SELECT 1", "DEALLOC", "discar", ""] {
            assert!(!may_deallocate(text.as_bytes()), "{text}");
        }
    }
}
