//! Validity dates of loaded TLS material, for expiry metrics and alerts: when the earliest
//! certificate in a bundle expires, and when the earliest CRL must be replaced.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;

use crate::error::TlsError;
use crate::load::load_certs;

/// The earliest `notAfter` of the certificates in a PEM file.
///
/// # Errors
/// An unreadable file, no certificate, or a certificate that does not parse.
pub fn earliest_expiry(path: &Path) -> Result<SystemTime, TlsError> {
    let mut earliest: Option<SystemTime> = None;
    for der in load_certs(path)? {
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::Dates {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let at = from_unix(cert.validity().not_after.timestamp());
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest.ok_or_else(|| TlsError::Dates {
        path: path.to_path_buf(),
        detail: "no certificate".into(),
    })
}

/// The earliest `nextUpdate` of the CRLs in the files; `None` when there are no CRLs or none
/// carries a next update.
///
/// # Errors
/// An unreadable file or a CRL that does not parse.
pub fn crl_next_update(paths: &[impl AsRef<Path>]) -> Result<Option<SystemTime>, TlsError> {
    let mut earliest: Option<SystemTime> = None;
    for path in paths {
        let path = path.as_ref();
        let dates_err = |detail: String| TlsError::Dates {
            path: path.to_path_buf(),
            detail,
        };
        let crls = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| dates_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| dates_err(e.to_string()))?;
        for crl in crls {
            let (_, parsed) =
                x509_parser::parse_x509_crl(&crl).map_err(|e| dates_err(e.to_string()))?;
            if let Some(next) = parsed.next_update() {
                let at = from_unix(next.timestamp());
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
    }
    Ok(earliest)
}

fn from_unix(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}
