//! Validation of the `identity` section: certificate field, pattern, and target settings.
//!
//! The rules here protect the identity injection: a pattern with several capture groups would
//! make "the identity" ambiguous, and a setting name PostgreSQL would not accept as a custom
//! setting would make every injection fail at run time instead of at start-up.

use regex::Regex;

use super::Check;
use crate::defaults;
use crate::model::{Identity, IdentityPattern, IdentitySource, Proof, SubjectAttribute};
use crate::raw::{RawIdentity, RawIdentityFrom, RawProof};

/// Short names accepted for `identity.attribute`, with their OIDs (X.520 and PKCS #9).
const ATTRIBUTES: [(&str, &str); 9] = [
    ("CN", "2.5.4.3"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("C", "2.5.4.6"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("serialNumber", "2.5.4.5"),
    ("UID", "0.9.2342.19200300.100.1.1"),
];

impl Check {
    pub(super) fn identity(&mut self, raw: RawIdentity) -> Option<Identity> {
        let from = self.identity_source(raw.from, raw.attribute.as_deref());
        let pattern = self.pattern(&raw.pattern);
        let settings = self.settings(raw.settings);
        let proof = match raw.proof {
            None => Some(None),
            Some(proof) => self
                .proof(proof, settings.as_deref().unwrap_or_default())
                .map(Some),
        };
        Some(Identity {
            from: from?,
            pattern: pattern?,
            settings: settings?,
            proof: proof?,
        })
    }

    fn proof(&mut self, raw: RawProof, identity_settings: &[String]) -> Option<Proof> {
        let key_file = self.path("identity.proof.key_file", &raw.key_file);
        let mut name = |key: &str, value: Option<String>, default: &str| {
            let value = value
                .unwrap_or_else(|| default.to_owned())
                .to_ascii_lowercase();
            if !is_custom_setting(&value) {
                self.add(key, "a custom setting name like app.identity_proof", value);
                return None;
            }
            if identity_settings.contains(&value) {
                self.add(key, "a setting other than the identity settings", value);
                return None;
            }
            Some(value)
        };
        let setting = name(
            "identity.proof.setting",
            raw.setting,
            defaults::PROOF_SETTING,
        );
        let nonce = name(
            "identity.proof.nonce_setting",
            raw.nonce_setting,
            defaults::PROOF_NONCE_SETTING,
        );
        if let (Some(a), Some(b)) = (&setting, &nonce) {
            if a == b {
                self.add(
                    "identity.proof.nonce_setting",
                    "a setting other than identity.proof.setting",
                    b.clone(),
                );
                return None;
            }
        }
        Some(Proof {
            key_file: key_file?,
            setting: setting?,
            nonce_setting: nonce?,
        })
    }

    fn identity_source(
        &mut self,
        from: RawIdentityFrom,
        attribute: Option<&str>,
    ) -> Option<IdentitySource> {
        let source = match (from, attribute) {
            (RawIdentityFrom::SubjectAttribute, Some(name)) => {
                IdentitySource::SubjectAttribute(self.attribute(name)?)
            }
            (RawIdentityFrom::SubjectAttribute, None) => {
                let expected = "an attribute name (such as OU) or OID, required when \
                                `from: subject_attribute`";
                self.add("identity.attribute", expected, "no such key");
                return None;
            }
            (other, Some(_)) => {
                let expected = "no `attribute` key: it is used only with `from: subject_attribute`";
                let found = format!("an attribute with `from: {}`", name_of(other));
                self.add("identity.attribute", expected, found);
                return None;
            }
            (RawIdentityFrom::SubjectCn, None) => IdentitySource::SubjectCn,
            (RawIdentityFrom::SanUri, None) => IdentitySource::SanUri,
            (RawIdentityFrom::SanDns, None) => IdentitySource::SanDns,
        };
        Some(source)
    }

    fn attribute(&mut self, name: &str) -> Option<SubjectAttribute> {
        // Short names are matched without regard to case; the usual spelling is kept.
        if let Some((short, oid)) = ATTRIBUTES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Some(SubjectAttribute {
                name: (*short).to_owned(),
                oid: (*oid).to_owned(),
            });
        }
        if is_dotted_oid(name) {
            return Some(SubjectAttribute {
                name: name.to_owned(),
                oid: name.to_owned(),
            });
        }
        let names: Vec<&str> = ATTRIBUTES.iter().map(|(n, _)| *n).collect();
        let expected = format!(
            "one of {} or a dotted OID such as 2.5.4.11",
            names.join(", ")
        );
        self.add("identity.attribute", expected, format!("{name:?}"));
        None
    }

    fn pattern(&mut self, pattern: &str) -> Option<IdentityPattern> {
        if pattern.is_empty() {
            self.add(
                "identity.pattern",
                "a regular expression",
                "an empty string",
            );
            return None;
        }
        let regex = match Regex::new(pattern) {
            Ok(regex) => regex,
            Err(error) => {
                let found = format!("{pattern:?}, which does not compile: {}", reason(&error));
                self.add("identity.pattern", "a valid regular expression", found);
                return None;
            }
        };
        // Group 0 is the whole match; more than one explicit group makes the identity ambiguous.
        let groups = regex.captures_len() - 1;
        if groups > 1 {
            let expected = "at most one capture group (use (?:...) for grouping)";
            self.add(
                "identity.pattern",
                expected,
                format!("{groups} capture groups"),
            );
            return None;
        }
        Some(IdentityPattern::new(regex))
    }

    fn settings(&mut self, raw: Option<Vec<String>>) -> Option<Vec<String>> {
        let Some(raw) = raw else {
            return Some(vec![defaults::IDENTITY_SETTING.to_owned()]);
        };
        if raw.is_empty() {
            self.add(
                "identity.settings",
                "at least one setting name",
                "an empty list",
            );
            return None;
        }
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, name) in raw.iter().enumerate() {
            let key = format!("identity.settings[{index}]");
            if !is_custom_setting(name) {
                let expected = "a custom setting name: two or more identifiers joined by dots, \
                                such as app.current_user_id";
                self.add(key, expected, format!("{name:?}"));
                ok = false;
                continue;
            }
            // PostgreSQL folds setting names to lower case: App.User and app.user are one.
            let folded = name.to_ascii_lowercase();
            if out.contains(&folded) {
                self.add(
                    key,
                    "each setting listed once",
                    format!("{name:?} a second time"),
                );
                ok = false;
                continue;
            }
            out.push(folded);
        }
        ok.then_some(out)
    }
}

fn name_of(from: RawIdentityFrom) -> &'static str {
    match from {
        RawIdentityFrom::SubjectCn => "subject_cn",
        RawIdentityFrom::SanUri => "san_uri",
        RawIdentityFrom::SanDns => "san_dns",
        RawIdentityFrom::SubjectAttribute => "subject_attribute",
    }
}

/// The regex crate's explanation without its multi-line caret drawing.
fn reason(error: &regex::Error) -> String {
    let text = error.to_string();
    match text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
    {
        Some(line) => line.to_owned(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Two or more identifiers (`[A-Za-z_][A-Za-z0-9_$]*`) joined by dots: the names PostgreSQL
/// accepts for custom (placeholder) settings.
pub(crate) fn is_custom_setting(name: &str) -> bool {
    name.split('.').count() >= 2 && name.split('.').all(is_identifier)
}

/// An unquoted SQL identifier: a letter or `_`, then letters, digits, `_` or `$`.
pub(crate) fn is_identifier(part: &str) -> bool {
    let mut bytes = part.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// A dotted object identifier: at least two arcs of decimal digits without leading zeros, the
/// first 0, 1 or 2, and the second below 40 when the first is 0 or 1 (X.660).
pub(crate) fn is_dotted_oid(text: &str) -> bool {
    let arcs: Vec<&str> = text.split('.').collect();
    let arc_ok = |arc: &&str| {
        !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (*arc == "0" || !arc.starts_with('0'))
            && arc.parse::<u64>().is_ok()
    };
    if arcs.len() < 2 || !arcs.iter().all(arc_ok) {
        return false;
    }
    match (arcs[0], arcs[1].parse::<u64>()) {
        ("0" | "1", Ok(second)) => second < 40,
        ("2", Ok(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_setting_names() {
        assert!(is_custom_setting("app.current_user_id"));
        assert!(is_custom_setting("a.b.c"));
        assert!(is_custom_setting("_x.y$1"));
        assert!(!is_custom_setting("current_user_id"));
        assert!(!is_custom_setting("app."));
        assert!(!is_custom_setting(".app"));
        assert!(!is_custom_setting("app.1user"));
        assert!(!is_custom_setting("app.user-id"));
        assert!(!is_custom_setting("app.user id"));
        assert!(!is_custom_setting(""));
    }

    #[test]
    fn dotted_oids() {
        assert!(is_dotted_oid("2.5.4.11"));
        assert!(is_dotted_oid("0.9.2342.19200300.100.1.1"));
        assert!(is_dotted_oid("1.2.840.113549.1.9.1"));
        assert!(!is_dotted_oid("2"));
        assert!(!is_dotted_oid("3.5"));
        assert!(!is_dotted_oid("1.40"));
        assert!(!is_dotted_oid("2.05.4"));
        assert!(!is_dotted_oid("2..4"));
        assert!(!is_dotted_oid("2.5.x"));
    }
}
