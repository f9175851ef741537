//! pgcordon's admin HTTP listener: `/metrics`, `/healthz` and `/readyz`.
//!
//! Owns the small HTTP/1.1 server (hyper 1) on the configured admin address, separate from
//! the client listeners so that probes and scrapes never compete with PostgreSQL clients or
//! need a client certificate. `/metrics` renders [`pgcordon_metrics::Metrics`] in the
//! Prometheus text format; `/healthz` answers while the process runs; `/readyz` asks the
//! caller's [`ReadinessCheck`] (for example [`ReadinessFlags`]) and answers 503 with the
//! reason when not ready.
//!
//! It does not decide readiness (the proxy sets the flags: listeners bound, primary
//! reachable, draining), does not refuse wildcard addresses (pgcordon-config does, under
//! `allow_wildcard`), and offers no TLS or authentication: bind it to loopback or a pod-local
//! address. HTTP semantics follow RFC 9110 (405 with `Allow`, HEAD without a body).

mod error;
mod readiness;
mod routes;
mod server;

pub use error::AdminError;
pub use readiness::{Readiness, ReadinessCheck, ReadinessFlags};
pub use server::{AdminServer, MAX_CONNECTIONS};
