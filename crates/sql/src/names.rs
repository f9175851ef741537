//! The protected setting names: checked once when the guard is built, then matched the way
//! PostgreSQL looks up a setting (ASCII letters compared without case, nothing else folded).
//!
//! Owns only the names; where a name may appear in a statement is decided in `judge` and
//! `prefilter`.

use crate::GuardError;

/// One protected setting, kept in lower case.
#[derive(Debug)]
struct ProtectedName {
    /// The full dotted name, e.g. `app.current_user_id`.
    full: String,
    /// The part after the last dot, e.g. `current_user_id`: a SET statement must spell this
    /// identifier out (possibly quoted or with comments around the dots), so the prefilter
    /// looks for it rather than for the full name.
    last: String,
}

/// The validated set of protected setting names.
#[derive(Debug)]
pub(crate) struct ProtectedNames {
    names: Vec<ProtectedName>,
    /// All names quoted and comma-separated, for messages that cannot name a single one.
    listing: String,
}

impl ProtectedNames {
    /// Validates and normalises the configured names; duplicates (in any case) collapse.
    pub(crate) fn new(configured: &[String]) -> Result<Self, GuardError> {
        let mut names: Vec<ProtectedName> = Vec::with_capacity(configured.len());
        for raw in configured {
            let name = parse_name(raw)?;
            if names.iter().all(|known| known.full != name.full) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(GuardError::NoProtectedSettings);
        }

        let listing = names
            .iter()
            .map(|n| format!("\"{}\"", n.full))
            .collect::<Vec<_>>();
        Ok(ProtectedNames {
            names,
            listing: listing.join(", "),
        })
    }

    /// The canonical (lower-case) protected name equal to `candidate`, compared as
    /// PostgreSQL's setting lookup does: ASCII case-insensitively.
    pub(crate) fn find(&self, candidate: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.full.eq_ignore_ascii_case(candidate))
            .map(|n| n.full.as_str())
    }

    /// The last dotted part of every name, for the prefilter.
    pub(crate) fn last_parts(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| n.last.as_str())
    }

    /// All protected names, quoted and comma-separated.
    pub(crate) fn listing(&self) -> &str {
        &self.listing
    }
}

/// Checks one configured name against PostgreSQL's rule for custom settings (two or more
/// simple identifiers joined by dots), restricted to ASCII so that case-insensitive byte
/// matching in the prefilter is exact.
fn parse_name(raw: &str) -> Result<ProtectedName, GuardError> {
    let invalid = |problem| GuardError::InvalidName {
        name: raw.to_owned(),
        problem,
    };

    if !raw.contains('.') {
        return Err(invalid(
            "expected a custom setting such as \"app.current_user_id\" (two or more identifiers \
             joined by dots); built-in settings cannot be protected by the guard",
        ));
    }
    for part in raw.split('.') {
        let mut chars = part.chars();
        let Some(first) = chars.next() else {
            return Err(invalid("empty part between dots"));
        };
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(invalid(
                "each part must start with an ASCII letter or underscore",
            ));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            return Err(invalid(
                "each part may only hold ASCII letters, digits, '_' and '$'",
            ));
        }
    }

    let full = raw.to_ascii_lowercase();
    let last = full.rsplit('.').next().unwrap_or(&full).to_owned();
    Ok(ProtectedName { full, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Result<ProtectedNames, GuardError> {
        ProtectedNames::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn accepts_custom_names_and_normalises_case() {
        let set = names(&[
            "App.Current_User_Id",
            "app.tenant_id",
            "APP.CURRENT_USER_ID",
        ])
        .expect("valid names");
        assert_eq!(set.listing(), "\"app.current_user_id\", \"app.tenant_id\"");
        assert_eq!(set.find("APP.current_USER_ID"), Some("app.current_user_id"));
        assert_eq!(set.find("app.tenant"), None);
        assert_eq!(
            set.last_parts().collect::<Vec<_>>(),
            ["current_user_id", "tenant_id"]
        );
    }

    #[test]
    fn accepts_three_parts_and_dollar() {
        let set = names(&["a.b$.c_1"]).expect("valid name");
        assert_eq!(set.last_parts().collect::<Vec<_>>(), ["c_1"]);
    }

    #[test]
    fn rejects_what_postgres_would_not_call_a_custom_setting() {
        for bad in [
            "search_path",
            "app.",
            ".x",
            "app..x",
            "app.1x",
            "app.x-y",
            "app.\u{e9}",
            " app.x",
        ] {
            let err = names(&[bad]).expect_err(bad);
            assert!(
                matches!(err, GuardError::InvalidName { ref name, .. } if name == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_an_empty_list() {
        assert!(matches!(names(&[]), Err(GuardError::NoProtectedSettings)));
    }
}
