//! The checkout future stays small. Every transaction under transaction pooling awaits one, and
//! every proxy future that awaits it embeds it: when the session-opening future sat inline in
//! it (kilobytes of TLS and SCRAM state), the proxy's per-connection future grew to 12 KB and
//! was copied and stack-probed on every transaction. Opening a session is rare; it is boxed.

use std::sync::Arc;
use std::time::Duration;

use pgcordon_pool::{BackendPool, PoolSettings};
use pgcordon_upstream::{ChannelBindingPolicy, PasswordSource, UpstreamSettings};

/// Generous for deadpool's semaphore wait, timeout and recycle check; the inline opening
/// future alone was over 3 KB.
const MAX_CHECKOUT_FUTURE: usize = 1024;

fn pool() -> BackendPool {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let upstream = UpstreamSettings {
        host: "127.0.0.1".into(),
        port: 1,
        database: "app".into(),
        user: "app".into(),
        password: PasswordSource::Env("PGCORDON_UNUSED".into()),
        tls: Arc::new(tls),
        server_name: "localhost".try_into().expect("a valid server name"),
        connect_timeout: Duration::from_secs(1),
        channel_binding: ChannelBindingPolicy::Prefer,
        allow_cleartext_password: false,
        allow_md5_password: false,
        startup_params: Vec::new(),
    };
    let settings = PoolSettings {
        size: 2,
        min_idle: 0,
        acquire_timeout: Duration::from_secs(1),
        server_lifetime: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
    };
    BackendPool::new(upstream, settings).expect("a pool of size 2")
}

#[test]
fn the_checkout_future_is_small() {
    let pool = pool();
    let checkout = pool.acquire();
    let size = std::mem::size_of_val(&checkout);
    assert!(
        size <= MAX_CHECKOUT_FUTURE,
        "BackendPool::acquire's future is {size} bytes (at most {MAX_CHECKOUT_FUTURE} expected): \
         is a large future inlined into it again?"
    );
    drop(checkout);
}
