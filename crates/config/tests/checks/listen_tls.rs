//! `listen`, `allow_wildcard` and `tls`.

use std::time::Duration;

use crate::{ok, plus, problems, refused, with, BASE};
use pgcordon_config::Position;

const ADDRESS: &str = "  - address: 127.0.0.1:6432\n";

#[test]
fn listen_is_required_and_not_empty() {
    let missing = BASE.replacen("listen:\n", "", 1).replacen(ADDRESS, "", 1);
    refused(&missing, "listen", "required key");
    refused(
        &with("listen:\n  - address: 127.0.0.1:6432", "listen: []"),
        "listen",
        "at least one",
    );
}

#[test]
fn listen_addresses_must_be_ip_and_port() {
    for bad in ["localhost:6432", "127.0.0.1", "127.0.0.1:99999", "[::1]"] {
        let text = with(ADDRESS, &format!("  - address: '{bad}'\n"));
        let problem = refused(&text, "listen[0].address", "an IP address and port");
        assert!(problem.found.contains(bad), "{problem:?}");
    }
    let second = with(ADDRESS, "  - address: 127.0.0.1:6432\n  - address: nope\n");
    refused(&second, "listen[1].address", "an IP address and port");
}

#[test]
fn wildcards_are_refused_with_the_reason() {
    for wildcard in ["0.0.0.0:6432", "'[::]:6432'", "'[::ffff:0.0.0.0]:6432'"] {
        let text = with(ADDRESS, &format!("  - address: {wildcard}\n"));
        let problem = refused(&text, "listen[0].address", "every interface");
        assert!(
            problem.expected.contains("allow_wildcard: true"),
            "{problem:?}"
        );
        assert_eq!(
            problem.position,
            Some(Position {
                line: 2,
                column: 14
            })
        );
    }
    let allowed = ok(&format!(
        "allow_wildcard: true\n{}",
        with(ADDRESS, "  - address: 0.0.0.0:6432\n")
    ));
    assert!(allowed.allow_wildcard);
    assert!(allowed.listen[0].address.ip().is_unspecified());
}

#[test]
fn listen_addresses_are_unique() {
    let text = with(
        ADDRESS,
        "  - address: 127.0.0.1:6432\n  - address: 127.0.0.1:6432\n",
    );
    refused(&text, "listen[1].address", "each address listed once");
}

#[test]
fn several_listeners_and_port_zero() {
    let config = ok(&with(
        ADDRESS,
        "  - address: 127.0.0.1:0\n  - address: '[::1]:6432'\n",
    ));
    let ports: Vec<u16> = config.listen.iter().map(|l| l.address.port()).collect();
    assert_eq!(ports, [0, 6432]);
    assert!(config.listen[1].address.is_ipv6());
}

#[test]
fn tls_paths_must_not_be_empty() {
    refused(
        &with("cert: /etc/pgcordon/server.crt", "cert: ''"),
        "tls.cert",
        "a file path",
    );
    refused(
        &with("key: /etc/pgcordon/server.key", "key: ' '"),
        "tls.key",
        "a file path",
    );
    let crl = with(
        "  client_ca: /etc/pgcordon/client-ca.crt\n",
        "  client_ca: /etc/pgcordon/client-ca.crt\n  crl: [a.crl, '']\n",
    );
    refused(&crl, "tls.crl[1]", "a file path");
}

#[test]
fn tls_keys_are_required() {
    let text = with("  client_ca: /etc/pgcordon/client-ca.crt\n", "");
    let problem = refused(&text, "tls.client_ca", "required key");
    // A missing key points at the mapping that should hold it.
    assert_eq!(problem.position, Some(Position { line: 4, column: 3 }));
}

#[test]
fn handshake_timeout_default_and_override() {
    assert_eq!(ok(BASE).tls.handshake_timeout, Duration::from_secs(5));
    let text = with(
        "  client_ca: /etc/pgcordon/client-ca.crt\n",
        "  client_ca: /etc/pgcordon/client-ca.crt\n  handshake_timeout: 1500ms\n",
    );
    assert_eq!(ok(&text).tls.handshake_timeout, Duration::from_millis(1500));
}

#[test]
fn durations_must_be_positive_and_well_formed() {
    let timeout = |value: &str| {
        with(
            "  client_ca: /etc/pgcordon/client-ca.crt\n",
            &format!("  client_ca: /etc/pgcordon/client-ca.crt\n  handshake_timeout: {value}\n"),
        )
    };
    let zero = refused(&timeout("0s"), "tls.handshake_timeout", "above zero");
    assert_eq!(zero.found, "0s");
    let bare = refused(&timeout("5"), "tls.handshake_timeout", "a duration");
    assert_eq!(bare.found, "the integer 5");
    let unit = refused(&timeout("5 minutes"), "tls.handshake_timeout", "a duration");
    assert!(unit.found.contains("unknown unit"), "{unit:?}");
    let order = refused(&timeout("30m1h"), "tls.handshake_timeout", "a duration");
    assert!(order.found.contains("largest first"), "{order:?}");
}

#[test]
fn all_problems_are_reported_together_in_file_order() {
    let text = plus("limits:\n  max_frame_bytes: 1KiB\n")
        .replacen("cert: /etc/pgcordon/server.crt", "cert: ''", 1)
        .replacen(ADDRESS, "  - address: 0.0.0.0:1\n", 1);
    let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        ["listen[0].address", "tls.cert", "limits.max_frame_bytes"]
    );
}
