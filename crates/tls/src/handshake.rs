//! Sorting failed client handshakes into a small, fixed set of reasons.
//!
//! Owns the mapping from the error tokio-rustls returns to [`HandshakeFailure`], whose
//! [`HandshakeFailure::as_str`] values are bounded metric labels. It does not log or count
//! anything itself; the proxy does, with the full error in the log.

use std::fmt;

use rustls::{AlertDescription, CertificateError, PeerIncompatible};

/// Why a client handshake failed, coarse enough to be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client sent no certificate although one is required.
    NoClientCertificate,
    /// The client certificate does not chain to a configured client CA.
    UnknownIssuer,
    /// The client certificate's notAfter has passed.
    Expired,
    /// The client certificate's notBefore lies in the future.
    NotYetValid,
    /// The client certificate is listed in a configured CRL.
    Revoked,
    /// Any other problem with the client certificate (bad signature, wrong purpose, unknown
    /// revocation status, expired CRL, malformed encoding, ...).
    BadCertificate,
    /// The client offered no protocol version this server accepts (below TLS 1.2).
    ProtocolVersion,
    /// The client did not negotiate ALPN `postgresql` where it is required; decided by the
    /// proxy after the handshake, or by rustls when the client offered only other protocols.
    NoAlpn,
    /// The connection failed underneath TLS (reset, closed early, timed out).
    Io,
    /// Any other TLS failure (malformed messages, no common cipher suite, decrypt errors, ...).
    Other,
}

impl HandshakeFailure {
    /// A stable lowercase label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::BadCertificate => "bad_certificate",
            Self::ProtocolVersion => "protocol_version",
            Self::NoAlpn => "no_alpn",
            Self::Io => "io",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies the error of a failed `TlsAcceptor::accept` (or `connect`).
///
/// tokio-rustls wraps the `rustls::Error` of a failed handshake in an `io::Error`; an error
/// without a rustls error inside is a transport failure and becomes [`HandshakeFailure::Io`].
pub fn classify_handshake_error(err: &std::io::Error) -> HandshakeFailure {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return HandshakeFailure::Io;
    };
    classify_rustls_error(tls)
}

fn classify_rustls_error(err: &rustls::Error) -> HandshakeFailure {
    match err {
        rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
        rustls::Error::InvalidCertificate(cert) => classify_certificate_error(cert),
        rustls::Error::PeerIncompatible(incompatible) if is_version_problem(incompatible) => {
            HandshakeFailure::ProtocolVersion
        }
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => {
            HandshakeFailure::ProtocolVersion
        }
        rustls::Error::NoApplicationProtocol
        | rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
            HandshakeFailure::NoAlpn
        }
        _ => HandshakeFailure::Other,
    }
}

fn classify_certificate_error(err: &CertificateError) -> HandshakeFailure {
    match err {
        CertificateError::UnknownIssuer => HandshakeFailure::UnknownIssuer,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            HandshakeFailure::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            HandshakeFailure::NotYetValid
        }
        CertificateError::Revoked => HandshakeFailure::Revoked,
        _ => HandshakeFailure::BadCertificate,
    }
}

fn is_version_problem(err: &PeerIncompatible) -> bool {
    matches!(
        err,
        PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn wrapped(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn rustls_errors_inside_io_errors_are_unwrapped() {
        let cases = [
            (
                rustls::Error::NoCertificatesPresented,
                HandshakeFailure::NoClientCertificate,
            ),
            (
                CertificateError::UnknownIssuer.into(),
                HandshakeFailure::UnknownIssuer,
            ),
            (CertificateError::Expired.into(), HandshakeFailure::Expired),
            (
                CertificateError::NotValidYet.into(),
                HandshakeFailure::NotYetValid,
            ),
            (CertificateError::Revoked.into(), HandshakeFailure::Revoked),
            (
                CertificateError::BadSignature.into(),
                HandshakeFailure::BadCertificate,
            ),
            (
                CertificateError::UnknownRevocationStatus.into(),
                HandshakeFailure::BadCertificate,
            ),
            (
                PeerIncompatible::Tls12NotOffered.into(),
                HandshakeFailure::ProtocolVersion,
            ),
            (
                PeerIncompatible::NoCipherSuitesInCommon.into(),
                HandshakeFailure::Other,
            ),
            (
                rustls::Error::NoApplicationProtocol,
                HandshakeFailure::NoAlpn,
            ),
            (rustls::Error::DecryptError, HandshakeFailure::Other),
        ];
        for (err, expected) in cases {
            let text = format!("{err:?}");
            assert_eq!(classify_handshake_error(&wrapped(err)), expected, "{text}");
        }
    }

    #[test]
    fn transport_errors_are_io() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");

        assert_eq!(classify_handshake_error(&reset), HandshakeFailure::Io);
        assert_eq!(classify_handshake_error(&eof), HandshakeFailure::Io);
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let all = [
            HandshakeFailure::NoClientCertificate,
            HandshakeFailure::UnknownIssuer,
            HandshakeFailure::Expired,
            HandshakeFailure::NotYetValid,
            HandshakeFailure::Revoked,
            HandshakeFailure::BadCertificate,
            HandshakeFailure::ProtocolVersion,
            HandshakeFailure::NoAlpn,
            HandshakeFailure::Io,
            HandshakeFailure::Other,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|f| f.as_str()).collect();

        assert_eq!(labels.len(), all.len());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
