//! TLS for pgcordon: the client-facing mutual-TLS server configuration, the client identity
//! read from its certificate, the verify-full configuration towards PostgreSQL, and the
//! channel-binding data for SCRAM-SHA-256-PLUS.
//!
//! What this crate owns:
//! - [`server_config`]: rustls server settings that require and verify client certificates
//!   against a CA bundle and CRLs (RFC 5280), with ALPN `postgresql`;
//! - [`classify_handshake_error`]: a bounded reason for every failed handshake;
//! - [`extract_identity`]: one identity from a verified leaf, by [`IdentityRule`];
//! - [`upstream_config`]: the client settings for connecting to PostgreSQL with verify-full;
//! - [`tls_server_end_point`]: RFC 5929 channel-binding data;
//! - [`load_certs`] and [`load_private_key`]: PEM files (RFC 7468) into DER.
//!
//! What it does not own: sockets, the SSLRequest and direct-TLS negotiation, ALPN enforcement
//! for direct TLS, certificate reloading, metrics and logging of handshakes (the proxy crate),
//! and the SCRAM exchange (the upstream crate).
//!
//! Only the ring crypto provider is used, always passed explicitly: with a second provider
//! compiled into the binary, rustls' implicit default would panic.

mod channel_binding;
mod dates;
mod error;
mod handshake;
mod identity;
mod load;
mod server;
mod upstream;

#[cfg(test)]
mod testpki;

use std::sync::Arc;

pub use channel_binding::tls_server_end_point;
pub use dates::{crl_next_update, earliest_expiry};
pub use error::{IdentityError, TlsError};
pub use handshake::{classify_handshake_error, HandshakeFailure};
pub use identity::{
    extract_identity, IdentityRule, IdentitySource, PeerIdentity, MAX_IDENTITY_LEN,
};
pub use load::{load_certs, load_private_key};
pub use server::{server_config, ServerTlsSettings};
pub use upstream::{upstream_config, UpstreamTlsSettings};

/// The TLS stack, re-exported so that other crates use exactly these versions.
pub use rustls;
pub use rustls_pki_types;
pub use tokio_rustls;

/// The ALPN protocol name of PostgreSQL (as registered with IANA, used by PostgreSQL 17 direct
/// TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// TLS 1.3 and 1.2; rustls implements nothing older.
pub(crate) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ring provider with rustls' default suites and groups: AEAD ciphers with (EC)DHE key
/// exchange only.
pub(crate) fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// x509-parser reports nom errors; the inner X.509 error is the informative part.
pub(crate) fn nom_to_x509(
    err: x509_parser::nom::Err<x509_parser::error::X509Error>,
) -> x509_parser::error::X509Error {
    match err {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => x509_parser::error::X509Error::InvalidCertificate,
    }
}
