//! Upstream PostgreSQL sessions: TCP, TLS with verify-full, the startup exchange, and
//! authentication with SCRAM-SHA-256 (RFC 5802, RFC 7677), upgraded to SCRAM-SHA-256-PLUS with
//! `tls-server-end-point` channel binding (RFC 5929) when the server offers it.
//!
//! A server that asks for a cleartext or MD5 password is refused unless the settings allow it: a
//! weaker method requested by a server (or a man in the middle) is a downgrade. The password is
//! read from its source for every new connection, so a rotated password file takes effect without
//! a restart.
//!
//! This crate owns one connection's establishment; pooling and forwarding live elsewhere.

mod auth;
mod cancel;
mod connect;
mod password;

pub use cancel::cancel;
pub use connect::{connect, Backend, ChannelBindingPolicy, UpstreamError, UpstreamSettings};
pub use password::{PasswordSource, Secret};
