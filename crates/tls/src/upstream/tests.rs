//! verify-full against a real rustls server over an in-memory pipe.

use super::*;
use crate::testpki::{handshake, Leaf, Pki, TempDir};
use crate::{classify_handshake_error, server_config, HandshakeFailure, ServerTlsSettings};

/// A plain TLS server (no client authentication) presenting `leaf`.
fn plain_server(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain(), leaf.key())
        .expect("server key");
    Arc::new(config)
}

fn settings(dir: &TempDir, pki: &Pki, name: &str) -> UpstreamTlsSettings {
    UpstreamTlsSettings {
        ca: dir.write("upstream-ca.crt", &pki.ca_pem()),
        server_name: name.to_owned(),
        client_cert: None,
    }
}

#[tokio::test]
async fn accepts_the_server_certificate_for_the_configured_name() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let server = pki.server(&["db.internal.example"]);
    let (client, name) =
        upstream_config(&settings(&dir, &pki, "db.internal.example")).expect("config builds");

    let outcome = handshake(plain_server(&server), client, name).await;

    let client = outcome.client.expect("verify-full passes");
    let peer = client
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    assert_eq!(peer[0].as_ref(), server.cert_der.as_slice());
}

#[tokio::test]
async fn accepts_an_ip_address_name() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let server = pki.server(&["127.0.0.1"]);
    let (client, name) = upstream_config(&settings(&dir, &pki, "127.0.0.1")).expect("builds");

    assert!(matches!(name, ServerName::IpAddress(_)), "{name:?}");
    let outcome = handshake(plain_server(&server), client, name).await;
    assert!(outcome.client.is_ok(), "{:?}", outcome.client.err());
}

#[tokio::test]
async fn refuses_a_server_certificate_for_another_name() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let server = pki.server(&["other.internal.example"]);
    let (client, name) =
        upstream_config(&settings(&dir, &pki, "db.internal.example")).expect("config builds");

    let outcome = handshake(plain_server(&server), client, name).await;

    let err = outcome.client.expect_err("name mismatch refused");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            inner,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{inner:?}"
    );
}

#[tokio::test]
async fn refuses_a_server_from_a_ca_outside_the_bundle() {
    let (dir, pki, foreign) = (TempDir::new(), Pki::new(), Pki::new());
    let server = foreign.server(&["db.internal.example"]);
    let (client, name) =
        upstream_config(&settings(&dir, &pki, "db.internal.example")).expect("config builds");

    let outcome = handshake(plain_server(&server), client, name).await;

    let err = outcome.client.expect_err("unknown CA refused");
    assert_eq!(
        classify_handshake_error(&err),
        HandshakeFailure::UnknownIssuer
    );
}

#[tokio::test]
async fn presents_the_client_certificate_to_an_mtls_server() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let server = pki.server(&["localhost"]);
    let proxy = pki.client("pgcordon");
    let server_settings = ServerTlsSettings {
        cert: dir.write("server.crt", &server.cert_pem),
        key: dir.write("server.key", &server.key_pem),
        client_ca: dir.write("client-ca.crt", &pki.ca_pem()),
        crls: Vec::new(),
    };
    let mut upstream = settings(&dir, &pki, "localhost");
    upstream.client_cert = Some((
        dir.write("proxy.crt", &proxy.cert_pem),
        dir.write("proxy.key", &proxy.key_pem),
    ));
    let (client, name) = upstream_config(&upstream).expect("config builds");

    let outcome = handshake(
        server_config(&server_settings).expect("server"),
        client,
        name,
    )
    .await;

    let server = outcome.server.expect("client certificate accepted");
    let peer = server
        .get_ref()
        .1
        .peer_certificates()
        .expect("client certificate");
    assert_eq!(peer[0].as_ref(), proxy.cert_der.as_slice());
}

#[test]
fn refuses_bad_names_and_mismatched_client_keys() {
    let (dir, pki) = (TempDir::new(), Pki::new());
    let proxy = pki.client("pgcordon");
    let mut upstream = settings(&dir, &pki, "not a host name");
    let name_err = upstream_config(&upstream).expect_err("invalid name");

    upstream.server_name = "db.internal.example".into();
    let other_key = dir.write("wrong.key", &pki.client("someone-else").key_pem);
    upstream.client_cert = Some((dir.write("proxy.crt", &proxy.cert_pem), other_key));
    let key_err = upstream_config(&upstream).expect_err("key mismatch");

    assert!(
        matches!(name_err, TlsError::InvalidServerName { .. }),
        "{name_err:?}"
    );
    assert!(
        matches!(key_err, TlsError::KeyMismatch { .. }),
        "{key_err:?}"
    );
    assert!(key_err.to_string().contains("wrong.key"), "{key_err}");
}
