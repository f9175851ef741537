//! Cheap readers for the few message fields pgcordon acts on. Each takes a message body (after
//! tag and length) and returns `None` on a malformed body instead of panicking: bodies from
//! clients are untrusted.

/// The SQL text of a Query ('Q') body, without its terminator.
pub fn query_text(body: &[u8]) -> Option<&[u8]> {
    let (&0, text) = body.split_last()? else {
        return None;
    };
    Some(text)
}

/// Statement name and SQL text of a Parse ('P') body.
pub fn parse_head(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let name_end = body.iter().position(|b| *b == 0)?;
    let rest = &body[name_end + 1..];
    let text_end = rest.iter().position(|b| *b == 0)?;
    Some((&body[..name_end], &rest[..text_end]))
}

/// Portal name and statement name of a Bind ('B') body.
pub fn bind_head(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let portal_end = body.iter().position(|b| *b == 0)?;
    let rest = &body[portal_end + 1..];
    let stmt_end = rest.iter().position(|b| *b == 0)?;
    Some((&body[..portal_end], &rest[..stmt_end]))
}

/// Kind ('S' statement or 'P' portal) and name of a Describe ('D') or Close ('C') body.
pub fn target_of(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some((kind, &rest[..end]))
}

/// The status byte of a ReadyForQuery ('Z') body.
pub fn ready_status(body: &[u8]) -> Option<u8> {
    match body {
        [status] => Some(*status),
        _ => None,
    }
}

/// The fields of an ErrorResponse or NoticeResponse that pgcordon logs or maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub detail: Option<String>,
}

/// Reads an ErrorResponse/NoticeResponse body; unknown fields are skipped, a truncated body
/// yields the fields read so far.
pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let Some(end) = tail.iter().position(|b| *b == 0) else {
            break;
        };
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'V' => fields.severity = Some(value),
            b'S' if fields.severity.is_none() => fields.severity = Some(value),
            b'C' => fields.code = Some(value),
            b'M' => fields.message = Some(value),
            b'D' => fields.detail = Some(value),
            _ => {}
        }
        rest = &tail[end + 1..];
    }
    fields
}

/// The command tag of a CommandComplete ('C') body.
pub fn command_tag(body: &[u8]) -> Option<&[u8]> {
    query_text(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_accept_well_formed_bodies() {
        assert_eq!(query_text(b"SELECT 1\0"), Some(&b"SELECT 1"[..]));
        assert_eq!(
            parse_head(b"s1\0SELECT $1\0\0\x01\0\0\0\x17"),
            Some((&b"s1"[..], &b"SELECT $1"[..]))
        );
        assert_eq!(bind_head(b"p\0s1\0\0\0"), Some((&b"p"[..], &b"s1"[..])));
        assert_eq!(target_of(b"Sfoo\0"), Some((b'S', &b"foo"[..])));
        assert_eq!(ready_status(b"I"), Some(b'I'));
    }

    #[test]
    fn readers_return_none_on_truncated_bodies() {
        assert_eq!(query_text(b"SELECT 1"), None);
        assert_eq!(query_text(b""), None);
        assert_eq!(parse_head(b"s1\0SELECT"), None);
        assert_eq!(parse_head(b""), None);
        assert_eq!(bind_head(b"p"), None);
        assert_eq!(target_of(b""), None);
        assert_eq!(target_of(b"S"), None);
        assert_eq!(ready_status(b"IT"), None);
        assert_eq!(error_fields(b"Cabc"), ErrorFields::default());
    }
}
