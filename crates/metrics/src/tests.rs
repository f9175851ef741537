//! Certificate expiry through the whole set, with a fixed clock so the value is exact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{CertificateKind, Metrics};

fn fixed() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

#[test]
fn seconds_until_expiry_is_rendered_per_certificate() {
    let metrics = Metrics::with_clock(fixed).unwrap();
    metrics.set_certificate_expiry(
        CertificateKind::UpstreamClient,
        Some(fixed() + Duration::from_secs(3 * 86_400)),
    );
    metrics.set_certificate_expiry(CertificateKind::ClientCa, Some(fixed()));
    let text = metrics.render();
    let line = |label: &str| {
        let prefix =
            format!("pgcordon_certificate_seconds_until_expiry{{certificate=\"{label}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    };
    assert_eq!(line("upstream_client").as_deref(), Some("259200"));
    assert_eq!(line("client_ca").as_deref(), Some("0"));
    assert_eq!(line("server"), None);
}
