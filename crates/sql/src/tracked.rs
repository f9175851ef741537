//! The session parameters pgcordon tracks per client and sets on whichever backend serves it,
//! and how a SET statement's arguments become the value text `set_config` accepts.
//!
//! The rendering follows what the server does with SET arguments (`flatten_set_variable_args`
//! in guc_funcs.c): constants are taken as their value, numbers as written, several
//! arguments are joined with ", ", and for `search_path` (a list of identifiers) each element
//! that would not read back as the same identifier is double-quoted. An identifier written
//! unquoted reaches the tree folded to lower case, as the server folds it.
//!
//! Owns only names and values; which statements set them is decided in `session`.

use crate::constants::constant;
use crate::node_tree::Tree;

/// The parameters the proxy sets on each backend for its client; setting them does not pin a
/// client to its backend. These are the names in their canonical spelling, as the server
/// reports them in ParameterStatus.
pub const TRACKED_PARAMETERS: [&str; 9] = [
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

/// The canonical spelling of a tracked parameter; setting names are case-insensitive.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    TRACKED_PARAMETERS
        .iter()
        .copied()
        .find(|known| known.eq_ignore_ascii_case(name))
}

/// The value text for `SET name = args`, or `None` when an argument is not a plain constant
/// (`SET TIME ZONE INTERVAL '1' HOUR`, for one), which the caller treats as untrackable.
pub(crate) fn render(canonical: &str, args: &[Tree]) -> Option<String> {
    let identifiers = canonical == "search_path";
    let mut value = String::new();
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            value.push_str(", ");
        }
        match constant(arg)? {
            ("Sval", text) if identifiers => {
                quote_identifier(text.field("sval")?.text()?, &mut value)
            }
            ("Sval", text) => value.push_str(text.field("sval")?.text()?),
            ("Fval", float) => value.push_str(float.field("fval")?.text()?),
            ("Ival", int) => value.push_str(&int.field("ival")?.int()?.to_string()),
            ("Boolval", boolean) => {
                let truth = matches!(boolean.field("boolval"), Some(Tree::Flag(true)));
                value.push_str(if truth { "true" } else { "false" });
            }
            _ => return None,
        }
    }
    (!value.is_empty()).then_some(value)
}

/// Appends `name` as an element of an identifier list: bare if it reads back unchanged
/// (lower-case ASCII letters, digits, `_`, `$`, not starting with a digit or `$`), else in
/// double quotes with inner quotes doubled. Quoting a keyword is never needed here: list
/// parsing for `search_path` does not know keywords.
fn quote_identifier(name: &str, out: &mut String) {
    let mut bytes = name.bytes();
    let plain = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        out.push_str(name);
        return;
    }
    out.push('"');
    out.push_str(&name.replace('"', "\"\""));
    out.push('"');
}

/// Whether a `search_path` value names the session's temporary schema. With `pg_temp` first
/// in the path, a plain CREATE TABLE creates a temporary table, so such a path is session
/// state the proxy cannot re-create elsewhere.
pub(crate) fn mentions_temp_schema(value: &str) -> bool {
    contains_ignore_case(value, "pg_temp")
}

/// A boolean written as text, as the server's `parse_bool` reads it: any unique prefix of
/// true/false/yes/no, `on`/`off` (`of` is enough), `1`/`0`, ASCII case-insensitive, with
/// surrounding whitespace.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let lower = text.to_ascii_lowercase();
    let prefix_of = |word: &str| !lower.is_empty() && word.starts_with(lower.as_str());
    match lower.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// ASCII case-insensitive substring search without allocating.
pub(crate) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return true;
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_ignore_case() {
        assert_eq!(canonical("timezone"), Some("TimeZone"));
        assert_eq!(canonical("DATESTYLE"), Some("DateStyle"));
        assert_eq!(canonical("Search_Path"), Some("search_path"));
        assert_eq!(canonical("statement_timeout"), None);
        assert_eq!(canonical("search_path "), None);
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        let quoted = |name: &str| {
            let mut out = String::new();
            quote_identifier(name, &mut out);
            out
        };
        assert_eq!(quoted("public"), "public");
        assert_eq!(quoted("a_1$"), "a_1$");
        assert_eq!(quoted("B C"), "\"B C\"");
        assert_eq!(quoted("$user"), "\"$user\"");
        assert_eq!(quoted("1a"), "\"1a\"");
        assert_eq!(quoted("Tenant"), "\"Tenant\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn booleans_as_the_server_reads_them() {
        for yes in ["t", "TRUE", " yes ", "y", "on", "1", "tr"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes:?}");
        }
        for no in ["f", "False", "n", "no", "off", "of", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no:?}");
        }
        for neither in ["", "o", "maybe", "2", "truth"] {
            assert_eq!(parse_bool(neither), None, "{neither:?}");
        }
    }

    #[test]
    fn temp_schema_mentions() {
        assert!(mentions_temp_schema("pg_temp, public"));
        assert!(mentions_temp_schema("\"$user\", PG_TEMP_3"));
        assert!(!mentions_temp_schema("public, app"));
    }
}
