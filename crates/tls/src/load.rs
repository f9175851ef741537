//! Reading certificates, private keys and CRLs from files.
//!
//! Owns the turn from a path into DER values, with errors that name the file and say what is
//! wrong with it. PEM decoding is `rustls_pki_types::pem` (RFC 7468); whether the material is
//! valid for a purpose (trust anchor, key match, CRL signature) is checked by the callers.

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::TlsError;

/// First byte of a DER SEQUENCE: a CRL file without PEM armour starts with it.
const DER_SEQUENCE_TAG: u8 = 0x30;

/// Reads every `CERTIFICATE` block of a PEM file, in file order (leaf first for a chain).
///
/// # Errors
/// [`TlsError::Read`] if the file cannot be read, [`TlsError::Pem`] if it is malformed PEM and
/// [`TlsError::NoCertificate`] if it holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;

    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pem_error(path, source))?;

    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
///
/// # Errors
/// [`TlsError::Read`] if the file cannot be read, [`TlsError::Pem`] if it is malformed PEM and
/// [`TlsError::NoPrivateKey`] if it holds no private key.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;

    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey {
            path: path.to_owned(),
        }),
        Err(source) => Err(pem_error(path, source)),
    }
}

/// Reads every CRL of a file: `X509 CRL` PEM blocks, or one bare DER CRL.
///
/// Only the framing is checked here; the CRL's content is parsed by the verifier builder.
pub(crate) fn load_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;

    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pem_error(path, source))?;
    if !crls.is_empty() {
        return Ok(crls);
    }

    if bytes.first() == Some(&DER_SEQUENCE_TAG) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Err(TlsError::NoCrl {
        path: path.to_owned(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, source: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpki::{Pki, TempDir};

    #[test]
    fn certs_and_key_round_trip_from_pem_files() {
        let dir = TempDir::new();
        let pki = Pki::new();
        let client = pki.client("alice");
        let cert_path = dir.write(
            "client.crt",
            &format!("{}{}", client.cert_pem, pki.ca_pem()),
        );
        let key_path = dir.write("client.key", &client.key_pem);

        let certs = load_certs(&cert_path).expect("certificates load");
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), client.cert_der.as_slice());

        let key = load_private_key(&key_path).expect("key loads");
        assert_eq!(key.secret_der(), client.key_der.as_slice());
    }

    #[test]
    fn missing_file_is_named() {
        let dir = TempDir::new();
        let path = dir.path().join("absent.pem");

        let err = load_certs(&path).expect_err("a missing file cannot load");

        assert!(matches!(&err, TlsError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound));
        assert!(err.to_string().contains("absent.pem"), "{err}");
    }

    #[test]
    fn pem_without_certificate_is_named() {
        let dir = TempDir::new();
        let pki = Pki::new();
        let empty = dir.write("empty.pem", "");
        let only_key = dir.write("only-key.pem", &pki.client("bob").key_pem);

        for path in [empty, only_key] {
            let err = load_certs(&path).expect_err("no certificate in file");
            assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn pem_without_key_is_named() {
        let dir = TempDir::new();
        let pki = Pki::new();
        let path = dir.write("cert-only.pem", &pki.ca_pem());

        let err = load_private_key(&path).expect_err("no key in file");

        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert!(err.to_string().contains("cert-only.pem"), "{err}");
    }

    #[test]
    fn broken_pem_is_reported_as_pem_error() {
        let dir = TempDir::new();
        let path = dir.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");

        let err = load_certs(&path).expect_err("unterminated section");

        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    #[test]
    fn crls_load_from_pem_and_der() {
        let dir = TempDir::new();
        let pki = Pki::new();
        let crl = pki.crl(&[7], time::Duration::days(7));
        let pem_path = dir.write("list.crl.pem", &crl.pem);
        let der_path = dir.write_bytes("list.crl", &crl.der);
        let junk_path = dir.write("junk.crl", "not a crl\n");

        assert_eq!(
            load_crls(&pem_path).expect("PEM CRL")[0].as_ref(),
            crl.der.as_slice()
        );
        assert_eq!(
            load_crls(&der_path).expect("DER CRL")[0].as_ref(),
            crl.der.as_slice()
        );
        let err = load_crls(&junk_path).expect_err("no CRL");
        assert!(matches!(err, TlsError::NoCrl { .. }), "{err:?}");
    }
}
