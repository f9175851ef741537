//! Error types of this crate: [`TlsError`] for building configurations and reading key
//! material, [`IdentityError`] for reading a client identity out of a verified certificate.
//!
//! Every variant that concerns a file names the file; every variant caused by another library
//! keeps that library's error as its source. Neither type carries key material or certificate
//! values, so both are safe to log in full.

use std::path::PathBuf;

use x509_parser::error::X509Error;

/// Why a TLS configuration, a piece of key material or a channel-binding value could not be
/// built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate's or CRL's dates could not be read.
    #[error("cannot read validity dates from {path}: {detail}")]
    Dates {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// The file could not be read at all (missing, unreadable, a directory, ...).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The file is not well-formed PEM.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The offending file.
        path: PathBuf,
        /// What the PEM reader found wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// The file holds no `CERTIFICATE` block.
    #[error("{} contains no PEM certificate", path.display())]
    NoCertificate {
        /// The offending file.
        path: PathBuf,
    },

    /// The file holds no PKCS#8, PKCS#1 or SEC1 private key block.
    #[error("{} contains no PEM private key", path.display())]
    NoPrivateKey {
        /// The offending file.
        path: PathBuf,
    },

    /// A certificate of the file is PEM-framed but its content is not a DER X.509
    /// certificate.
    #[error("certificate in {} cannot be parsed as X.509", path.display())]
    BadCertificate {
        /// The certificate file.
        path: PathBuf,
        /// The X.509 parser's reason.
        #[source]
        source: X509Error,
    },

    /// The private key was found but the crypto provider cannot use it.
    #[error("private key in {} is not usable", path.display())]
    BadPrivateKey {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },

    /// The private key does not belong to the first certificate of the chain.
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },

    /// A certificate of a CA bundle cannot serve as a trust anchor.
    #[error("CA certificate in {} is not usable as a trust anchor", path.display())]
    BadCaCertificate {
        /// The CA bundle.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },

    /// The file holds no `X509 CRL` block (and is not a DER CRL either).
    #[error("{} contains no certificate revocation list", path.display())]
    NoCrl {
        /// The offending file.
        path: PathBuf,
    },

    /// A CRL in the file could not be parsed.
    #[error("certificate revocation list in {} cannot be parsed", path.display())]
    BadCrl {
        /// The offending file.
        path: PathBuf,
        /// The parser's reason (webpki's, or x509-parser's for the issuer and dates).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A CRL in the file was not issued by any of the client CA certificates, so it could never
    /// apply to a client certificate.
    #[error("certificate revocation list in {} is not issued by a client CA", path.display())]
    CrlIssuerUnknown {
        /// The offending file.
        path: PathBuf,
    },

    /// A CRL's nextUpdate lies in the past: the list is stale and must be renewed.
    #[error("certificate revocation list in {} expired (nextUpdate {next_update})", path.display())]
    CrlExpired {
        /// The offending file.
        path: PathBuf,
        /// The nextUpdate time as written in the CRL.
        next_update: String,
    },

    /// The client certificate verifier could not be built from the CA bundle and CRLs.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),

    /// rustls refused a configuration step (named in `step`).
    #[error("TLS configuration failed at {step}")]
    Config {
        /// The step that failed, for example "protocol versions".
        step: &'static str,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },

    /// The upstream server name is neither a DNS name nor an IP address.
    #[error("invalid upstream server name {name:?}")]
    InvalidServerName {
        /// The name from the settings.
        name: String,
        /// Why it is not a valid name.
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },

    /// An identity pattern is not a valid regular expression.
    #[error("invalid identity pattern {pattern:?}")]
    InvalidPattern {
        /// The pattern from the settings.
        pattern: String,
        /// The regex compiler's reason.
        #[source]
        source: regex::Error,
    },

    /// A subject attribute is neither a known short name nor a dotted OID.
    #[error("unknown subject attribute {name:?} (use a short name such as OU or a dotted OID)")]
    UnknownAttribute {
        /// The name from the settings.
        name: String,
    },

    /// A certificate could not be parsed as X.509.
    #[error("certificate cannot be parsed")]
    Certificate(#[source] X509Error),

    /// The certificate's signature algorithm has no defined tls-server-end-point hash, so
    /// channel binding is not possible with it.
    #[error("no tls-server-end-point hash for signature algorithm {oid}")]
    UnsupportedSignatureAlgorithm {
        /// The signature algorithm OID in dotted form.
        oid: String,
    },
}

/// Why no usable identity could be read from a verified client certificate.
///
/// Messages name the source that was searched but never the certificate's values, which may
/// be attacker-chosen text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The leaf certificate is not parseable X.509.
    #[error("client certificate cannot be parsed")]
    Certificate(#[source] X509Error),

    /// No value of the searched source matched the identity pattern.
    #[error("no {searched} of the client certificate matches the identity pattern")]
    NoMatch {
        /// The source that was searched, for example "SAN URI".
        searched: String,
    },

    /// Several values matched and gave different identities.
    #[error("{count} different identities match in the {searched} of the client certificate")]
    Ambiguous {
        /// The source that was searched.
        searched: String,
        /// How many distinct identities were found.
        count: usize,
    },

    /// The matched identity is empty.
    #[error("identity from the {searched} of the client certificate is empty")]
    Empty {
        /// The source that was searched.
        searched: String,
    },

    /// The matched identity is longer than [`crate::MAX_IDENTITY_LEN`] bytes.
    #[error("identity from the {searched} of the client certificate is {len} bytes long")]
    TooLong {
        /// The source that was searched.
        searched: String,
        /// The identity's length in bytes.
        len: usize,
    },

    /// The matched identity contains a NUL or another control character.
    #[error("identity from the {searched} of the client certificate has a control character")]
    ControlCharacter {
        /// The source that was searched.
        searched: String,
    },
}

impl IdentityError {
    /// A short stable label for metrics: `no_match`, `ambiguous`, `invalid` or `unparsable`.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::NoMatch { .. } => "no_match",
            IdentityError::Ambiguous { .. } => "ambiguous",
            IdentityError::Certificate(_) => "unparsable",
            _ => "invalid",
        }
    }
}
