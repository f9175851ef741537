//! Metrics, audit and readiness as the proxy reports them: the handles a session uses, and the
//! mapping of every refusal and failure to its bounded metric label, in one place.

use std::sync::Arc;

use pgcordon_admin::ReadinessFlags;
use pgcordon_audit::Audit;
use pgcordon_metrics::{
    Attempt, CertificateRefusal, IdentityRefusal, Metrics, StatementRefusal, TargetMetrics,
    TlsFailure, UpstreamAuthFailure, UpstreamConnectFailure,
};
use pgcordon_sql::RefusalReason;
use pgcordon_tls::HandshakeFailure;
use pgcordon_upstream::UpstreamError;

use crate::errors::ClientError;
use crate::handshake::HandshakeError;

/// Where the proxy reports: metrics (always), the audit trail (possibly disabled), readiness.
#[derive(Clone)]
pub struct Observability {
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub readiness: Arc<ReadinessFlags>,
}

impl Observability {
    /// Metrics on a private registry, no audit trail: for tests and tools.
    pub fn detached() -> Observability {
        Observability {
            metrics: Metrics::new(),
            audit: Audit::disabled(),
            readiness: Arc::new(ReadinessFlags::new()),
        }
    }
}

/// The attempt a handshake failure counts as; `None` for what is not a connection attempt (a
/// peer closing before TLS).
pub fn handshake_attempt(e: &HandshakeError) -> Option<Attempt> {
    let attempt = match e {
        HandshakeError::Closed => return None,
        HandshakeError::Tls { reason, .. } => tls_attempt(*reason),
        HandshakeError::NoAlpn => Attempt::TlsFailure(TlsFailure::NoAlpn),
        HandshakeError::PlaintextAfterSslRequest | HandshakeError::Plaintext => {
            Attempt::TlsFailure(TlsFailure::Plaintext)
        }
        HandshakeError::Io(_) => Attempt::TlsFailure(TlsFailure::Io),
        HandshakeError::BadPacket(_) | HandshakeError::Unexpected(_) => {
            Attempt::TlsFailure(TlsFailure::Other)
        }
    };
    Some(attempt)
}

fn tls_attempt(reason: HandshakeFailure) -> Attempt {
    use CertificateRefusal as C;
    match reason {
        HandshakeFailure::NoClientCertificate => Attempt::CertificateRefused(C::NoCertificate),
        HandshakeFailure::UnknownIssuer => Attempt::CertificateRefused(C::UnknownIssuer),
        HandshakeFailure::Expired => Attempt::CertificateRefused(C::Expired),
        HandshakeFailure::NotYetValid => Attempt::CertificateRefused(C::NotYetValid),
        HandshakeFailure::Revoked => Attempt::CertificateRefused(C::Revoked),
        HandshakeFailure::BadCertificate => Attempt::CertificateRefused(C::BadCertificate),
        HandshakeFailure::ProtocolVersion => Attempt::TlsFailure(TlsFailure::ProtocolVersion),
        HandshakeFailure::NoAlpn => Attempt::TlsFailure(TlsFailure::NoAlpn),
        HandshakeFailure::Io => Attempt::TlsFailure(TlsFailure::Io),
        _ => Attempt::TlsFailure(TlsFailure::Other),
    }
}

/// The identity refusal label for an identity error's reason.
pub fn identity_attempt(reason: &str) -> Attempt {
    Attempt::IdentityRefused(match reason {
        "no_match" => IdentityRefusal::NoMatch,
        "ambiguous" => IdentityRefusal::Ambiguous,
        "unparsable" => IdentityRefusal::Unparsable,
        _ => IdentityRefusal::Invalid,
    })
}

/// The `reason` of the `connection_refused` audit record of a client refused at startup, after
/// the TLS handshake: the attempts metric's reason for an identity refusal, the statements
/// metric's `startup_option` for a protected startup option, and a fixed word for the refusals
/// no metric counts.
pub fn startup_refusal_reason(err: &ClientError) -> &'static str {
    match err {
        ClientError::NoIdentity(_, reason) => identity_attempt(reason).reason(),
        ClientError::CertificateExpired => CertificateRefusal::Expired.as_str(),
        ClientError::ProtectedStartupOption(_) => StatementRefusal::StartupOption.as_str(),
        ClientError::UnknownDatabase(_) => "unknown_database",
        ClientError::UnsupportedStartupParameter(_) => "startup_parameter",
        ClientError::UnsupportedEncoding(_) => "client_encoding",
        ClientError::UpstreamUnavailable | ClientError::PoolTimeout => "upstream_unavailable",
        ClientError::Shutdown => "shutdown",
        _ => "protocol",
    }
}

/// The metric label of a guard refusal.
pub fn statement_refusal(reason: RefusalReason) -> StatementRefusal {
    match reason {
        RefusalReason::SetProtected => StatementRefusal::SetProtected,
        RefusalReason::ResetProtected => StatementRefusal::ResetProtected,
        RefusalReason::SetConfigProtected => StatementRefusal::SetConfigProtected,
        RefusalReason::SetConfigDynamicName => StatementRefusal::SetConfigDynamicName,
        RefusalReason::SetConfigIndirect => StatementRefusal::SetConfigIndirect,
        RefusalReason::SettingsViewUpdate => StatementRefusal::SettingsViewUpdate,
        RefusalReason::CodeBodyMention => StatementRefusal::CodeBodyMention,
        RefusalReason::UnparsableMention => StatementRefusal::UnparsableMention,
        RefusalReason::SetRole => StatementRefusal::SetRole,
        RefusalReason::SetSessionAuthorization => StatementRefusal::SetSessionAuthorization,
        RefusalReason::AlterRole => StatementRefusal::AlterRole,
        RefusalReason::AlterSystem => StatementRefusal::AlterSystem,
    }
}

/// Counts an upstream failure under connect or authentication failures.
pub fn upstream_failure(target: &TargetMetrics, e: &UpstreamError) {
    use UpstreamAuthFailure as A;
    use UpstreamConnectFailure as C;
    match e {
        UpstreamError::Resolve { .. } => target.connect_failed(C::Resolve),
        UpstreamError::Connect { .. } | UpstreamError::Io { .. } => {
            target.connect_failed(C::Connect)
        }
        UpstreamError::Timeout { .. } => target.connect_failed(C::Timeout),
        UpstreamError::TlsRefused { .. } => target.connect_failed(C::TlsRefused),
        UpstreamError::Tls { .. } => target.connect_failed(C::Tls),
        UpstreamError::Protocol { .. } => target.connect_failed(C::Protocol),
        UpstreamError::Server { .. } => target.auth_failed(A::Rejected),
        UpstreamError::MethodRefused { .. } => target.auth_failed(A::MethodRefused),
        UpstreamError::ChannelBindingRequired { .. } => {
            target.auth_failed(A::ChannelBindingRequired)
        }
        UpstreamError::Scram { .. } => target.auth_failed(A::Scram),
        UpstreamError::Password(_) => target.auth_failed(A::Password),
    }
}
