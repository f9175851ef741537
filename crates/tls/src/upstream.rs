//! The TLS client configuration for connections from the proxy to PostgreSQL.
//!
//! Owns the equivalent of libpq's `sslmode=verify-full`: the server certificate must chain to
//! the configured CA bundle (and only to it; no system roots) and name the configured host or
//! IP address. It does not own the SSLRequest exchange or SCRAM; see the upstream crate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::load::{load_certs, load_private_key};
use crate::server::root_store;
use crate::{ring_provider, TlsError, ALPN_POSTGRESQL, PROTOCOL_VERSIONS};

/// Files and name for verifying an upstream PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSettings {
    /// PEM bundle of the CA certificates the server certificate must chain to.
    pub ca: PathBuf,
    /// The DNS name or IP address the server certificate must be valid for.
    pub server_name: String,
    /// Optional client certificate chain and key (PEM) to present to the server.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Builds a verify-full client configuration and the name to connect with.
///
/// The configuration uses the ring provider, TLS 1.2 and 1.3, the CA bundle as its only trust
/// anchors, and offers ALPN `postgresql` (what libpq 17 sends; older servers ignore it).
///
/// # Errors
/// A [`TlsError`] naming the file at fault (unreadable, no certificate or key, unusable CA
/// certificate, key not matching the client certificate), or
/// [`TlsError::InvalidServerName`] when the name is neither a DNS name nor an IP address.
pub fn upstream_config(
    settings: &UpstreamTlsSettings,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
    let server_name = ServerName::try_from(settings.server_name.clone()).map_err(|source| {
        TlsError::InvalidServerName {
            name: settings.server_name.clone(),
            source,
        }
    })?;

    let ca_certs = load_certs(&settings.ca)?;
    let roots = root_store(&settings.ca, &ca_certs)?;

    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|source| TlsError::Config {
            step: "protocol versions",
            source,
        })?
        .with_root_certificates(roots);

    let mut config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = load_certs(cert_path)?;
            let key = load_private_key(key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| match source {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        TlsError::KeyMismatch {
                            cert: cert_path.clone(),
                            key: key_path.clone(),
                        }
                    }
                    source => TlsError::BadPrivateKey {
                        path: key_path.clone(),
                        source,
                    },
                })?
        }
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];

    Ok((Arc::new(config), server_name))
}

#[cfg(test)]
mod tests;
