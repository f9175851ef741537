//! Micro benchmarks of reading the client identity out of a verified leaf certificate, the
//! step the proxy takes once per connection after the TLS handshake.
//!
//! The leaf is issued in the set-up by the devkit CA (rcgen, ECDSA P-256) with the fields a
//! SPIFFE workload certificate carries: a subject CN and O, and one SAN URI. Each rule is
//! compiled once, as at configuration load. The baseline is `x509_parse`: parsing the DER with
//! x509-parser alone, which every extraction starts with; the ratios show what the field walk,
//! the regex, the RFC 4514 subject and the SHA-256 fingerprint add on top. See
//! docs/benchmarks-micro.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pgcordon_devkit::pki::{CertAuthority, ClientSpec};
use pgcordon_tls::rustls_pki_types::pem::PemObject;
use pgcordon_tls::rustls_pki_types::CertificateDer;
use pgcordon_tls::{extract_identity, IdentityRule, IdentitySource};

const TENANT: &str = "6f1c2a9e-3b7d-4e58-9a41-0c2d8e7f5b13";

/// The patterns of config/pgcordon.yaml (SAN URI) and config/subject-cn.yaml (subject CN).
const SPIFFE_PATTERN: &str = r"^spiffe://example\.org/tenant/([0-9a-f-]{36})$";
const UUID_PATTERN: &str = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

fn leaf_der() -> Vec<u8> {
    let ca = CertAuthority::new("pgcordon bench CA").expect("CA");
    let spec = ClientSpec {
        common_name: Some(TENANT.to_owned()),
        san_uris: vec![format!("spiffe://example.org/tenant/{TENANT}")],
        subject_attributes: vec![("O".to_owned(), "Example Workloads".to_owned())],
        ..ClientSpec::default()
    };
    let leaf = ca.issue_client(&spec).expect("client certificate");
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .expect("PEM from the devkit")
        .to_vec()
}

fn identity(c: &mut Criterion) {
    let der = leaf_der();
    let san_uri = IdentityRule::new(IdentitySource::SanUri, SPIFFE_PATTERN).expect("rule");
    let subject_cn = IdentityRule::new(IdentitySource::SubjectCn, UUID_PATTERN).expect("rule");

    // Both rules must find the tenant, or the timings would be of an error path.
    for rule in [&san_uri, &subject_cn] {
        let peer = extract_identity(&der, rule).expect("identity");
        assert_eq!(peer.identity, TENANT);
    }
    eprintln!("identity: leaf certificate of {} bytes DER", der.len());

    let mut group = c.benchmark_group("identity");
    group.bench_function("x509_parse", |b| {
        b.iter(|| x509_parser::parse_x509_certificate(black_box(&der)))
    });
    group.bench_function("san_uri_spiffe", |b| {
        b.iter(|| extract_identity(black_box(&der), &san_uri))
    });
    group.bench_function("subject_cn", |b| {
        b.iter(|| extract_identity(black_box(&der), &subject_cn))
    });
    group.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
