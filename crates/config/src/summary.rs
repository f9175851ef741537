//! The short human summary that `pgcordon check` prints after a successful load.
//!
//! Owns [`Config::summary`]. It names where secrets come from but never shows one.

use std::fmt::Write;

use crate::model::{AuditOutput, Config, IdentitySource, RoutingMode};
use crate::units::{format_byte_size, format_duration as dur};

fn on_off(yes: bool) -> &'static str {
    if yes {
        "on"
    } else {
        "off"
    }
}

fn allowed(yes: bool) -> &'static str {
    if yes {
        "allowed"
    } else {
        "refused"
    }
}

impl Config {
    /// A few lines describing what this configuration will do, without secrets.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(out, "config: {}", self.source.display());

        let listen: Vec<String> = self.listen.iter().map(|l| l.address.to_string()).collect();
        let wildcard = if self.allow_wildcard {
            " (wildcards allowed)"
        } else {
            ""
        };
        let _ = writeln!(out, "listen: {}{wildcard}", listen.join(", "));

        let tls = &self.tls;
        let _ = writeln!(
            out,
            "client tls: cert {}, key {}, client CA {}, {} CRL file(s), handshake timeout {}",
            tls.cert.display(),
            tls.key.display(),
            tls.client_ca.display(),
            tls.crl.len(),
            dur(tls.handshake_timeout),
        );

        let id = &self.identity;
        let from = match &id.from {
            IdentitySource::SubjectAttribute(a) => {
                format!("subject attribute {} ({})", a.name, a.oid)
            }
            other => other.as_str().to_owned(),
        };
        let _ = writeln!(
            out,
            "identity: {from} matching {} -> {}",
            id.pattern.as_str(),
            id.settings.join(", "),
        );

        let up = &self.upstream;
        let _ = writeln!(
            out,
            "upstream: {}@{}/{} (clients ask for {}), password from {}, connect timeout {}",
            up.user,
            up.primary,
            up.database,
            up.client_database,
            up.password.describe(),
            dur(up.connect_timeout),
        );
        let client_cert = match &up.tls.client_cert {
            Some(c) => format!("client cert {}", c.cert.display()),
            None => "no client cert".to_owned(),
        };
        let _ = writeln!(
            out,
            "upstream tls: verify-full as {} with CA {}, {client_cert}, channel binding {}, \
             cleartext password {}, md5 password {}",
            up.tls.server_name,
            up.tls.ca.display(),
            up.channel_binding,
            allowed(up.allow_cleartext_password),
            allowed(up.allow_md5_password),
        );

        let pool = &self.pool;
        let _ = writeln!(
            out,
            "pool: {} mode, size {}, min idle {}, acquire timeout {}, server lifetime {}, \
             idle timeout {}",
            pool.mode,
            pool.size,
            pool.min_idle,
            dur(pool.acquire_timeout),
            dur(pool.server_lifetime),
            dur(pool.idle_timeout),
        );

        let limits = &self.limits;
        let _ = writeln!(
            out,
            "limits: startup timeout {}, max frame {}, max client connections {}",
            dur(limits.startup_timeout),
            format_byte_size(u64::from(limits.max_frame_bytes)),
            limits.max_client_connections,
        );
        let _ = writeln!(
            out,
            "log: {} format, level {}",
            self.log.format, self.log.level
        );
        let _ = writeln!(out, "{}", self.routing_summary());
        let _ = writeln!(out, "{}", self.guard_summary());
        let _ = write!(out, "{}", self.operations_summary());
        out
    }
}

impl Config {
    /// One line for `upstream.replicas` and `routing`, with a warning when routing is on but
    /// there is no replica to route to.
    fn routing_summary(&self) -> String {
        let replicas: Vec<String> = self
            .upstream
            .replicas
            .iter()
            .map(|r| format!("{} at {} as {}", r.name, r.address, r.server_name))
            .collect();
        let routing = &self.routing;
        match (routing.mode, replicas.is_empty()) {
            (RoutingMode::Off, true) => "routing: off, no replicas".to_owned(),
            (RoutingMode::Off, false) => format!(
                "routing: off, so these replicas are not used: {}",
                replicas.join(", ")
            ),
            (mode, true) => format!(
                "routing: {mode}, WARNING: no replicas are configured, so everything goes to \
                 the primary"
            ),
            (mode, false) => format!(
                "routing: {mode} to {}; checks every {} (timeout {}), out of rotation beyond \
                 {} or {} of lag, read-your-writes {} (wait {}), {} extra function(s)",
                replicas.join(", "),
                dur(routing.check_interval),
                dur(routing.check_timeout),
                format_byte_size(routing.max_lag_bytes),
                dur(routing.max_lag),
                routing.read_your_writes,
                dur(routing.read_your_writes_wait),
                routing.allow_functions.len(),
            ),
        }
    }

    /// One line for `admin`, `audit` and `shutdown`.
    fn operations_summary(&self) -> String {
        let admin = match &self.admin {
            Some(admin) => format!("admin on {}", admin.listen),
            None => "no admin listener".to_owned(),
        };
        let audit = match &self.audit {
            Some(audit) => {
                let to = match &audit.output {
                    AuditOutput::Stdout => "stdout".to_owned(),
                    AuditOutput::File(path) => path.display().to_string(),
                };
                format!(
                    "audit to {to} (transactions {}, statements {}, queue {})",
                    on_off(audit.transactions),
                    on_off(audit.statements),
                    audit.queue
                )
            }
            None => "no audit".to_owned(),
        };
        format!(
            "operations: {admin}, {audit}, drain timeout {}",
            dur(self.shutdown.drain_timeout)
        )
    }
}

impl Config {
    /// One line for the `guard` section: which privileged statement kinds pass.
    fn guard_summary(&self) -> String {
        if self.guard.allow.is_empty() {
            return "guard: SET ROLE, SET SESSION AUTHORIZATION, ALTER ROLE and ALTER SYSTEM \
                    refused"
                .to_owned();
        }
        let names: Vec<&str> = self.guard.allow.iter().map(|k| k.as_str()).collect();
        format!("guard: allows {}", names.join(", "))
    }
}
