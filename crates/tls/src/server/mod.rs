//! The client-facing TLS server configuration: mutual TLS with a required, CA-verified and
//! revocation-checked client certificate.
//!
//! Owns turning [`ServerTlsSettings`] into a rustls `ServerConfig`. It does not own the
//! SSLRequest / direct-TLS negotiation, the ALPN enforcement for direct TLS (rustls accepts a
//! client that offers no ALPN at all, so the proxy must check `alpn_protocol()`), nor
//! certificate reloading; those live in the proxy crate.

mod crl;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::load::{load_certs, load_private_key};
use crate::{ring_provider, TlsError, ALPN_POSTGRESQL, PROTOCOL_VERSIONS};

/// Resumable client sessions kept per configuration. Each entry holds the client's
/// certificate (about 1-2 KiB), so this bounds the cache near 10 MiB while covering several
/// thousand returning clients; the oldest entries make way for new ones.
const SESSION_CACHE_ENTRIES: usize = 8192;

/// Files that make up the client-facing mTLS configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// PEM certificate chain of the proxy, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf in `cert`.
    pub key: PathBuf,
    /// PEM bundle of the CA certificates that client certificates must chain to.
    pub client_ca: PathBuf,
    /// CRL files (PEM `X509 CRL` blocks or one DER CRL each) issued by the client CAs.
    pub crls: Vec<PathBuf>,
}

/// Builds the server configuration for client connections.
///
/// The configuration uses the ring provider, TLS 1.2 and 1.3 with rustls' default suites (all
/// AEAD with ECDHE key exchange), offers ALPN `postgresql`, and requires a client certificate
/// that chains to `client_ca`. When CRLs are given, the leaf's revocation status is checked
/// against them; a leaf whose status they cannot tell, or a CRL past its nextUpdate, is refused.
/// Every call builds a fresh session cache, so a rebuilt configuration does not resume sessions
/// that were established under an older CRL.
///
/// # Errors
/// A [`TlsError`] naming the file at fault: unreadable, no certificate or key in it, a
/// certificate that is not valid X.509, a key that does not match the certificate, an unusable
/// CA certificate, or a CRL that does not parse, comes from another issuer or has expired.
pub fn server_config(settings: &ServerTlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = ring_provider();

    let chain = load_certs(&settings.cert)?;
    let key = load_private_key(&settings.key)?;
    let certified = certified_key(chain, key, settings, &provider)?;

    let ca_certs = load_certs(&settings.client_ca)?;
    let roots = Arc::new(root_store(&settings.client_ca, &ca_certs)?);
    let crls = crl::load_checked_crls(&settings.crls, &roots, &ca_certs, &provider)?;
    let verifier = client_verifier(roots, crls, &provider)?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|source| TlsError::Config {
            step: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // Returning clients (a pod's driver reconnecting, pool refills) resume instead of paying
    // for a full handshake with certificate verification. Stateful resumption keeps the
    // sessions here, bounded, and dies with this configuration, so a reload with a new CA or
    // CRL resumes nothing from before it.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);

    tracing::debug!(
        cert = %settings.cert.display(),
        client_ca = %settings.client_ca.display(),
        crl_files = settings.crls.len(),
        "built client-facing TLS configuration"
    );
    Ok(Arc::new(config))
}

/// The verifier that makes a client certificate mandatory and checks it against `roots` and
/// `crls`.
///
/// Revocation is checked for the end-entity certificate only, since CRLs here are issued by
/// the client CAs for the certificates they sign. An unknown revocation status stays an error
/// (rustls' default) so that a missing CRL cannot pass for "not revoked", and an expired CRL is
/// refused so that a stale list cannot hide recent revocations.
pub(crate) fn client_verifier(
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider))
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration()
        .build()
        .map_err(TlsError::Verifier)
}

/// Pairs the chain with its key and checks that the key belongs to the leaf.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    settings: &ServerTlsSettings,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    // rustls keeps certificates as opaque DER until a handshake; decode each one now so that
    // garbage inside a well-formed PEM block is blamed on the certificate file, not on the key
    // (the key-match check below would fail on it with a less precise error).
    for cert in &chain {
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|err| {
            TlsError::BadCertificate {
                path: settings.cert.clone(),
                source: crate::nom_to_x509(err),
            }
        })?;
    }

    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadPrivateKey {
            path: settings.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);

    match certified.keys_match() {
        // ring can derive the public key of every key type it loads, so Unknown does not occur
        // with it; should it, the handshake itself would still fail on a wrong key.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: settings.cert.clone(),
                key: settings.key.clone(),
            })
        }
        Err(source) => Err(TlsError::BadPrivateKey {
            path: settings.key.clone(),
            source,
        }),
    }
}

/// A root store with every certificate of the bundle as a trust anchor.
pub(crate) fn root_store(
    path: &Path,
    certs: &[CertificateDer<'static>],
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|source| TlsError::BadCaCertificate {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;
