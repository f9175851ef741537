//! Test support: a throw-away certificate authority made with rcgen, temporary files for the
//! path-based settings, and an in-memory TLS handshake over `tokio::io::duplex`.
//!
//! Compiled for unit tests only; nothing here is part of the public API.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::{Duration, OffsetDateTime};
use tokio::io::DuplexStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// Serial numbers handed out to leaves, unique within the test binary.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0x1000);

/// CA names are unique within the test binary.
static NEXT_CA: AtomicU64 = AtomicU64::new(1);

/// Directory names are unique per test binary run and per call.
static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A leaf certificate with its key, in both encodings.
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    pub key_der: Vec<u8>,
    pub serial: u64,
}

impl Leaf {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        match PrivateKeyDer::try_from(self.key_der.clone()) {
            Ok(key) => key,
            Err(err) => panic!("rcgen key is not PKCS#8: {err}"),
        }
    }
}

/// A CRL in both encodings.
pub struct Crl {
    pub pem: String,
    pub der: Vec<u8>,
}

/// A self-signed CA that issues leaves and CRLs.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A P-256 CA with a name of its own, so that two test CAs never share an issuer name.
    pub fn new() -> Self {
        let n = NEXT_CA.fetch_add(1, Ordering::Relaxed);
        Self::with_alg(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &format!("pgcordon test CA {n}"),
        )
    }

    pub fn with_alg(alg: &'static SignatureAlgorithm, name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(alg).expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self { ca }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A client certificate valid now, with the given CN and the clientAuth purpose.
    pub fn client(&self, cn: &str) -> Leaf {
        self.issue(|params| {
            params.distinguished_name.push(DnType::CommonName, cn);
        })
    }

    /// A server certificate valid now for the given DNS names or IP addresses.
    pub fn server(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let sans = CertificateParams::new(names)
            .expect("server names")
            .subject_alt_names;
        self.issue(|params| {
            params.subject_alt_names = sans;
            params
                .distinguished_name
                .push(DnType::CommonName, "pgcordon test server");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        })
    }

    /// A leaf valid from a day ago for thirty days, marked for client authentication, after
    /// `adjust` has changed whatever the test needs.
    pub fn issue(&self, adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        adjust(&mut params);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            serial,
        }
    }

    /// A CRL issued an hour ago that revokes `serials` and is due for renewal after `valid_for`.
    pub fn crl(&self, serials: &[u64], valid_for: Duration) -> Crl {
        let this_update = OffsetDateTime::now_utc() - Duration::hours(1);
        self.crl_between(serials, this_update, this_update + valid_for)
    }

    pub fn crl_between(
        &self,
        serials: &[u64],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Crl {
        let revoked_certs = serials
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).expect("CRL");
        Crl {
            pem: crl.pem().expect("CRL PEM"),
            der: crl.der().to_vec(),
        }
    }
}

/// A fresh directory under the system temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pgcordon-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temporary directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Both ends of one in-memory handshake.
pub struct Handshake {
    pub server: io::Result<server::TlsStream<DuplexStream>>,
    pub client: io::Result<client::TlsStream<DuplexStream>>,
}

/// Upper bound for one in-memory handshake; far above what it takes, only there so that a
/// hang fails the test instead of blocking it.
const HANDSHAKE_LIMIT: StdDuration = StdDuration::from_secs(10);

/// Runs a client and a server handshake against each other over an in-memory pipe.
pub async fn handshake(
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Handshake {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server_config);
    let connector = TlsConnector::from(client_config);

    let both = async {
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        )
    };
    let (server, client) = tokio::time::timeout(HANDSHAKE_LIMIT, both)
        .await
        .expect("handshake finished in time");
    Handshake { server, client }
}

/// A ring-only client config that trusts `ca`, presents `identity` if given, and offers
/// ALPN `postgresql`.
pub fn client_config(
    ca: CertificateDer<'static>,
    identity: Option<&Leaf>,
) -> Arc<rustls::ClientConfig> {
    client_config_with(ca, identity, rustls::DEFAULT_VERSIONS)
}

/// As [`client_config`], restricted to `versions`.
pub fn client_config_with(
    ca: CertificateDer<'static>,
    identity: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA is a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("supported versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain(), leaf.key())
            .expect("client key"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Arc::new(config)
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid name")
}
