//! After TLS: the client's StartupMessage is checked, its identity read from the verified
//! certificate, and the client greeted as PostgreSQL would greet it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use pgcordon_wire::server::{self, TxStatus};
use pgcordon_wire::StartupParams;

use crate::errors::ClientError;
use crate::listener::Shared;
use crate::params::{canonical_value, is_unsafe_encoding, tracked_name, REPORTED_FIXED};

/// Startup parameters accepted and ignored: they identify the client but change nothing.
const IGNORED: &[&str] = &["user", "database"];

/// A client that passed startup.
pub struct ClientContext {
    pub identity: Arc<str>,
    /// The certificate's serial (hex) and SHA-256 fingerprint, for the audit trail.
    pub serial: String,
    pub fingerprint: String,
    /// The proxy-issued cancel key sent to the client, and where its cancels go.
    pub cancel_key: (i32, i32),
    pub cancel_slot: Arc<crate::cancel::CancelSlot>,
    /// Tracked parameters with the values this client's sessions must have.
    pub desired: BTreeMap<String, String>,
}

/// Checks parameters, reads the identity, and writes the greeting into `out`.
///
/// # Errors
/// The [`ClientError`] to report before closing.
pub async fn accept_client(
    shared: &Shared,
    minor: u16,
    params: &StartupParams,
    leaf: Option<&[u8]>,
    out: &mut BytesMut,
) -> Result<ClientContext, ClientError> {
    let mut requested = BTreeMap::new();
    let mut unknown_protocol_options = Vec::new();
    for (name, value) in &params.pairs {
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        if name.starts_with("_pq_.") {
            unknown_protocol_options.push(name.as_str());
            continue;
        }
        if is_protected(shared, name) {
            return Err(ClientError::ProtectedStartupOption(name.clone()));
        }
        if name == "options" {
            check_options(shared, value)?;
            continue;
        }
        let Some(tracked) = tracked_name(name) else {
            return Err(ClientError::UnsupportedStartupParameter(name.clone()));
        };
        if value.contains('\0') {
            return Err(ClientError::Protocol("NUL in a startup parameter".into()));
        }
        let value = canonical_value(tracked, value).into_owned();
        if tracked == "client_encoding" && is_unsafe_encoding(&value) {
            return Err(ClientError::UnsupportedEncoding(value));
        }
        requested.insert(tracked.to_string(), value);
    }

    let database = params
        .get("database")
        .or(params.get("user"))
        .unwrap_or_default();
    if database != shared.settings.client_database {
        return Err(ClientError::UnknownDatabase(database.to_owned()));
    }

    let leaf = leaf.ok_or_else(|| ClientError::NoIdentity("no certificate".into(), "invalid"))?;
    let peer = pgcordon_tls::extract_identity(leaf, &shared.settings.identity)
        .map_err(|e| ClientError::NoIdentity(e.to_string(), e.reason()))?;
    // A resumed TLS session skips certificate verification: its certificate was valid at the
    // full handshake and may have expired since. (Revocation is handled by the reload, which
    // starts a fresh session cache with the new CRL.)
    if peer.not_after < std::time::SystemTime::now() {
        return Err(ClientError::CertificateExpired);
    }

    let defaults = shared.defaults().await?;
    let mut desired = defaults.tracked();
    desired.extend(requested);

    // Protocol 3.2 and `_pq_.` extensions: say what we speak, as PostgreSQL does.
    if minor > 0 || !unknown_protocol_options.is_empty() {
        server::negotiate_protocol_version(out, 0, &unknown_protocol_options);
    }
    server::authentication_ok(out);
    let mut reported: BTreeMap<&str, &str> = BTreeMap::new();
    for name in REPORTED_FIXED {
        if let Some(value) = defaults.params.get(*name) {
            reported.insert(name, value);
        }
    }
    for (name, value) in &desired {
        if !crate::params::UNREPORTED.contains(&name.as_str()) {
            reported.insert(name, value);
        }
    }
    for (name, value) in reported {
        server::parameter_status(out, name, value);
    }
    // A proxy-issued key: the backend's real key never reaches the client.
    let (cancel_key, cancel_slot) = shared.cancels.register();
    server::backend_key_data(out, cancel_key.0, cancel_key.1);
    server::ready_for_query(out, TxStatus::Idle);

    let identity = Arc::from(peer.identity.as_str());
    Ok(ClientContext {
        identity,
        serial: peer.serial_hex,
        fingerprint: peer.fingerprint_sha256,
        desired,
        cancel_key,
        cancel_slot,
    })
}

fn is_protected(shared: &Shared, name: &str) -> bool {
    shared
        .settings
        .protected_settings
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// `options` could carry `-c app.current_user_id=...`: refuse that as tampering, and refuse any
/// other option clearly rather than silently dropping it.
fn check_options(shared: &Shared, value: &str) -> Result<(), ClientError> {
    let lowered = value.to_ascii_lowercase();
    for protected in &shared.settings.protected_settings {
        if lowered.contains(&protected.to_ascii_lowercase()) {
            return Err(ClientError::ProtectedStartupOption(protected.clone()));
        }
    }
    if value.trim().is_empty() {
        return Ok(());
    }
    Err(ClientError::UnsupportedStartupParameter("options".into()))
}
