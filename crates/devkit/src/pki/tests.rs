//! Tests of the CA: every certificate and CRL is parsed back with x509-parser, and checked with
//! the openssl command line where it is installed.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{parse_x509_crl, X509Certificate};

use super::*;

/// Runs `f` on the parsed certificate in `pem`.
fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    f(&cert)
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ca_is_a_self_signed_p256_ca() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    with_cert(ca.cert_pem(), |cert| {
        assert!(cert.is_ca());
        assert_eq!(cert.subject(), cert.issuer());
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "devkit test CA");
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        // id-ecPublicKey with the prime256v1 curve parameter.
        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    });
}

#[test]
fn server_cert_names_and_usage() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let issued = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    with_cert(&issued.cert_pem, |cert| {
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert!(san
            .general_names
            .contains(&GeneralName::DNSName("localhost")));
        assert!(san
            .general_names
            .contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        assert_eq!(cert.raw_serial(), issued.serial.as_slice());

        // Default validity: about an hour back and thirty days ahead.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let validity = cert.validity();
        assert!((validity.not_before.timestamp() - (now - 3600)).abs() < 120);
        assert!((validity.not_after.timestamp() - (now + 30 * 86400)).abs() < 120);
    });

    if !openssl_available() {
        eprintln!("openssl not installed; chain check skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (crt, _) = issued.write(dir.path(), "server").unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca_path)
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong_purpose = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca_path)
        .arg(&crt)
        .output()
        .unwrap();
    assert!(!wrong_purpose.status.success());
}

#[test]
fn client_cert_carries_the_spec() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let spiffe = "spiffe://example.org/tenant/0b6f5a52-3b1e-4c6e-9f2a-6c1d2b7e9a10";
    let spec = ClientSpec {
        common_name: Some("alice".into()),
        san_uris: vec![spiffe.into()],
        san_dns: vec!["alice.internal".into()],
        subject_attributes: vec![
            ("OU".into(), "tenant-a".into()),
            ("o".into(), "Acme".into()),
        ],
        ..ClientSpec::default()
    };
    let issued = ca.issue_client(&spec).unwrap();
    with_cert(&issued.cert_pem, |cert| {
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >| { it.next().map(|a| a.as_str().unwrap().to_string()) };
        assert_eq!(
            first(&mut subject.iter_common_name()).as_deref(),
            Some("alice")
        );
        assert_eq!(
            first(&mut subject.iter_organizational_unit()).as_deref(),
            Some("tenant-a")
        );
        assert_eq!(
            first(&mut subject.iter_organization()).as_deref(),
            Some("Acme")
        );
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert!(san.general_names.contains(&GeneralName::URI(spiffe)));
        assert!(san
            .general_names
            .contains(&GeneralName::DNSName("alice.internal")));
        assert_eq!(cert.raw_serial(), issued.serial.as_slice());
        assert_eq!(cert.issuer().to_string(), "CN=devkit test CA");
    });
}

#[test]
fn explicit_validity_makes_expired_and_future_certs() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = ca
        .issue_client(&ClientSpec {
            common_name: Some("old".into()),
            not_before: Some(now - time::Duration::days(10)),
            not_after: Some(now - time::Duration::days(1)),
            ..ClientSpec::default()
        })
        .unwrap();
    with_cert(&expired.cert_pem, |cert| {
        assert!(cert.validity().not_after.timestamp() < now.unix_timestamp());
        assert!(!cert.validity().is_valid());
    });

    let future = ca
        .issue_client(&ClientSpec {
            not_before: Some(now + time::Duration::days(1)),
            ..ClientSpec::default()
        })
        .unwrap();
    with_cert(&future.cert_pem, |cert| {
        assert!(cert.validity().not_before.timestamp() > now.unix_timestamp());
        assert!(!cert.validity().is_valid());
    });

    let backwards = ClientSpec {
        not_before: Some(now),
        not_after: Some(now - time::Duration::seconds(1)),
        ..ClientSpec::default()
    };
    assert!(matches!(
        ca.issue_client(&backwards),
        Err(DevkitError::Invalid(_))
    ));
}

#[test]
fn bad_input_is_refused() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    assert!(matches!(ca.issue_server(&[]), Err(DevkitError::Invalid(_))));
    assert!(matches!(
        ca.issue_server(&["bücher.example"]),
        Err(DevkitError::Invalid(_))
    ));
    let spec = ClientSpec {
        subject_attributes: vec![("favourite-colour".into(), "blue".into())],
        ..ClientSpec::default()
    };
    assert!(matches!(
        ca.issue_client(&spec),
        Err(DevkitError::Invalid(_))
    ));
    assert!(matches!(
        ca.crl(&[], Duration::ZERO),
        Err(DevkitError::Invalid(_))
    ));

    // A dotted OID works as an attribute name (2.5.4.5 is serialNumber).
    let spec = ClientSpec {
        subject_attributes: vec![("2.5.4.5".into(), "42".into())],
        ..ClientSpec::default()
    };
    let issued = ca.issue_client(&spec).unwrap();
    with_cert(&issued.cert_pem, |cert| {
        let attr = cert
            .subject()
            .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER);
        assert_eq!(
            attr.map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
            ["42"]
        );
    });
}

#[test]
fn serials_are_unique_and_positive() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let issued = ca.issue_client(&ClientSpec::default()).unwrap();
        assert_eq!(issued.serial.len(), SERIAL_LEN);
        assert!(issued.serial[0] != 0 && issued.serial[0] < 0x80);
        assert!(seen.insert(issued.serial));
    }
}

#[test]
fn crl_lists_revoked_serials_and_is_signed_by_the_ca() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let revoked = ca.issue_client(&ClientSpec::default()).unwrap();
    let kept = ca.issue_client(&ClientSpec::default()).unwrap();
    let valid_for = Duration::from_secs(3600);
    let pem_text = ca.crl(&[&revoked], valid_for).unwrap();
    let second = ca.crl(&[], valid_for).unwrap();

    let (_, pem) = parse_x509_pem(pem_text.as_bytes()).unwrap();
    assert_eq!(pem.label, "X509 CRL");
    let (_, crl) = parse_x509_crl(&pem.contents).unwrap();
    let serials: Vec<&[u8]> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial())
        .collect();
    assert_eq!(serials, [revoked.serial.as_slice()]);
    assert_ne!(serials[0], kept.serial.as_slice());
    let next = crl.next_update().unwrap().timestamp();
    assert_eq!(next - crl.last_update().timestamp(), 3600);
    assert_eq!(crl.issuer().to_string(), "CN=devkit test CA");

    let (_, pem2) = parse_x509_pem(second.as_bytes()).unwrap();
    let (_, crl2) = parse_x509_crl(&pem2.contents).unwrap();
    assert!(crl2.crl_number().unwrap() > crl.crl_number().unwrap());
    assert_eq!(crl2.iter_revoked_certificates().count(), 0);

    if !openssl_available() {
        eprintln!("openssl not installed; CRL text check skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let crl_path = dir.path().join("ca.crl");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&crl_path, &pem_text).unwrap();
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl_path)
        .arg("-CAfile")
        .arg(&ca_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("verify OK") || stdout.contains("verify OK"),
        "{stdout}{stderr}"
    );
    let hex: String = revoked.serial.iter().map(|b| format!("{b:02X}")).collect();
    assert!(
        stdout.contains(&format!("Serial Number: {hex}")),
        "{stdout}"
    );
}

#[test]
fn write_sets_file_modes() {
    let ca = CertAuthority::new("devkit test CA").unwrap();
    let issued = ca.issue_client(&ClientSpec::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A pre-existing, world-readable key file must end up private too.
    std::fs::write(dir.path().join("alice.key"), "old").unwrap();
    std::fs::set_permissions(dir.path().join("alice.key"), Permissions::from_mode(0o644)).unwrap();

    let (crt, key) = issued.write(dir.path(), "alice").unwrap();
    assert_eq!(crt, dir.path().join("alice.crt"));
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), issued.cert_pem);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), issued.key_pem);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&crt).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
}
