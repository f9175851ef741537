//! `identity.proof` and the per-client limits.

use std::time::Duration;

use crate::{ok, plus, refused, with};

fn with_proof(lines: &str) -> String {
    with(
        "  pattern: '^spiffe://example\\.org/tenant/([0-9a-f-]{36})$'\n",
        &format!(
            "  pattern: '^spiffe://example\\.org/tenant/([0-9a-f-]{{36}})$'\n  proof:\n{lines}"
        ),
    )
}

#[test]
fn proof_is_off_by_default_and_has_default_setting_names() {
    assert!(ok(crate::BASE).identity.proof.is_none());
    let config = ok(&with_proof("    key_file: proof.key\n"));
    let proof = config.identity.proof.expect("proof mode on");
    assert!(proof.key_file.is_absolute() && proof.key_file.ends_with("proof.key"));
    assert_eq!(proof.setting, "app.identity_proof");
    assert_eq!(proof.nonce_setting, "app.identity_nonce");
}

#[test]
fn proof_settings_must_be_custom_distinct_and_not_the_identity() {
    let problem = refused(
        &with_proof("    key_file: k\n    setting: nodot\n"),
        "identity.proof.setting",
        "a custom setting name",
    );
    assert_eq!(problem.found, "nodot");
    refused(
        &with_proof("    key_file: k\n    setting: App.Current_User_Id\n"),
        "identity.proof.setting",
        "other than the identity settings",
    );
    refused(
        &with_proof("    key_file: k\n    setting: a.b\n    nonce_setting: A.B\n"),
        "identity.proof.nonce_setting",
        "other than identity.proof.setting",
    );
    refused(
        &with_proof("    key_file: ''\n"),
        "identity.proof.key_file",
        "a file path",
    );
}

#[test]
fn client_limits_default_and_zero_means_off() {
    let limits = ok(crate::BASE).limits;
    assert_eq!(limits.max_connections_per_identity, None);
    assert_eq!(limits.client_idle_timeout, None);
    assert_eq!(
        limits.idle_in_transaction_timeout,
        Some(Duration::from_secs(60))
    );

    let limits = ok(&plus(
        "limits:\n  max_connections_per_identity: 3\n  client_idle_timeout: 5m\n  \
         idle_in_transaction_timeout: 0s\n",
    ))
    .limits;
    assert_eq!(limits.max_connections_per_identity, Some(3));
    assert_eq!(limits.client_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(limits.idle_in_transaction_timeout, None);

    refused(
        &plus("limits:\n  max_connections_per_identity: -1\n"),
        "limits.max_connections_per_identity",
        "a whole number",
    );
}
