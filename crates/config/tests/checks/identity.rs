//! `identity`: source field, attribute, pattern and settings.

use crate::{ok, refused, with, BASE};
use pgcordon_config::IdentitySource;

const FROM: &str = "  from: san_uri\n";
const PATTERN: &str = "  pattern: '^spiffe://example\\.org/tenant/([0-9a-f-]{36})$'\n";

fn pattern(p: &str) -> String {
    with(PATTERN, &format!("  pattern: '{p}'\n"))
}

#[test]
fn pattern_must_compile() {
    let problem = refused(
        &pattern("^(unclosed$"),
        "identity.pattern",
        "a valid regular expression",
    );
    assert!(problem.found.contains("unclosed group"), "{problem:?}");
    refused(&pattern(""), "identity.pattern", "a regular expression");
}

#[test]
fn pattern_has_at_most_one_capture_group() {
    let problem = refused(
        &pattern("^(a)-(b)$"),
        "identity.pattern",
        "at most one capture group",
    );
    assert_eq!(problem.found, "2 capture groups");
    refused(
        &pattern("^(?P<x>a)(b)$"),
        "identity.pattern",
        "at most one capture group",
    );
    // Non-capturing groups do not count.
    ok(&pattern("^(?:a|b)-([0-9]+)$"));
}

#[test]
fn identity_is_the_capture_or_the_whole_match() {
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let spiffe = format!("spiffe://example.org/tenant/{uuid}");
    let captured = ok(BASE);
    assert_eq!(captured.identity.pattern.extract(&spiffe), Some(uuid));
    assert_eq!(
        captured
            .identity
            .pattern
            .extract("spiffe://evil.org/tenant/x"),
        None
    );

    let whole = ok(&pattern("^[a-z]+-[0-9]+$"));
    assert_eq!(
        whole.identity.pattern.extract("tenant-42"),
        Some("tenant-42")
    );
    assert_eq!(whole.identity.pattern.as_str(), "^[a-z]+-[0-9]+$");
}

#[test]
fn from_names_a_known_field() {
    let problem = refused(
        &with(FROM, "  from: san_email\n"),
        "identity.from",
        "one of subject_cn",
    );
    assert_eq!(problem.found, "\"san_email\"");
    refused(&with(FROM, ""), "identity.from", "required key");
    for (name, source) in [
        ("subject_cn", IdentitySource::SubjectCn),
        ("san_uri", IdentitySource::SanUri),
        ("san_dns", IdentitySource::SanDns),
    ] {
        assert_eq!(
            ok(&with(FROM, &format!("  from: {name}\n"))).identity.from,
            source
        );
    }
}

#[test]
fn attribute_is_required_with_subject_attribute_only() {
    let missing = with(FROM, "  from: subject_attribute\n");
    refused(
        &missing,
        "identity.attribute",
        "required when `from: subject_attribute`",
    );

    let stray = with(FROM, "  from: san_uri\n  attribute: OU\n");
    let problem = refused(
        &stray,
        "identity.attribute",
        "only with `from: subject_attribute`",
    );
    assert!(problem.found.contains("san_uri"), "{problem:?}");
}

#[test]
fn attribute_is_a_short_name_or_an_oid() {
    let attribute = |a: &str| {
        with(
            FROM,
            &format!("  from: subject_attribute\n  attribute: '{a}'\n"),
        )
    };
    let check = |a: &str, name: &str, oid: &str| {
        let IdentitySource::SubjectAttribute(found) = ok(&attribute(a)).identity.from else {
            panic!("subject_attribute expected for {a}");
        };
        assert_eq!(
            (found.name.as_str(), found.oid.as_str()),
            (name, oid),
            "{a}"
        );
    };
    check("OU", "OU", "2.5.4.11");
    check("ou", "OU", "2.5.4.11");
    check("emailaddress", "emailAddress", "1.2.840.113549.1.9.1");
    check("UID", "UID", "0.9.2342.19200300.100.1.1");
    check("2.5.4.97", "2.5.4.97", "2.5.4.97");

    for bad in ["Department", "2.5.x", "7.1", ""] {
        let problem = refused(&attribute(bad), "identity.attribute", "a dotted OID");
        assert!(problem.expected.contains("emailAddress"), "{problem:?}");
    }
}

#[test]
fn settings_default_to_app_current_user_id() {
    assert_eq!(ok(BASE).identity.settings, ["app.current_user_id"]);
}

#[test]
fn settings_are_custom_names_listed_once() {
    let settings = |s: &str| with(PATTERN, &format!("{PATTERN}  settings: {s}\n"));
    let config = ok(&settings("[App.Tenant_ID, audit.tenant_id, a.b.c$1]"));
    assert_eq!(
        config.identity.settings,
        ["app.tenant_id", "audit.tenant_id", "a.b.c$1"]
    );

    let problem = refused(
        &settings("[current_user_id]"),
        "identity.settings[0]",
        "custom setting",
    );
    assert_eq!(problem.found, "\"current_user_id\"");
    refused(
        &settings("[app.ok, app.1bad]"),
        "identity.settings[1]",
        "custom setting",
    );
    refused(
        &settings("[app.user-id]"),
        "identity.settings[0]",
        "custom setting",
    );
    refused(
        &settings("[app.x, APP.X]"),
        "identity.settings[1]",
        "each setting listed once",
    );
    refused(&settings("[]"), "identity.settings", "at least one");
    refused(
        &settings("app.current_user_id"),
        "identity.settings",
        "a list",
    );
}
