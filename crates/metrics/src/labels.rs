//! The closed sets of label values, as enums.
//!
//! Owns every label value pgcordon may put on a metric. Each set is an enum with `ALL` (the
//! values whose handles are created at start-up) and `as_str` (the text Prometheus shows), so
//! a caller can only name a value that exists and the cardinality of every metric is fixed
//! by this file. It does not own the mapping from other crates' error types (the TLS
//! handshake failure, the guard's refusal reason, the upstream error) to these values: the
//! proxy crate does that, one `match` each, so this crate imports no other pgcordon crate.

/// Declares a label enum with `ALL`, `COUNT`, `as_str` and a dense `index`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order; handles are created for each at start-up.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The label value Prometheus shows.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Position in [`Self::ALL`], used to index pre-created handles.
            #[allow(dead_code)] // not every set indexes handles
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Where a client connection is in its life (`pgcordon_client_connections{state}`).
    pub enum ClientState {
        /// Accepted; the pre-TLS negotiation or the TLS handshake is running.
        Handshake => "handshake",
        /// TLS is up; the startup message and identity are being checked.
        Startup => "startup",
        /// Authenticated, between transactions, holding no backend.
        Idle => "idle",
        /// Waiting for a backend from the pool.
        Waiting => "waiting",
        /// Holding a backend: inside a transaction (or a session in session pooling).
        Active => "active",
    }
}

label_enum! {
    /// Why a TLS connection failed before a certificate was judged.
    pub enum TlsFailure {
        /// The handshake did not finish within `tls.handshake_timeout`.
        Timeout => "timeout",
        /// The client sent a plaintext startup message instead of TLS.
        Plaintext => "plaintext",
        /// No TLS version in common (below TLS 1.2).
        ProtocolVersion => "protocol_version",
        /// Direct TLS without the ALPN protocol `postgresql`.
        NoAlpn => "no_alpn",
        /// The connection failed underneath TLS (reset, closed early).
        Io => "io",
        /// Any other TLS failure (no common cipher suite, malformed messages).
        Other => "other",
    }
}

label_enum! {
    /// Why a client certificate was refused during the handshake.
    pub enum CertificateRefusal {
        /// No certificate was presented.
        NoCertificate => "no_certificate",
        /// The certificate does not chain to `tls.client_ca`.
        UnknownIssuer => "unknown_issuer",
        /// The certificate's notAfter has passed.
        Expired => "expired",
        /// The certificate's notBefore lies in the future.
        NotYetValid => "not_yet_valid",
        /// The certificate is listed in a configured CRL.
        Revoked => "revoked",
        /// Any other certificate problem (signature, purpose, unknown revocation status).
        BadCertificate => "bad_certificate",
    }
}

label_enum! {
    /// Why a verified certificate yielded no usable identity.
    pub enum IdentityRefusal {
        /// No value of the configured field matches `identity.pattern`.
        NoMatch => "no_match",
        /// Several values match and give different identities.
        Ambiguous => "ambiguous",
        /// The identity is empty, too long or holds a control character.
        Invalid => "invalid",
        /// The certificate could not be parsed for its identity.
        Unparsable => "unparsable",
    }
}

/// The outcome of one client connection attempt
/// (`pgcordon_client_connection_attempts_total{outcome, reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// TLS, certificate and identity all passed.
    Accepted,
    /// TLS failed before the certificate was judged.
    TlsFailure(TlsFailure),
    /// The client certificate was refused.
    CertificateRefused(CertificateRefusal),
    /// The certificate was valid but carried no usable identity.
    IdentityRefused(IdentityRefusal),
}

impl Attempt {
    /// Every attempt outcome and reason; a counter is created for each at start-up.
    pub fn all() -> Vec<Attempt> {
        let mut all = vec![Attempt::Accepted];
        all.extend(TlsFailure::ALL.iter().map(|r| Attempt::TlsFailure(*r)));
        all.extend(
            CertificateRefusal::ALL
                .iter()
                .map(|r| Attempt::CertificateRefused(*r)),
        );
        all.extend(
            IdentityRefusal::ALL
                .iter()
                .map(|r| Attempt::IdentityRefused(*r)),
        );
        all
    }

    /// The `outcome` label value.
    pub fn outcome(self) -> &'static str {
        match self {
            Attempt::Accepted => "accepted",
            Attempt::TlsFailure(_) => "tls_failure",
            Attempt::CertificateRefused(_) => "certificate_refused",
            Attempt::IdentityRefused(_) => "identity_refused",
        }
    }

    /// The `reason` label value; `none` for accepted connections.
    pub fn reason(self) -> &'static str {
        match self {
            Attempt::Accepted => "none",
            Attempt::TlsFailure(r) => r.as_str(),
            Attempt::CertificateRefused(r) => r.as_str(),
            Attempt::IdentityRefused(r) => r.as_str(),
        }
    }

    /// Position in [`Attempt::all`].
    pub(crate) fn index(self) -> usize {
        match self {
            Attempt::Accepted => 0,
            Attempt::TlsFailure(r) => 1 + r.index(),
            Attempt::CertificateRefused(r) => 1 + TlsFailure::COUNT + r.index(),
            Attempt::IdentityRefused(r) => {
                1 + TlsFailure::COUNT + CertificateRefusal::COUNT + r.index()
            }
        }
    }
}

label_enum! {
    /// Which limit ended or refused a client connection (`pgcordon_limits_reached_total`).
    pub enum Limit {
        /// `limits.max_client_connections`: refused with 53300.
        MaxClientConnections => "max_client_connections",
        /// `limits.max_connections_per_identity`: refused with 53300.
        ConnectionsPerIdentity => "max_connections_per_identity",
        /// `limits.max_frame_bytes`: a message over the cap, FATAL 08P01.
        MaxFrameBytes => "max_frame_bytes",
        /// `tls.handshake_timeout`: closed before the StartupMessage arrived.
        HandshakeTimeout => "handshake_timeout",
        /// `limits.startup_timeout`: FATAL 08P01.
        StartupTimeout => "startup_timeout",
        /// `limits.client_idle_timeout`: FATAL 57P05.
        ClientIdleTimeout => "client_idle_timeout",
        /// `limits.idle_in_transaction_timeout`: FATAL 25P03, the transaction rolled back.
        IdleInTransactionTimeout => "idle_in_transaction_timeout",
    }
}

label_enum! {
    /// Why the statement guard refused a statement (`pgcordon_statements_refused_total`).
    /// The values follow the guard's own refusal reasons one for one.
    pub enum StatementRefusal {
        /// SET of a protected setting.
        SetProtected => "set_protected",
        /// RESET of a protected setting.
        ResetProtected => "reset_protected",
        /// set_config with a protected name.
        SetConfigProtected => "set_config_protected",
        /// set_config with a name that is not a constant.
        SetConfigDynamicName => "set_config_dynamic_name",
        /// set_config referenced without a direct call.
        SetConfigIndirect => "set_config_indirect",
        /// UPDATE of pg_settings.
        SettingsViewUpdate => "settings_view_update",
        /// A DO block or function body that mentions a protected setting.
        CodeBodyMention => "code_body_mention",
        /// A text that may mention a protected setting but does not parse.
        UnparsableMention => "unparsable_mention",
        /// SET ROLE, RESET ROLE and other changes of `role`, not allowed by `guard.allow`.
        SetRole => "set_role",
        /// SET/RESET SESSION AUTHORIZATION, not allowed by `guard.allow`.
        SetSessionAuthorization => "set_session_authorization",
        /// ALTER ROLE / USER / GROUP, not allowed by `guard.allow`.
        AlterRole => "alter_role",
        /// ALTER SYSTEM, not allowed by `guard.allow`.
        AlterSystem => "alter_system",
        /// A startup `options` value that touches a protected setting.
        StartupOption => "startup_option",
    }
}

label_enum! {
    /// Why opening an upstream connection failed before authentication.
    pub enum UpstreamConnectFailure {
        /// The host name did not resolve.
        Resolve => "resolve",
        /// TCP connect failed (refused, unreachable).
        Connect => "connect",
        /// `upstream.connect_timeout` passed.
        Timeout => "timeout",
        /// The server answered the SSLRequest with something other than `S`.
        TlsRefused => "tls_refused",
        /// The TLS handshake failed (certificate, name, protocol).
        Tls => "tls",
        /// The server broke the protocol or the connection failed mid-way.
        Protocol => "protocol",
    }
}

label_enum! {
    /// Why authenticating to the upstream server failed.
    pub enum UpstreamAuthFailure {
        /// The server refused the session (wrong password, no pg_hba entry, unknown role).
        Rejected => "rejected",
        /// The server asked for a method the configuration does not allow.
        MethodRefused => "method_refused",
        /// Channel binding is required but the server does not offer it.
        ChannelBindingRequired => "channel_binding_required",
        /// The SCRAM exchange failed (bad server signature, malformed messages).
        Scram => "scram",
        /// The password could not be read from its file or variable.
        Password => "password",
    }
}

label_enum! {
    /// The result of a configuration or certificate reload.
    pub enum ReloadOutcome {
        /// The new configuration is in force.
        Success => "success",
        /// The reload was refused; the previous configuration stays in force.
        Failure => "failure",
    }
}

label_enum! {
    /// The certificates whose expiry is exported
    /// (`pgcordon_certificate_seconds_until_expiry{certificate}`).
    pub enum CertificateKind {
        /// `tls.cert`, presented to clients.
        Server => "server",
        /// `tls.client_ca`, the earliest expiry in the bundle.
        ClientCa => "client_ca",
        /// `upstream.tls.ca`, the earliest expiry in the bundle.
        UpstreamCa => "upstream_ca",
        /// `upstream.tls.client_cert`, presented to PostgreSQL.
        UpstreamClient => "upstream_client",
    }
}

label_enum! {
    /// What a pool target is; only replicas carry `pgcordon_replica_healthy`.
    pub enum TargetRole {
        /// The primary server.
        Primary => "primary",
        /// A read replica.
        Replica => "replica",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_indexes_are_dense_and_match_all() {
        let all = Attempt::all();
        for (position, attempt) in all.iter().enumerate() {
            assert_eq!(attempt.index(), position, "{attempt:?}");
        }
        let expected = 1 + TlsFailure::COUNT + CertificateRefusal::COUNT + IdentityRefusal::COUNT;
        assert_eq!(all.len(), expected);
    }

    #[test]
    fn enum_indexes_follow_all() {
        for (position, state) in ClientState::ALL.iter().enumerate() {
            assert_eq!(state.index(), position);
        }
        for (position, reason) in StatementRefusal::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
    }

    #[test]
    fn label_values_are_snake_case_and_unique_per_set() {
        fn check(values: Vec<&'static str>) {
            let mut seen = std::collections::HashSet::new();
            for value in values {
                assert!(
                    value.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{value}"
                );
                assert!(seen.insert(value), "{value} twice");
            }
        }
        check(TlsFailure::ALL.iter().map(|v| v.as_str()).collect());
        check(CertificateRefusal::ALL.iter().map(|v| v.as_str()).collect());
        check(
            UpstreamConnectFailure::ALL
                .iter()
                .map(|v| v.as_str())
                .collect(),
        );
        check(
            UpstreamAuthFailure::ALL
                .iter()
                .map(|v| v.as_str())
                .collect(),
        );
        check(
            Attempt::all()
                .iter()
                .map(|a| a.outcome())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        );
    }
}
