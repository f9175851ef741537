//! Checking certificate revocation lists before they go into the client verifier.
//!
//! rustls parses CRLs when the verifier is built but reports a failure without saying which
//! file it came from, and it accepts a CRL that can never apply (foreign issuer) or that is
//! already stale. Each file is therefore checked on its own here: it must parse with webpki
//! (the parser that later enforces it), be issued by one of the client CA certificates, and
//! not be past its nextUpdate (RFC 5280 section 5.1.2.5).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::time::ASN1Time;

use crate::load::load_crls;
use crate::{nom_to_x509, TlsError};

/// Loads and checks every CRL file, returning all their CRLs for the verifier.
pub(super) fn load_checked_crls(
    paths: &[impl AsRef<Path>],
    roots: &Arc<RootCertStore>,
    ca_certs: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let ca_subjects = ca_subjects(ca_certs)?;
    let mut all = Vec::new();

    for path in paths {
        let path = path.as_ref();
        let crls = load_crls(path)?;

        // webpki is the parser that enforces the CRL later; ask it first, one file at a time,
        // so that its complaint can name the file.
        WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(provider))
            .with_crls(crls.iter().cloned())
            .build()
            .map_err(|err| bad_crl(path, err))?;

        for crl in &crls {
            check_issuer_and_freshness(path, crl, &ca_subjects)?;
        }
        all.extend(crls);
    }
    Ok(all)
}

/// Raw DER subject names of the CA certificates, to compare CRL issuers against byte for
/// byte (the comparison webpki itself makes).
fn ca_subjects(ca_certs: &[CertificateDer<'static>]) -> Result<Vec<Vec<u8>>, TlsError> {
    ca_certs
        .iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|err| TlsError::Certificate(nom_to_x509(err)))?;
            Ok(cert.subject().as_raw().to_vec())
        })
        .collect()
}

fn check_issuer_and_freshness(
    path: &Path,
    crl: &CertificateRevocationListDer<'_>,
    ca_subjects: &[Vec<u8>],
) -> Result<(), TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_crl(crl).map_err(|err| bad_crl(path, nom_to_x509(err)))?;

    // A CRL from another issuer never matches a client certificate; with revocation status
    // "unknown" refused, it would silently lock out every client instead.
    let issuer = parsed.issuer().as_raw();
    if !ca_subjects
        .iter()
        .any(|subject| subject.as_slice() == issuer)
    {
        return Err(TlsError::CrlIssuerUnknown {
            path: path.to_owned(),
        });
    }

    // A stale list may miss recent revocations; the verifier refuses it at handshake time
    // too, but failing here tells the operator at load time.
    if let Some(next_update) = parsed.next_update() {
        if next_update.timestamp() < ASN1Time::now().timestamp() {
            return Err(TlsError::CrlExpired {
                path: path.to_owned(),
                next_update: next_update.to_string(),
            });
        }
    }
    Ok(())
}

fn bad_crl(path: &Path, err: impl std::error::Error + Send + Sync + 'static) -> TlsError {
    TlsError::BadCrl {
        path: path.to_owned(),
        source: Box::new(err),
    }
}
