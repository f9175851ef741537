//! Every error pgcordon reports to a client, mapped in one place to its SQLSTATE, its severity
//! (ERROR keeps the session, FATAL precedes a close) and a client-safe message. The message never
//! names upstream hosts, users or key material; the log line gets the full cause.

use bytes::BytesMut;
use pgcordon_wire::server::{error_response, Severity};

/// A refusal or failure to report to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Plaintext StartupMessage on a listener that requires mTLS.
    TlsRequired,
    /// The certificate verified but carries no usable identity (why, and a metric label).
    NoIdentity(String, &'static str),
    /// The certificate of a resumed TLS session expired after its full handshake.
    CertificateExpired,
    /// The client asked for a database that is not configured.
    UnknownDatabase(String),
    /// A startup parameter we do not pass through.
    UnsupportedStartupParameter(String),
    /// A client encoding whose characters can hide ASCII quote or backslash bytes.
    UnsupportedEncoding(String),
    /// The server reported an unsafe client_encoding the guard did not see being set.
    EncodingChanged(String),
    /// A startup `options` value that touches a protected setting.
    ProtectedStartupOption(String),
    /// A malformed or out-of-sequence message.
    Protocol(String),
    /// A message over the frame limit.
    FrameTooLarge(String),
    /// The statement guard refused a statement.
    Guard(String),
    /// A protocol feature not supported in the current pooling mode.
    NotSupported(String),
    /// A Parse of a statement name the client already uses (42P05).
    DuplicateStatement(String),
    /// A Bind, Describe or Execute of a statement the client never prepared (26000).
    UnknownStatement(String),
    /// No backend became free in time.
    PoolTimeout,
    /// A backend could not be opened (upstream down, authentication failed).
    UpstreamUnavailable,
    /// The backend session failed while serving the client.
    UpstreamLost(String),
    /// The proxy is shutting down.
    Shutdown,
    /// Too many client connections.
    TooManyConnections,
    /// Too many concurrent sessions of this identity.
    TooManyForIdentity,
    /// Idle between transactions past `limits.client_idle_timeout`.
    IdleSessionTimeout,
    /// Idle inside a transaction past `limits.idle_in_transaction_timeout`.
    IdleInTransactionTimeout,
    /// A write (or an unproven read) while the primary's health check finds it in recovery;
    /// names the primary. Writes are refused, never sent to another target.
    PrimaryInRecovery(String),
}

impl ClientError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ClientError::TlsRequired
            | ClientError::NoIdentity(..)
            | ClientError::CertificateExpired => "28000",
            ClientError::UnknownDatabase(_) => "3D000",
            ClientError::UnsupportedStartupParameter(_)
            | ClientError::NotSupported(_)
            | ClientError::UnsupportedEncoding(_)
            | ClientError::EncodingChanged(_) => "0A000",
            ClientError::ProtectedStartupOption(_) | ClientError::Guard(_) => "42501",
            ClientError::Protocol(_) | ClientError::FrameTooLarge(_) => "08P01",
            ClientError::DuplicateStatement(_) => "42P05",
            ClientError::UnknownStatement(_) => "26000",
            ClientError::PoolTimeout
            | ClientError::TooManyConnections
            | ClientError::TooManyForIdentity => "53300",
            ClientError::IdleSessionTimeout => "57P05",
            ClientError::IdleInTransactionTimeout => "25P03",
            ClientError::PrimaryInRecovery(_) => "25006",
            ClientError::UpstreamUnavailable => "08001",
            ClientError::UpstreamLost(_) => "08006",
            ClientError::Shutdown => "57P01",
        }
    }

    /// Whether the session ends after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ClientError::Guard(_)
                | ClientError::NotSupported(_)
                | ClientError::DuplicateStatement(_)
                | ClientError::UnknownStatement(_)
                | ClientError::UnsupportedEncoding(_)
                | ClientError::PoolTimeout
                | ClientError::UpstreamUnavailable
                | ClientError::PrimaryInRecovery(_)
        )
    }

    pub fn message(&self) -> String {
        match self {
            ClientError::TlsRequired => {
                "pgcordon requires TLS with a client certificate; connect with sslmode=require \
                 (or stronger) and sslcert/sslkey"
                    .into()
            }
            ClientError::CertificateExpired => "the client certificate has expired".into(),
            ClientError::NoIdentity(why, _) => {
                format!("client certificate does not carry an acceptable identity: {why}")
            }
            ClientError::UnknownDatabase(db) => format!("database \"{db}\" does not exist"),
            ClientError::UnsupportedStartupParameter(name) => {
                format!("startup parameter \"{name}\" is not supported by pgcordon")
            }
            ClientError::UnsupportedEncoding(name) => format!(
                "client_encoding \"{name}\" is not supported by pgcordon: its multi-byte \
                 characters can contain quote and backslash bytes; use UTF8"
            ),
            ClientError::EncodingChanged(name) => format!(
                "the session's client_encoding became \"{name}\", whose multi-byte characters \
                 can contain quote and backslash bytes; pgcordon closed the session"
            ),
            ClientError::ProtectedStartupOption(name) => {
                format!("setting \"{name}\" is managed by pgcordon and cannot be set by the client")
            }
            ClientError::Protocol(detail) => format!("protocol violation: {detail}"),
            ClientError::FrameTooLarge(detail) => format!("message too large: {detail}"),
            ClientError::Guard(message) | ClientError::NotSupported(message) => message.clone(),
            ClientError::DuplicateStatement(name) => {
                format!("prepared statement \"{name}\" already exists")
            }
            ClientError::UnknownStatement(name) => {
                format!("prepared statement \"{name}\" does not exist")
            }
            ClientError::PoolTimeout => {
                "pgcordon: no database session became available in time (pool exhausted)".into()
            }
            ClientError::UpstreamUnavailable => {
                "pgcordon: could not open a session to the database".into()
            }
            ClientError::UpstreamLost(detail) => {
                format!("pgcordon: the database session was lost: {detail}")
            }
            ClientError::Shutdown => "pgcordon is shutting down".into(),
            ClientError::PrimaryInRecovery(name) => format!(
                "pgcordon: the primary \"{name}\" is in recovery (read-only, a standby); this \
                 transaction needs the primary, and writes are never sent anywhere else"
            ),
            ClientError::TooManyConnections => "pgcordon: too many client connections".into(),
            ClientError::TooManyForIdentity => {
                "pgcordon: too many connections for this client identity".into()
            }
            ClientError::IdleSessionTimeout => {
                "terminating connection due to idle-session timeout (pgcordon)".into()
            }
            ClientError::IdleInTransactionTimeout => {
                "terminating connection due to idle-in-transaction timeout (pgcordon); the \
                 transaction was rolled back"
                    .into()
            }
        }
    }

    /// Appends the ErrorResponse for this error to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let severity = if self.is_fatal() {
            Severity::Fatal
        } else {
            Severity::Error
        };
        error_response(out, severity, self.sqlstate(), &self.message(), None, None);
    }

    /// Appends this error as FATAL, whatever its usual severity: before the session exists (at
    /// startup) every error ends the connection, as the server reports it.
    pub fn write_fatal(&self, out: &mut BytesMut) {
        error_response(
            out,
            Severity::Fatal,
            self.sqlstate(),
            &self.message(),
            None,
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgcordon_wire::{decode_frame, inspect::error_fields};

    #[test]
    fn each_error_has_the_documented_code_and_severity() {
        let cases = [
            (ClientError::TlsRequired, "28000", true),
            (ClientError::UnknownDatabase("x".into()), "3D000", true),
            (ClientError::Guard("no".into()), "42501", false),
            (ClientError::PoolTimeout, "53300", false),
            (ClientError::UnknownStatement("s1".into()), "26000", false),
            (ClientError::UpstreamLost("gone".into()), "08006", true),
            (ClientError::Protocol("bad".into()), "08P01", true),
        ];
        for (err, code, fatal) in cases {
            let mut out = BytesMut::new();
            err.write(&mut out);
            let msg = decode_frame(&mut out, 1 << 16).unwrap().unwrap();
            let fields = error_fields(msg.body());
            assert_eq!(fields.code.as_deref(), Some(code), "{err:?}");
            let severity = if fatal { "FATAL" } else { "ERROR" };
            assert_eq!(fields.severity.as_deref(), Some(severity), "{err:?}");
        }
    }
}
