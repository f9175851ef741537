//! Protocol-level properties of the server configuration: versions, suites and ALPN, checked
//! with real handshakes (and one hand-built TLS 1.1 ClientHello, which rustls cannot send).

use super::tests::write_settings;
use super::*;
use crate::testpki::{client_config, client_config_with, handshake, localhost, Pki, TempDir};
use crate::{classify_handshake_error, HandshakeFailure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn alpn_other_than_postgresql_is_refused_and_absent_alpn_is_left_to_the_proxy() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let alice = pki.client("alice");
    let mut http = (*client_config(pki.ca_der(), Some(&alice))).clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut silent = http.clone();
    silent.alpn_protocols.clear();

    let refused = handshake(Arc::clone(&config), Arc::new(http), localhost()).await;
    let accepted = handshake(config, Arc::new(silent), localhost()).await;

    let err = refused.server.expect_err("mismatching ALPN refused");
    assert_eq!(classify_handshake_error(&err), HandshakeFailure::NoAlpn);
    let server = accepted
        .server
        .expect("rustls accepts a client without ALPN");
    assert_eq!(server.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn negotiates_tls12_and_tls13() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let alice = pki.client("alice");

    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let client = client_config_with(pki.ca_der(), Some(&alice), &[version]);
        let outcome = handshake(Arc::clone(&config), client, localhost()).await;
        let server = outcome.server.expect("handshake succeeds");
        assert_eq!(server.get_ref().1.protocol_version(), Some(expected));
    }
}

#[tokio::test]
async fn refuses_a_tls11_client_hello_with_a_protocol_version_alert() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let (mut client, server_io) = tokio::io::duplex(16 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);

    client
        .write_all(&tls11_client_hello())
        .await
        .expect("hello written");
    let err = acceptor
        .accept(server_io)
        .await
        .expect_err("TLS 1.1 refused");
    let mut alert = [0u8; 7];
    client.read_exact(&mut alert).await.expect("alert received");

    assert_eq!(
        classify_handshake_error(&err),
        HandshakeFailure::ProtocolVersion
    );
    // Alert record: content type 21, 2 bytes of version, length 2, level fatal (2),
    // description protocol_version (70).
    assert_eq!(alert[0], 21);
    assert_eq!(&alert[3..], &[0, 2, 2, 70]);
}

/// A minimal ClientHello as a TLS 1.1-only client sends it: legacy version 3.2, CBC suites,
/// no supported_versions extension.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]);
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature_algorithms
    ];
    body.extend_from_slice(&u16_be(extensions.len()));
    body.extend_from_slice(extensions);

    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16_be(body.len()));
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16_be(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

fn u16_be(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("test message fits").to_be_bytes()
}

#[test]
fn every_configured_suite_is_aead_with_ecdhe() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let config = server_config(&write_settings(&dir, &pki, &[])).expect("config builds");
    let provider = config.crypto_provider();

    assert!(!provider.cipher_suites.is_empty());
    for suite in &provider.cipher_suites {
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
            "{name} not AEAD"
        );
        if let rustls::SupportedCipherSuite::Tls12(tls12) = suite {
            assert_eq!(
                tls12.kx,
                rustls::crypto::KeyExchangeAlgorithm::ECDHE,
                "{name}"
            );
        }
    }
    // TLS 1.3 suites take their key exchange from the groups: all must be elliptic-curve DH.
    for group in &provider.kx_groups {
        let named = group.name();
        assert_eq!(
            named.key_exchange_algorithm(),
            rustls::crypto::KeyExchangeAlgorithm::ECDHE,
            "{named:?}"
        );
    }
}

/// Handshakes, lets the client read one byte (so it takes in the TLS 1.3 tickets sent after
/// the handshake), and returns how the server's side of the handshake went.
async fn kind_of_handshake(
    config: Arc<ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    leaf: &[u8],
) -> rustls::HandshakeKind {
    let outcome = handshake(config, client, localhost()).await;
    let mut server = outcome.server.expect("server accepts");
    let mut client = outcome.client.expect("client connects");
    server.write_all(b"x").await.expect("server writes");
    server.flush().await.expect("server flushes");
    let mut byte = [0u8; 1];
    client.read_exact(&mut byte).await.expect("client reads");
    let (_, conn) = server.get_ref();
    let peer = conn.peer_certificates().expect("client certificate known");
    assert_eq!(
        peer[0].as_ref(),
        leaf,
        "the session keeps the client's certificate"
    );
    conn.handshake_kind().expect("handshake done")
}

#[tokio::test]
async fn returning_clients_resume_until_the_configuration_is_rebuilt() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let settings = write_settings(&dir, &pki, &[]);
    let config = server_config(&settings).expect("config builds");
    let alice = pki.client("alice");

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = client_config_with(pki.ca_der(), Some(&alice), &[version]);
        let first = kind_of_handshake(Arc::clone(&config), Arc::clone(&client), &alice.cert_der);
        assert_eq!(first.await, rustls::HandshakeKind::Full, "{version:?}");
        let again = kind_of_handshake(Arc::clone(&config), Arc::clone(&client), &alice.cert_der);
        assert_eq!(again.await, rustls::HandshakeKind::Resumed, "{version:?}");

        // A reload builds a new configuration: nothing from before it resumes.
        let rebuilt = server_config(&settings).expect("config builds");
        let after = kind_of_handshake(rebuilt, client, &alice.cert_der).await;
        assert_eq!(after, rustls::HandshakeKind::Full, "{version:?}");
    }
}
