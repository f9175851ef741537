//! Session parameters a client owns under transaction pooling: which ones are tracked, their
//! canonical forms, and the server defaults a new client starts from.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Parameters pgcordon carries from one backend session to the next for a client. The first
/// ones are reported by the server with ParameterStatus; the last two are not, so their values
/// on a backend are known only from what pgcordon itself set.
pub const TRACKED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
    "standard_conforming_strings",
    "default_transaction_read_only",
    "extra_float_digits",
    "search_path",
];

/// The tracked parameters the server does not report.
pub const UNREPORTED: &[&str] = &["extra_float_digits", "search_path"];

/// Parameters reported to clients at startup, besides the tracked ones.
pub const REPORTED_FIXED: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
];

/// The canonical name of a tracked parameter, matched case-insensitively as PostgreSQL does.
pub fn tracked_name(name: &str) -> Option<&'static str> {
    TRACKED
        .iter()
        .copied()
        .find(|t| t.eq_ignore_ascii_case(name))
}

/// PostgreSQL accepts encoding names loosely ("utf-8", "utf8", "UTF8") and reports the canonical
/// one; compare in that form so a client asking for "utf-8" does not look changed forever.
pub fn canonical_value<'v>(name: &str, value: &'v str) -> Cow<'v, str> {
    if name == "client_encoding" {
        Cow::Owned(
            value
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect::<String>()
                .to_ascii_uppercase(),
        )
    } else {
        Cow::Borrowed(value)
    }
}

/// Client encodings whose multi-byte characters can contain ASCII bytes such as `\\` and `'`.
/// The server and the statement guard would then split the same text differently, so pgcordon
/// refuses them (canonical names, as `canonical_value` gives them).
const UNSAFE_ENCODINGS: &[&str] = &[
    "SJIS",
    "SHIFTJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "WIN936",
    "WIN949",
    "WIN950",
    "CP936",
    "CP949",
    "CP950",
    "SHIFTJIS2004",
];

/// Whether a (canonical) client_encoding is one pgcordon refuses.
pub fn is_unsafe_encoding(canonical: &str) -> bool {
    UNSAFE_ENCODINGS.contains(&canonical)
}

/// What a fresh backend session of this upstream reports, learned from the first session.
#[derive(Debug, Clone, Default)]
pub struct ServerDefaults {
    pub params: BTreeMap<String, String>,
}

impl ServerDefaults {
    /// The starting point of a client's tracked parameters.
    pub fn tracked(&self) -> BTreeMap<String, String> {
        TRACKED
            .iter()
            .filter_map(|name| {
                self.params
                    .get(*name)
                    .map(|v| (name.to_string(), v.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively_and_encodings_canonicalise() {
        assert_eq!(tracked_name("datestyle"), Some("DateStyle"));
        assert_eq!(tracked_name("app.current_user_id"), None);
        assert_eq!(canonical_value("client_encoding", "utf-8"), "UTF8");
        assert_eq!(canonical_value("TimeZone", "utc"), "utc");
        assert!(is_unsafe_encoding(&canonical_value(
            "client_encoding",
            "Shift_JIS"
        )));
        assert!(is_unsafe_encoding(&canonical_value(
            "client_encoding",
            "big5"
        )));
        assert!(!is_unsafe_encoding(&canonical_value(
            "client_encoding",
            "LATIN1"
        )));
    }
}
