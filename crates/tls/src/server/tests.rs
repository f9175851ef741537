//! Real handshakes over an in-memory pipe against the configuration `server_config` builds.

use super::*;
use crate::testpki::TempDir;
use crate::testpki::{client_config, handshake, localhost, Crl, Leaf, Pki};
use crate::{classify_handshake_error, HandshakeFailure};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a server certificate for localhost, the CA bundle and the CRLs; returns settings
/// that point at them.
pub(super) fn write_settings(dir: &TempDir, pki: &Pki, crls: &[&Crl]) -> ServerTlsSettings {
    let server = pki.server(&["localhost", "127.0.0.1"]);
    let crls = crls
        .iter()
        .enumerate()
        .map(|(i, crl)| dir.write(&format!("crl-{i}.pem"), &crl.pem))
        .collect();
    ServerTlsSettings {
        cert: dir.write("server.crt", &server.cert_pem),
        key: dir.write("server.key", &server.key_pem),
        client_ca: dir.write("client-ca.crt", &pki.ca_pem()),
        crls,
    }
}

/// Runs a handshake in which the client trusts `pki` and presents `leaf`; returns why the
/// server refused it.
async fn refusal(config: Arc<ServerConfig>, pki: &Pki, leaf: Option<&Leaf>) -> HandshakeFailure {
    let outcome = handshake(config, client_config(pki.ca_der(), leaf), localhost()).await;
    match outcome.server {
        Ok(_) => panic!("server accepted a client it should refuse"),
        Err(err) => classify_handshake_error(&err),
    }
}

#[tokio::test]
async fn accepts_a_valid_client_and_exposes_its_leaf() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let alice = pki.client("alice");

    let outcome = handshake(
        config,
        client_config(pki.ca_der(), Some(&alice)),
        localhost(),
    )
    .await;

    let mut server = outcome.server.expect("server accepts");
    let mut client = outcome.client.expect("client connects");
    let (_, conn) = server.get_ref();
    let peer = conn
        .peer_certificates()
        .expect("client certificate present");
    assert_eq!(peer[0].as_ref(), alice.cert_der.as_slice());
    assert_eq!(conn.alpn_protocol(), Some(ALPN_POSTGRESQL));

    // The session carries data both ways.
    client.write_all(b"ping").await.expect("client writes");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.expect("server reads");
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn refuses_a_client_without_certificate() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");

    let failure = refusal(config, &pki, None).await;

    assert_eq!(failure, HandshakeFailure::NoClientCertificate);
}

#[tokio::test]
async fn refuses_a_certificate_from_a_foreign_ca() {
    let (dir, pki, foreign) = (TempDir::new(), Pki::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let mallory = foreign.client("alice");

    let failure = refusal(config, &pki, Some(&mallory)).await;

    assert_eq!(failure, HandshakeFailure::UnknownIssuer);
}

#[tokio::test]
async fn refuses_an_expired_certificate() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let now = OffsetDateTime::now_utc();
    let old = pki.issue(|p| {
        p.distinguished_name.push(rcgen::DnType::CommonName, "old");
        p.not_before = now - Duration::days(60);
        p.not_after = now - Duration::days(1);
    });

    let failure = refusal(config, &pki, Some(&old)).await;

    assert_eq!(failure, HandshakeFailure::Expired);
}

#[tokio::test]
async fn refuses_a_certificate_not_yet_valid() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let now = OffsetDateTime::now_utc();
    let early = pki.issue(|p| {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "early");
        p.not_before = now + Duration::days(1);
        p.not_after = now + Duration::days(30);
    });

    let failure = refusal(config, &pki, Some(&early)).await;

    assert_eq!(failure, HandshakeFailure::NotYetValid);
}

#[tokio::test]
async fn refuses_a_revoked_certificate_and_keeps_accepting_others() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let revoked = pki.client("revoked");
    let good = pki.client("good");
    let crl = pki.crl(&[revoked.serial], Duration::days(7));
    let config = server_config(&write_settings(&dir, &pki, &[&crl])).expect("config builds");

    let failure = refusal(Arc::clone(&config), &pki, Some(&revoked)).await;
    let accepted = handshake(
        config,
        client_config(pki.ca_der(), Some(&good)),
        localhost(),
    )
    .await;

    assert_eq!(failure, HandshakeFailure::Revoked);
    assert!(accepted.server.is_ok(), "{:?}", accepted.server.err());
}

#[tokio::test]
async fn refuses_a_client_whose_revocation_status_is_unknown() {
    // Two client CAs, a CRL for only the first: the second CA's clients cannot be checked,
    // and a missing answer must not pass for "not revoked".
    let (dir, pki, other) = (TempDir::new(), Pki::new(), Pki::new());
    let crl = pki.crl(&[], Duration::days(7));
    let mut settings = write_settings(&dir, &pki, &[&crl]);
    let bundle = format!("{}{}", pki.ca_pem(), other.ca_pem());
    settings.client_ca = dir.write("two-cas.crt", &bundle);
    let config = server_config(&settings).expect("config builds");

    let failure = refusal(config, &pki, Some(&other.client("carol"))).await;

    assert_eq!(failure, HandshakeFailure::BadCertificate);
}

#[tokio::test]
async fn verifier_refuses_an_expired_crl_during_the_handshake() {
    // server_config refuses an expired CRL at load time; this checks the second guard, the
    // verifier option, for a CRL that expires while the configuration is in use.
    let pki = Pki::new();
    let alice = pki.client("alice");
    let now = OffsetDateTime::now_utc();
    let stale = pki.crl_between(&[], now - Duration::days(10), now - Duration::days(3));
    let provider = ring_provider();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).expect("CA anchor");
    let crls = vec![CertificateRevocationListDer::from(stale.der.clone())];
    let verifier = client_verifier(Arc::new(roots), crls, &provider).expect("verifier");
    let server = pki.server(&["localhost"]);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain(), server.key())
        .expect("server key");

    let outcome = handshake(
        Arc::new(config),
        client_config(pki.ca_der(), Some(&alice)),
        localhost(),
    )
    .await;

    let err = outcome.server.expect_err("stale CRL refused");
    assert_eq!(
        classify_handshake_error(&err),
        HandshakeFailure::BadCertificate
    );
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            inner,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredRevocationList
                    | rustls::CertificateError::ExpiredRevocationListContext { .. }
            ))
        ),
        "{inner:?}"
    );
}

// ---- loading errors ---------------------------------------------------------------------

#[test]
fn an_undecodable_certificate_is_blamed_on_its_file() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let mut settings = write_settings(&dir, &pki, &[]);
    // Well-formed PEM whose base64 payload is plain text, not DER.
    settings.cert = dir.write(
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );

    let err = server_config(&settings).expect_err("the certificate is not X.509");

    assert!(matches!(err, TlsError::BadCertificate { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("garbage.crt"), "{text}");
    assert!(
        !text.contains("server.key"),
        "the key is not at fault: {text}"
    );
}

#[test]
fn mismatched_key_names_both_files() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let mut settings = write_settings(&dir, &pki, &[]);
    settings.key = dir.write("other.key", &pki.client("someone").key_pem);

    let err = server_config(&settings).expect_err("key does not match");

    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("other.key") && text.contains("server.crt"),
        "{text}"
    );
}

#[test]
fn missing_and_empty_files_are_named() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let mut missing = write_settings(&dir, &pki, &[]);
    missing.client_ca = dir.path().join("no-such-ca.crt");
    let mut empty = write_settings(&dir, &pki, &[]);
    empty.cert = dir.write("empty.crt", "");

    let missing_err = server_config(&missing).expect_err("missing CA bundle");
    let empty_err = server_config(&empty).expect_err("empty certificate file");

    assert!(
        matches!(missing_err, TlsError::Read { .. }),
        "{missing_err:?}"
    );
    assert!(
        missing_err.to_string().contains("no-such-ca.crt"),
        "{missing_err}"
    );
    assert!(
        matches!(empty_err, TlsError::NoCertificate { .. }),
        "{empty_err:?}"
    );
    assert!(empty_err.to_string().contains("empty.crt"), "{empty_err}");
}

#[test]
fn bad_crls_are_refused_with_the_file_named() {
    let (dir, pki, foreign) = (TempDir::new(), Pki::new(), Pki::new());
    let now = OffsetDateTime::now_utc();
    let expired = pki.crl_between(&[], now - Duration::days(10), now - Duration::days(1));
    let strangers = foreign.crl(&[], Duration::days(7));
    let garbage = "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n";

    let mut settings = write_settings(&dir, &pki, &[&expired]);
    let expired_err = server_config(&settings).expect_err("expired CRL");
    settings.crls = vec![dir.write("foreign.crl", &strangers.pem)];
    let foreign_err = server_config(&settings).expect_err("foreign CRL");
    settings.crls = vec![dir.write("garbage.crl", garbage)];
    let garbage_err = server_config(&settings).expect_err("unparseable CRL");

    assert!(
        matches!(expired_err, TlsError::CrlExpired { .. }),
        "{expired_err:?}"
    );
    assert!(
        expired_err.to_string().contains("crl-0.pem"),
        "{expired_err}"
    );
    assert!(
        matches!(foreign_err, TlsError::CrlIssuerUnknown { .. }),
        "{foreign_err:?}"
    );
    assert!(
        foreign_err.to_string().contains("foreign.crl"),
        "{foreign_err}"
    );
    assert!(
        matches!(garbage_err, TlsError::BadCrl { .. }),
        "{garbage_err:?}"
    );
    assert!(
        garbage_err.to_string().contains("garbage.crl"),
        "{garbage_err}"
    );
}
