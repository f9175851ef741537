//! `tls-server-end-point` channel-binding data (RFC 5929 section 4.1), used by SCRAM-SHA-256-PLUS
//! towards the upstream server.
//!
//! Owns only the hash of the server's leaf certificate. Choosing whether to use channel binding,
//! and the SCRAM exchange itself, belong to the upstream crate.

use ring::digest;
use x509_parser::signature_algorithm::SignatureAlgorithm;

use crate::{nom_to_x509, TlsError};

/// Signature algorithm OIDs whose hash RFC 5929 section 4.1 prescribes, with that hash.
/// MD5 and SHA-1 signatures are hashed with SHA-256, as the RFC requires.
const HASH_BY_SIGNATURE: &[(&str, HashKind)] = &[
    ("1.2.840.113549.1.1.4", HashKind::Sha256), // md5WithRSAEncryption
    ("1.2.840.113549.1.1.5", HashKind::Sha256), // sha1WithRSAEncryption
    ("1.2.840.113549.1.1.11", HashKind::Sha256), // sha256WithRSAEncryption
    ("1.2.840.113549.1.1.12", HashKind::Sha384), // sha384WithRSAEncryption
    ("1.2.840.113549.1.1.13", HashKind::Sha512), // sha512WithRSAEncryption
    ("1.2.840.10045.4.1", HashKind::Sha256),    // ecdsa-with-SHA1
    ("1.2.840.10045.4.3.2", HashKind::Sha256),  // ecdsa-with-SHA256
    ("1.2.840.10045.4.3.3", HashKind::Sha384),  // ecdsa-with-SHA384
    ("1.2.840.10045.4.3.4", HashKind::Sha512),  // ecdsa-with-SHA512
    ("1.2.840.10040.4.3", HashKind::Sha256),    // dsa-with-sha1
    ("2.16.840.1.101.3.4.3.2", HashKind::Sha256), // dsa-with-sha256
];

/// Hash OIDs that may appear inside RSASSA-PSS parameters.
const HASH_BY_OID: &[(&str, HashKind)] = &[
    ("1.3.14.3.2.26", HashKind::Sha256), // SHA-1, upgraded as for plain signatures
    ("2.16.840.1.101.3.4.2.1", HashKind::Sha256),
    ("2.16.840.1.101.3.4.2.2", HashKind::Sha384),
    ("2.16.840.1.101.3.4.2.3", HashKind::Sha512),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Sha256,
    Sha384,
    Sha512,
}

impl HashKind {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }
}

/// The `tls-server-end-point` channel-binding data for a server leaf certificate (DER): its
/// hash under the certificate's signature hash algorithm, SHA-256 for MD5 and SHA-1.
///
/// # Errors
/// [`TlsError::Certificate`] if the DER does not parse, and
/// [`TlsError::UnsupportedSignatureAlgorithm`] if the signature algorithm has no single hash
/// function (Ed25519, for example); the caller should then not offer SCRAM-PLUS.
pub fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|err| TlsError::Certificate(nom_to_x509(err)))?;
    let algorithm = &cert.signature_algorithm;
    let oid = algorithm.algorithm.to_id_string();

    let kind = match lookup(HASH_BY_SIGNATURE, &oid) {
        Some(kind) => kind,
        // RSASSA-PSS names its hash in the parameters (RFC 4055), SHA-1 when absent.
        None => match SignatureAlgorithm::try_from(algorithm) {
            Ok(SignatureAlgorithm::RSASSA_PSS(params)) => {
                let hash_oid = params.hash_algorithm_oid().to_id_string();
                lookup(HASH_BY_OID, &hash_oid)
                    .ok_or(TlsError::UnsupportedSignatureAlgorithm { oid: hash_oid })?
            }
            _ => return Err(TlsError::UnsupportedSignatureAlgorithm { oid }),
        },
    };

    Ok(digest::digest(kind.algorithm(), cert_der).as_ref().to_vec())
}

fn lookup(table: &[(&str, HashKind)], oid: &str) -> Option<HashKind> {
    table.iter().find(|(o, _)| *o == oid).map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpki::Pki;

    #[test]
    fn ecdsa_sha256_certificate_hashes_with_sha256() {
        let pki = Pki::with_alg(&rcgen::PKCS_ECDSA_P256_SHA256, "p256 CA");
        let leaf = pki.server(&["db.example"]);

        let data = tls_server_end_point(&leaf.cert_der).expect("supported algorithm");

        let expected = digest::digest(&digest::SHA256, &leaf.cert_der);
        assert_eq!(data, expected.as_ref());
        assert_eq!(data.len(), 32);
    }

    #[test]
    fn ecdsa_sha384_certificate_hashes_with_sha384() {
        // The leaf's signature algorithm is the issuer's: a P-384 CA signs with SHA-384.
        let pki = Pki::with_alg(&rcgen::PKCS_ECDSA_P384_SHA384, "p384 CA");
        let leaf = pki.server(&["db.example"]);

        let data = tls_server_end_point(&leaf.cert_der).expect("supported algorithm");

        let expected = digest::digest(&digest::SHA384, &leaf.cert_der);
        assert_eq!(data, expected.as_ref());
        assert_eq!(data.len(), 48);
    }

    #[test]
    fn ed25519_certificate_has_no_end_point_hash() {
        let pki = Pki::with_alg(&rcgen::PKCS_ED25519, "ed25519 CA");
        let leaf = pki.server(&["db.example"]);

        let err = tls_server_end_point(&leaf.cert_der).expect_err("Ed25519 has no hash");

        assert!(
            matches!(&err, TlsError::UnsupportedSignatureAlgorithm { oid } if oid == "1.3.101.112"),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = tls_server_end_point(b"\x30\x03\x02\x01").expect_err("not a certificate");
        assert!(matches!(err, TlsError::Certificate(_)), "{err:?}");
    }
}
