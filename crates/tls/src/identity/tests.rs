//! Identity extraction from certificates made with rcgen.

use super::*;
use crate::testpki::{Leaf, Pki};
use rcgen::{DnType, SanType};

fn leaf_with(pki: &Pki, dn: &[(DnType, &str)], sans: Vec<SanType>) -> Leaf {
    pki.issue(|params| {
        for (ty, value) in dn {
            params.distinguished_name.push(ty.clone(), *value);
        }
        params.subject_alt_names = sans;
    })
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().expect("IA5 URI"))
}

fn dns(text: &str) -> SanType {
    SanType::DnsName(text.try_into().expect("IA5 DNS name"))
}

fn rule(source: IdentitySource, pattern: &str) -> IdentityRule {
    IdentityRule::new(source, pattern).expect("valid rule")
}

#[test]
fn reads_the_common_name_and_audit_facts() {
    let pki = Pki::new();
    let leaf = leaf_with(
        &pki,
        &[
            (DnType::OrganizationName, "Acme"),
            (DnType::CommonName, "alice"),
        ],
        vec![],
    );

    let peer = extract_identity(&leaf.cert_der, &rule(IdentitySource::SubjectCn, "[a-z]+"))
        .expect("CN matches");

    assert_eq!(peer.identity, "alice");
    assert_eq!(peer.subject, "CN=alice,O=Acme");
    assert_eq!(peer.serial_hex, format!("{:x}", leaf.serial));
    let digest = ring::digest::digest(&ring::digest::SHA256, &leaf.cert_der);
    assert_eq!(peer.fingerprint_sha256, crate::hex(digest.as_ref()));
    assert_eq!(peer.fingerprint_sha256.len(), 64);
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert_der).expect("parses");
    let expected_secs = parsed.validity().not_after.timestamp();
    let secs = peer
        .not_after
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(i64::try_from(secs).expect("fits"), expected_secs);
}

#[test]
fn reads_a_spiffe_id_from_the_san_uris() {
    let pki = Pki::new();
    let leaf = leaf_with(
        &pki,
        &[(DnType::CommonName, "workload")],
        vec![
            uri("https://docs.example/not-an-id"),
            uri("spiffe://prod.example/ns/billing/sa/api"),
        ],
    );
    let spiffe = rule(
        IdentitySource::SanUri,
        r"spiffe://prod\.example/ns/([a-z]+)/sa/[a-z]+",
    );

    let peer = extract_identity(&leaf.cert_der, &spiffe).expect("one URI matches");

    assert_eq!(peer.identity, "billing");
}

#[test]
fn reads_a_san_dns_name() {
    let pki = Pki::new();
    let leaf = leaf_with(
        &pki,
        &[],
        vec![dns("reports.svc.example"), uri("spiffe://x/y")],
    );

    let peer = extract_identity(
        &leaf.cert_der,
        &rule(IdentitySource::SanDns, r"(.+)\.svc\.example"),
    )
    .expect("DNS name matches");

    assert_eq!(peer.identity, "reports");
}

#[test]
fn reads_a_subject_attribute_by_short_name_and_by_oid() {
    let pki = Pki::new();
    let employee_id = [1, 3, 6, 1, 4, 1, 55555, 1];
    let leaf = leaf_with(
        &pki,
        &[
            (DnType::CommonName, "Alice Example"),
            (DnType::OrganizationalUnitName, "finance"),
            (DnType::CustomDnType(employee_id.to_vec()), "E-4711"),
        ],
        vec![],
    );
    let by_ou = rule(IdentitySource::SubjectAttribute("OU".into()), ".+");
    let by_oid = rule(
        IdentitySource::SubjectAttribute("1.3.6.1.4.1.55555.1".into()),
        "E-(\\d+)",
    );

    let ou = extract_identity(&leaf.cert_der, &by_ou).expect("OU matches");
    let oid = extract_identity(&leaf.cert_der, &by_oid).expect("OID attribute matches");

    assert_eq!(ou.identity, "finance");
    assert_eq!(oid.identity, "4711");
    assert_eq!(
        ou.subject,
        "1.3.6.1.4.1.55555.1=E-4711,OU=finance,CN=Alice Example"
    );
}

#[test]
fn capture_group_versus_whole_value() {
    let pki = Pki::new();
    let leaf = leaf_with(&pki, &[(DnType::CommonName, "svc-orders")], vec![]);

    let whole = extract_identity(
        &leaf.cert_der,
        &rule(IdentitySource::SubjectCn, "svc-[a-z]+"),
    )
    .expect("whole value matches");
    let group = extract_identity(
        &leaf.cert_der,
        &rule(IdentitySource::SubjectCn, "svc-([a-z]+)"),
    )
    .expect("group matches");

    assert_eq!(whole.identity, "svc-orders");
    assert_eq!(group.identity, "orders");
}

#[test]
fn pattern_must_match_the_whole_value() {
    let pki = Pki::new();
    let leaf = leaf_with(
        &pki,
        &[],
        vec![uri("spiffe://evil.example/x/spiffe://prod.example/admin")],
    );
    let spiffe = rule(IdentitySource::SanUri, r"spiffe://prod\.example/(.+)");

    let err = extract_identity(&leaf.cert_der, &spiffe).expect_err("embedded ID is no match");

    assert!(matches!(err, IdentityError::NoMatch { .. }), "{err:?}");
}

#[test]
fn no_match_names_the_source_but_not_the_values() {
    let pki = Pki::new();
    let leaf = leaf_with(
        &pki,
        &[(DnType::CommonName, "secret-name")],
        vec![uri("spiffe://a/b")],
    );

    let err = extract_identity(&leaf.cert_der, &rule(IdentitySource::SanDns, ".*"))
        .expect_err("no DNS names at all");
    let cn_err = extract_identity(&leaf.cert_der, &rule(IdentitySource::SubjectCn, "admin"))
        .expect_err("CN does not match");

    assert!(matches!(err, IdentityError::NoMatch { .. }), "{err:?}");
    assert!(err.to_string().contains("SAN DNS"), "{err}");
    assert!(cn_err.to_string().contains("subject CN"), "{cn_err}");
    assert!(!cn_err.to_string().contains("secret-name"), "{cn_err}");
}

#[test]
fn two_different_identities_are_ambiguous_but_repeats_are_not() {
    let pki = Pki::new();
    let two = leaf_with(
        &pki,
        &[],
        vec![uri("spiffe://t/ns/a"), uri("spiffe://t/ns/b")],
    );
    let repeated = leaf_with(
        &pki,
        &[],
        vec![uri("spiffe://t/ns/a"), uri("spiffe://t/ns/a")],
    );
    let spiffe = rule(IdentitySource::SanUri, "spiffe://t/ns/(.+)");

    let err = extract_identity(&two.cert_der, &spiffe).expect_err("two identities");
    let peer = extract_identity(&repeated.cert_der, &spiffe).expect("one distinct identity");

    assert!(
        matches!(err, IdentityError::Ambiguous { count: 2, .. }),
        "{err:?}"
    );
    assert_eq!(peer.identity, "a");
}

#[test]
fn unsafe_identities_are_refused() {
    let pki = Pki::new();
    let nul = leaf_with(&pki, &[(DnType::CommonName, "alice\u{0}admin")], vec![]);
    let newline = leaf_with(&pki, &[(DnType::CommonName, "alice\nadmin")], vec![]);
    let long = "a".repeat(MAX_IDENTITY_LEN + 1);
    let too_long = leaf_with(&pki, &[(DnType::CommonName, long.as_str())], vec![]);
    let empty_group = leaf_with(&pki, &[(DnType::CommonName, "user:")], vec![]);
    let any = rule(IdentitySource::SubjectCn, "(?s).*");

    for leaf in [&nul, &newline] {
        let err = extract_identity(&leaf.cert_der, &any).expect_err("control character");
        assert!(
            matches!(err, IdentityError::ControlCharacter { .. }),
            "{err:?}"
        );
    }
    let err = extract_identity(&too_long.cert_der, &any).expect_err("too long");
    assert!(matches!(err, IdentityError::TooLong { len, .. } if len == MAX_IDENTITY_LEN + 1));
    let err = extract_identity(
        &empty_group.cert_der,
        &rule(IdentitySource::SubjectCn, "user:(.*)"),
    )
    .expect_err("empty capture");
    assert!(matches!(err, IdentityError::Empty { .. }), "{err:?}");

    let longest = "b".repeat(MAX_IDENTITY_LEN);
    let at_limit = leaf_with(&pki, &[(DnType::CommonName, longest.as_str())], vec![]);
    let peer = extract_identity(&at_limit.cert_der, &any).expect("exactly at the limit");
    assert_eq!(peer.identity.len(), MAX_IDENTITY_LEN);
}

#[test]
fn bad_rules_are_refused() {
    let bad_regex = IdentityRule::new(IdentitySource::SubjectCn, "(unclosed");
    let bad_attr = IdentityRule::new(IdentitySource::SubjectAttribute("Nickname".into()), ".*");

    assert!(
        matches!(bad_regex, Err(TlsError::InvalidPattern { .. })),
        "{bad_regex:?}"
    );
    assert!(
        matches!(bad_attr, Err(TlsError::UnknownAttribute { .. })),
        "{bad_attr:?}"
    );
}

#[test]
fn garbage_is_not_a_certificate() {
    let err =
        extract_identity(b"not DER", &rule(IdentitySource::SubjectCn, ".*")).expect_err("garbage");
    assert!(matches!(err, IdentityError::Certificate(_)), "{err:?}");
}

#[test]
fn serial_hex_drops_der_sign_padding() {
    assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9a01");
    assert_eq!(serial_hex(&[0x7f]), "7f");
    assert_eq!(serial_hex(&[0x00]), "00");
}
