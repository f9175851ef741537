//! A development certificate authority: self-signed CA, server and client certificates, CRLs.
//!
//! Owns key generation and signing with rcgen (ring backend, ECDSA P-256 everywhere), the
//! certificate profiles (CA, TLS server, TLS client) and writing PEM files with safe modes.
//! It does not verify certificates and is not meant for production PKI: keys live in memory and
//! the CA has no persistence. Profiles follow RFC 5280 (basic constraints, key usage, extended
//! key usage, subject alternative names, CRL v2 with a CRL number).

use std::fmt;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

use crate::{random, DevkitError};

#[cfg(test)]
mod tests;

/// How far back a default validity period starts, so that small clock differences between the
/// machine that issues and the one that verifies do not make a fresh certificate "not yet valid".
const BACKDATE: time::Duration = time::Duration::hours(1);

/// Default lifetime of a leaf certificate: long enough for a demo session or a CI run.
const LEAF_LIFETIME: time::Duration = time::Duration::days(30);

/// Lifetime of the CA itself: longer than any default leaf issued during its use.
const CA_LIFETIME: time::Duration = time::Duration::days(365);

/// Serial numbers carry 120 random bits: RFC 5280 allows up to 20 octets, and CA/B Forum
/// practice asks for at least 64 random bits, so collisions are not a concern.
const SERIAL_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------
// Issued certificates

/// A certificate issued by a [`CertAuthority`], with its private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM encoded.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM encoded.
    pub key_pem: String,
    /// The serial number as the content octets of its DER INTEGER (big-endian, positive).
    pub serial: Vec<u8>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `<stem>.crt` (mode 0644) and `<stem>.key` (mode 0600) into `dir` and returns
    /// both paths, certificate first. Existing files are replaced.
    ///
    /// # Errors
    /// [`DevkitError::Io`] naming the file that could not be written.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), DevkitError> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        write_with_mode(&cert_path, self.cert_pem.as_bytes(), 0o644)?;
        write_with_mode(&key_path, self.key_pem.as_bytes(), 0o600)?;
        Ok((cert_path, key_path))
    }
}

/// Writes `contents` to `path`, creating it with `mode` and enforcing `mode` if it existed,
/// so a private key is never readable by others even for a moment.
pub(crate) fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), DevkitError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| DevkitError::io("creating", path, e))?;
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| DevkitError::io("setting the mode of", path, e))?;
    file.write_all(contents)
        .map_err(|e| DevkitError::io("writing", path, e))
}

// ---------------------------------------------------------------------------------------------
// Client certificate profile

/// What goes into a client certificate. Everything is optional; an empty spec gives a
/// certificate with an empty subject and no SAN, valid for the default period.
#[derive(Debug, Default, Clone)]
pub struct ClientSpec {
    /// Subject common name.
    pub common_name: Option<String>,
    /// SAN URIs, for example `spiffe://example.org/tenant/<uuid>`.
    pub san_uris: Vec<String>,
    /// SAN DNS names.
    pub san_dns: Vec<String>,
    /// More subject attributes as (name, value): `CN`, `O`, `OU`, `C`, `L`, `ST` (any case), or a
    /// dotted OID such as `2.5.4.5`. A name given twice keeps the last value.
    pub subject_attributes: Vec<(String, String)>,
    /// Start of validity; default one hour ago. Set it in the future for "not yet valid".
    pub not_before: Option<OffsetDateTime>,
    /// End of validity; default 30 days from now. Set it in the past for "expired".
    pub not_after: Option<OffsetDateTime>,
}

// ---------------------------------------------------------------------------------------------
// The authority

/// A self-signed ECDSA P-256 certificate authority held in memory.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// The last CRL number handed out; CRL numbers must increase (RFC 5280 section 5.2.3).
    last_crl_number: AtomicU64,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Creates a new CA named `common_name`, valid from one hour ago for a year.
    ///
    /// # Errors
    /// [`DevkitError::Pki`] if key generation or self-signing fails.
    pub fn new(common_name: &str) -> Result<Self, DevkitError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;
        params.serial_number = Some(random_serial()?);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(DevkitError::pki("generating the CA key"))?;
        let cert = params
            .self_signed(&key)
            .map_err(DevkitError::pki("self-signing the CA certificate"))?;
        Ok(CertAuthority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            last_crl_number: AtomicU64::new(0),
        })
    }

    /// The CA certificate, PEM encoded (what clients and servers put in their trust store).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a TLS server certificate for `names`: each entry that parses as an IP address
    /// becomes an IP SAN, every other one a DNS SAN; the first is also the subject CN.
    ///
    /// # Errors
    /// [`DevkitError::Invalid`] for an empty list or a name that is not ASCII;
    /// [`DevkitError::Pki`] if signing fails.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert, DevkitError> {
        let Some(first) = names.first() else {
            return Err(DevkitError::Invalid(
                "a server certificate needs at least one name".into(),
            ));
        };
        let mut params = leaf_params(None, None)?;
        params.distinguished_name.push(DnType::CommonName, *first);
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(ia5(name, "server DNS name")?),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, "server")
    }

    /// Issues a TLS client certificate described by `spec`.
    ///
    /// # Errors
    /// [`DevkitError::Invalid`] for an unknown attribute name, a non-ASCII SAN, or a validity
    /// period that ends before it starts; [`DevkitError::Pki`] if signing fails.
    pub fn issue_client(&self, spec: &ClientSpec) -> Result<IssuedCert, DevkitError> {
        let mut params = leaf_params(spec.not_before, spec.not_after)?;
        if let Some(cn) = &spec.common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        for (name, value) in &spec.subject_attributes {
            params
                .distinguished_name
                .push(dn_type(name)?, value.as_str());
        }
        for uri in &spec.san_uris {
            params
                .subject_alt_names
                .push(SanType::URI(ia5(uri, "SAN URI")?));
        }
        for dns in &spec.san_dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(ia5(dns, "SAN DNS name")?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, "client")
    }

    /// A PEM CRL signed by this CA that lists the serials of `revoked`, with `this_update` now
    /// and `next_update` `valid_for` later. Each call gets a larger CRL number than the last.
    ///
    /// # Errors
    /// [`DevkitError::Invalid`] if `valid_for` is zero or too large; [`DevkitError::Pki`] if
    /// signing fails.
    pub fn crl(
        &self,
        revoked: &[&IssuedCert],
        valid_for: std::time::Duration,
    ) -> Result<String, DevkitError> {
        let valid_for = time::Duration::try_from(valid_for)
            .map_err(|e| DevkitError::Invalid(format!("CRL validity {valid_for:?}: {e}")))?;
        if valid_for.is_zero() {
            return Err(DevkitError::Invalid("CRL validity must not be zero".into()));
        }
        let now = OffsetDateTime::now_utc();
        let next_update = now
            .checked_add(valid_for)
            .ok_or_else(|| DevkitError::Invalid("CRL next_update overflows".into()))?;

        let revoked_certs = revoked
            .iter()
            .map(|cert| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&cert.serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update,
            crl_number: SerialNumber::from_slice(&self.next_crl_number(now).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(DevkitError::pki("signing the CRL"))?;
        crl.pem().map_err(DevkitError::pki("encoding the CRL"))
    }

    /// Milliseconds since the epoch, bumped past the previous number when called twice within
    /// the same millisecond, so CRL numbers always increase.
    fn next_crl_number(&self, now: OffsetDateTime) -> u64 {
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let previous = self
            .last_crl_number
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(millis.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        millis.max(previous.saturating_add(1))
    }

    fn sign(&self, params: CertificateParams, kind: &str) -> Result<IssuedCert, DevkitError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(DevkitError::pki(format!("generating the {kind} key")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(DevkitError::pki(format!("signing the {kind} certificate")))?;
        let serial = params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default();
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Parameters shared by every leaf: random serial, validity, digital signature, AKI.
fn leaf_params(
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
) -> Result<CertificateParams, DevkitError> {
    let now = OffsetDateTime::now_utc();
    let not_before = not_before.unwrap_or(now - BACKDATE);
    let not_after = not_after.unwrap_or(now + LEAF_LIFETIME);
    if not_after <= not_before {
        return Err(DevkitError::Invalid(format!(
            "validity ends ({not_after}) before it starts ({not_before})"
        )));
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A positive serial with a non-zero first octet, so its DER content octets are exactly these
/// bytes (no sign padding) and [`IssuedCert::serial`] matches what parsers report.
fn random_serial() -> Result<SerialNumber, DevkitError> {
    let mut bytes = random::bytes(SERIAL_LEN, "making a certificate serial")?;
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&bytes))
}

fn ia5(value: &str, what: &str) -> Result<rcgen::string::Ia5String, DevkitError> {
    rcgen::string::Ia5String::try_from(value)
        .map_err(|e| DevkitError::Invalid(format!("{what} {value:?} is not IA5 (ASCII): {e}")))
}

/// Maps a subject attribute name (short name or dotted OID) to its rcgen type.
fn dn_type(name: &str) -> Result<DnType, DevkitError> {
    let known = match name.to_ascii_uppercase().as_str() {
        "CN" => Some(DnType::CommonName),
        "O" => Some(DnType::OrganizationName),
        "OU" => Some(DnType::OrganizationalUnitName),
        "C" => Some(DnType::CountryName),
        "L" => Some(DnType::LocalityName),
        "ST" => Some(DnType::StateOrProvinceName),
        _ => None,
    };
    if let Some(ty) = known {
        return Ok(ty);
    }
    let arcs: Result<Vec<u64>, _> = name.split('.').map(str::parse::<u64>).collect();
    match arcs {
        Ok(arcs) if arcs.len() >= 2 => Ok(DnType::CustomDnType(arcs)),
        _ => Err(DevkitError::Invalid(format!(
            "unknown subject attribute {name:?} (use CN, O, OU, C, L, ST or a dotted OID)"
        ))),
    }
}
