//! Distinguished-name helpers: attribute short names, decoding attribute values to text, and
//! the RFC 4514 string form of a subject for audit records.
//!
//! The string form follows RFC 4514 (last RDN first, `,` between RDNs, `+` inside one,
//! backslash escapes) with one deliberate difference: control characters are written as `\XX`
//! hex escapes, so a subject can never break a log line.

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::der_parser::oid::Oid;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Short attribute names accepted in configuration and used when printing subjects, with
/// their OIDs (RFC 4514 section 3, RFC 4519, and PKCS #9 emailAddress).
const SHORT_NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("serialNumber", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("postalCode", "2.5.4.17"),
    ("GN", "2.5.4.42"),
    ("initials", "2.5.4.43"),
    ("dnQualifier", "2.5.4.46"),
    ("pseudonym", "2.5.4.65"),
    ("organizationIdentifier", "2.5.4.97"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
];

/// Resolves a short name (case-insensitive, RFC 4514) or a dotted OID to the dotted OID.
pub(crate) fn attribute_oid(name: &str) -> Option<String> {
    if let Some((_, oid)) = SHORT_NAMES
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
    {
        return Some((*oid).to_owned());
    }

    // A dotted OID needs at least two arcs; parsing normalises it the way certificate OIDs
    // are printed, so comparisons are exact.
    if !name.contains('.') || !name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let oid: Oid<'static> = name.parse().ok()?;
    Some(oid.to_id_string())
}

/// The printable short name for an OID, if it has one.
fn short_name(oid: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(short, _)| *short)
}

/// The attribute's value as text, for the string types a name may use. `None` for any other
/// type (such a value can never match an identity pattern).
pub(crate) fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(text) = attr.as_str() {
        return Some(text.to_owned());
    }

    let value = attr.attr_value();
    if value.tag() != Tag::BmpString {
        return None;
    }
    // BMPString is UCS-2 big-endian; an odd length or unpaired surrogate is not text.
    let data = value.data;
    if data.len() % 2 != 0 {
        return None;
    }
    let units = data
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// The subject in RFC 4514 form, for audit logs.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();

    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, attr);
        }
    }
    out
}

fn write_attribute(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    let oid = attr.attr_type().to_id_string();
    match short_name(&oid) {
        Some(short) => out.push_str(short),
        None => out.push_str(&oid),
    }
    out.push('=');

    match attribute_text(attr) {
        Some(text) => escape_value(out, &text),
        None => {
            // RFC 4514 section 2.4: a value that is not a string is written as '#' and the
            // hex of its BER encoding.
            let der = attr.attr_value().to_der_vec().unwrap_or_default();
            out.push('#');
            out.push_str(&crate::hex(&der));
        }
    }
}

fn escape_value(out: &mut String, text: &str) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if c.is_control() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{byte:02x}");
            }
        } else if special {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_dotted_oids_resolve() {
        assert_eq!(attribute_oid("OU").as_deref(), Some("2.5.4.11"));
        assert_eq!(attribute_oid("ou").as_deref(), Some("2.5.4.11"));
        assert_eq!(
            attribute_oid("emailaddress").as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
        assert_eq!(
            attribute_oid("1.3.6.1.4.1.55555.1").as_deref(),
            Some("1.3.6.1.4.1.55555.1")
        );

        assert_eq!(attribute_oid("Nickname"), None);
        assert_eq!(attribute_oid("1"), None);
        assert_eq!(attribute_oid("1..3"), None);
        assert_eq!(attribute_oid(""), None);
    }

    #[test]
    fn values_are_escaped_per_rfc4514() {
        let mut out = String::new();
        escape_value(&mut out, "#a, b+c;<d>\"e\\ ");
        assert_eq!(out, "\\#a\\, b\\+c\\;\\<d\\>\\\"e\\\\\\ ");

        let mut out = String::new();
        escape_value(&mut out, " x\u{0}y\n");
        assert_eq!(out, "\\ x\\00y\\0a");
    }
}
