//! Local PostgreSQL clusters and a development certificate authority.
//!
//! This crate owns the two pieces of scaffolding that `pgcordon demo` and every end-to-end test
//! need before a proxy can run: a throw-away CA that issues server and client certificates and
//! CRLs ([`pki`]), and real PostgreSQL clusters (primary and streaming replica) started from the
//! installed server binaries ([`cluster`]).
//!
//! It does not own anything the proxy does at run time: it never loads certificates into rustls,
//! never speaks the wire protocol itself (SQL goes through `psql`), and knows nothing of pgcordon's
//! configuration. The API is synchronous (`std::process`); call it from async code through
//! `tokio::task::spawn_blocking`.

#![warn(missing_docs)]

pub mod cluster;
mod error;
pub mod pki;
mod random;
pub mod stack;

pub use cluster::{find_pg_bindir, free_port, Cluster, ClusterOptions};
pub use error::DevkitError;
pub use pki::{CertAuthority, ClientSpec, IssuedCert};
