//! Reading the client's identity out of its verified leaf certificate.
//!
//! Owns the identity rules (which certificate field, which pattern) and the checks that make
//! the result safe to use downstream: exactly one distinct identity, non-empty, bounded, and
//! free of control characters (it is later written into a SQL literal). It does not verify the
//! certificate; callers pass only leaves that the TLS handshake has already verified.
//!
//! X.509 fields follow RFC 5280; SPIFFE IDs are SAN URIs (`spiffe://trust-domain/path`).

mod names;

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{hex, nom_to_x509, IdentityError, TlsError};

/// The longest identity accepted, in bytes. Far above any real user name or SPIFFE ID, low
/// enough to keep audit lines and SQL literals small.
pub const MAX_IDENTITY_LEN: usize = 1024;

/// Where in the certificate the identity is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// Every common name (CN) of the subject.
    SubjectCn,
    /// Every URI of the subject alternative names (SPIFFE IDs live here).
    SanUri,
    /// Every DNS name of the subject alternative names.
    SanDns,
    /// Every value of one subject attribute, named by short name (`OU`, `O`, `UID`, ...) or by
    /// dotted OID.
    SubjectAttribute(String),
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubjectCn => f.write_str("subject CN"),
            Self::SanUri => f.write_str("SAN URI"),
            Self::SanDns => f.write_str("SAN DNS name"),
            Self::SubjectAttribute(name) => write!(f, "subject attribute {name}"),
        }
    }
}

/// A compiled identity rule: a source and a pattern.
///
/// The pattern must match a whole value (it is anchored at both ends), so a pattern written
/// for `spiffe://prod.example/...` cannot match a value that merely contains that text. The
/// identity is the pattern's first capture group, or the whole value when it has no group.
#[derive(Debug, Clone)]
pub struct IdentityRule {
    source: IdentitySource,
    /// The dotted OID for [`IdentitySource::SubjectAttribute`].
    attribute_oid: Option<String>,
    pattern: Regex,
    has_group: bool,
}

impl IdentityRule {
    /// Compiles a rule.
    ///
    /// # Errors
    /// [`TlsError::InvalidPattern`] for a pattern that is not a valid regular expression, and
    /// [`TlsError::UnknownAttribute`] for an attribute that is neither a known short name nor a
    /// dotted OID.
    pub fn new(source: IdentitySource, pattern: &str) -> Result<Self, TlsError> {
        let attribute_oid = match &source {
            IdentitySource::SubjectAttribute(name) => Some(
                names::attribute_oid(name)
                    .ok_or_else(|| TlsError::UnknownAttribute { name: name.clone() })?,
            ),
            _ => None,
        };

        let anchored = format!("^(?:{pattern})$");
        let pattern = Regex::new(&anchored).map_err(|source| TlsError::InvalidPattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        let has_group = pattern.captures_len() > 1;

        Ok(Self {
            source,
            attribute_oid,
            pattern,
            has_group,
        })
    }

    /// The source this rule searches.
    pub fn source(&self) -> &IdentitySource {
        &self.source
    }

    /// The identity this rule reads from one candidate value, if the value matches.
    fn capture<'v>(&self, value: &'v str) -> Option<&'v str> {
        let captures = self.pattern.captures(value)?;
        let group = if self.has_group {
            captures.get(1)
        } else {
            captures.get(0)
        };
        // An optional first group that did not take part in the match yields no identity.
        group.map(|m| m.as_str())
    }
}

/// Who the client is, plus the certificate facts that go into the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The identity read by the rule.
    pub identity: String,
    /// The certificate subject in RFC 4514 form.
    pub subject: String,
    /// The serial number as lowercase hex without separators or leading zero bytes.
    pub serial_hex: String,
    /// Lowercase hex of SHA-256 over the leaf's DER encoding.
    pub fingerprint_sha256: String,
    /// The certificate's notAfter.
    pub not_after: SystemTime,
}

/// Reads the identity from a verified leaf certificate (DER) by `rule`.
///
/// Every value of the rule's source is a candidate; together they must yield exactly one
/// distinct identity.
///
/// # Errors
/// [`IdentityError::Certificate`] if the DER does not parse, [`IdentityError::NoMatch`] if no
/// value matches, [`IdentityError::Ambiguous`] if values yield different identities, and
/// [`IdentityError::Empty`], [`IdentityError::TooLong`] or
/// [`IdentityError::ControlCharacter`] if a matched identity is unsafe to use.
pub fn extract_identity(
    leaf_der: &[u8],
    rule: &IdentityRule,
) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|err| IdentityError::Certificate(nom_to_x509(err)))?;

    let mut found: Vec<String> = Vec::new();
    for value in candidates(&cert, rule)? {
        let Some(identity) = rule.capture(&value) else {
            continue;
        };
        check_identity(identity, &rule.source)?;
        if !found.iter().any(|f| f == identity) {
            found.push(identity.to_owned());
        }
    }

    let searched = rule.source.to_string();
    let identity = match found.len() {
        0 => return Err(IdentityError::NoMatch { searched }),
        1 => found.remove(0),
        count => return Err(IdentityError::Ambiguous { searched, count }),
    };

    Ok(PeerIdentity {
        identity,
        subject: names::rfc4514(cert.subject()),
        serial_hex: serial_hex(cert.raw_serial()),
        fingerprint_sha256: hex(ring::digest::digest(&ring::digest::SHA256, leaf_der).as_ref()),
        not_after: system_time(cert.validity().not_after.timestamp()),
    })
}

/// Every value of the rule's source, as text. Values that are not text are left out: they can
/// never match a pattern.
fn candidates<'c>(
    cert: &'c X509Certificate<'_>,
    rule: &IdentityRule,
) -> Result<Vec<Cow<'c, str>>, IdentityError> {
    let from_subject = |oid: &str| -> Vec<Cow<'c, str>> {
        cert.subject()
            .iter_attributes()
            .filter(|attr| attr.attr_type().to_id_string() == oid)
            .filter_map(names::attribute_text)
            .map(Cow::Owned)
            .collect()
    };

    match (&rule.source, &rule.attribute_oid) {
        (IdentitySource::SubjectCn, _) => Ok(from_subject(COMMON_NAME_OID)),
        (IdentitySource::SubjectAttribute(_), Some(oid)) => Ok(from_subject(oid)),
        (IdentitySource::SubjectAttribute(_), None) => Ok(Vec::new()),
        (IdentitySource::SanUri, _) => san_values(cert, |name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        }),
        (IdentitySource::SanDns, _) => san_values(cert, |name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        }),
    }
}

const COMMON_NAME_OID: &str = "2.5.4.3";

fn san_values<'c>(
    cert: &'c X509Certificate<'_>,
    pick: impl Fn(&GeneralName<'c>) -> Option<&'c str>,
) -> Result<Vec<Cow<'c, str>>, IdentityError> {
    // A certificate with two SAN extensions is malformed (RFC 5280 section 4.2); refuse it
    // rather than pick one.
    let san = cert
        .subject_alternative_name()
        .map_err(IdentityError::Certificate)?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(pick)
        .map(Cow::Borrowed)
        .collect())
}

/// Refuses identities that could not be carried safely into logs and SQL literals.
fn check_identity(identity: &str, source: &IdentitySource) -> Result<(), IdentityError> {
    let searched = || source.to_string();
    if identity.is_empty() {
        return Err(IdentityError::Empty {
            searched: searched(),
        });
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return Err(IdentityError::TooLong {
            searched: searched(),
            len: identity.len(),
        });
    }
    // NUL would truncate a C string in libpq or PostgreSQL; other control characters could
    // forge log lines or confuse quoting.
    if identity.chars().any(char::is_control) {
        return Err(IdentityError::ControlCharacter {
            searched: searched(),
        });
    }
    Ok(())
}

/// Serial in lowercase hex, without the sign-padding zero bytes DER adds.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex(&raw[start..])
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests;
