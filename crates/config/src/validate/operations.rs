//! Validation of the operational sections: `admin`, `audit` and `shutdown`.
//!
//! The admin address follows the rules of client listeners (an IP address and port; a
//! wildcard only with `allow_wildcard: true`) and must not be one of them. The audit path is
//! `stdout` or a file path made absolute like every other path; the file is not opened here.

use std::net::SocketAddr;

use super::{is_wildcard, Check};
use crate::defaults;
use crate::model::{Admin, Audit, AuditOutput, Listener, Shutdown};
use crate::raw::{RawAdmin, RawAudit, RawShutdown};

impl Check {
    /// `None` inside `Some` means "no admin section"; the outer `None` means a problem.
    pub(super) fn admin(
        &mut self,
        raw: Option<RawAdmin>,
        allow_wildcard: bool,
        listeners: Option<&[Listener]>,
    ) -> Option<Option<Admin>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let key = "admin.listen";
        let listen = match raw.listen {
            None => defaults::ADMIN_LISTEN,
            Some(text) => {
                let Ok(address) = text.parse::<SocketAddr>() else {
                    let expected = "an IP address and port such as 127.0.0.1:9187";
                    self.add(key, expected, format!("{text:?}"));
                    return None;
                };
                address
            }
        };
        // Metrics and readiness reveal load and topology; exposing them on every interface
        // must be as deliberate as it is for client listeners.
        if is_wildcard(&listen) && !allow_wildcard {
            let expected = "a specific interface address: a wildcard listens on every \
                            interface of the host and is refused unless \
                            `allow_wildcard: true` is set";
            self.add(key, expected, listen.to_string());
            return None;
        }
        let clash = listeners
            .unwrap_or_default()
            .iter()
            .any(|l| l.address == listen && listen.port() != 0);
        if clash {
            let expected = "an address that no listen[] entry uses";
            self.add(key, expected, listen.to_string());
            return None;
        }
        Some(Some(Admin { listen }))
    }

    pub(super) fn audit(&mut self, raw: Option<RawAudit>) -> Option<Option<Audit>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let output = match raw.path.as_deref() {
            None | Some(defaults::AUDIT_STDOUT) => Some(AuditOutput::Stdout),
            Some(path) => self.path("audit.path", path).map(AuditOutput::File),
        };
        let queue = self.ranged(
            "audit.queue",
            raw.queue,
            defaults::AUDIT_QUEUE,
            1..=defaults::AUDIT_QUEUE_MAX,
        );
        Some(Some(Audit {
            output: output?,
            transactions: raw.transactions.unwrap_or(false),
            statements: raw.statements.unwrap_or(false),
            queue: queue?,
        }))
    }

    pub(super) fn shutdown(&mut self, raw: RawShutdown) -> Shutdown {
        Shutdown {
            drain_timeout: raw.drain_timeout.map_or(defaults::DRAIN_TIMEOUT, |d| d.0),
        }
    }
}
