//! Named prepared statements under transaction pooling.
//!
//! A client's statement names are its own; on backend sessions pgcordon prepares each statement
//! under a name derived from its text and parameter types (`pgcordon_<hash>`), so clients that
//! use the same name for different SQL never collide, and clients that prepare the same SQL share
//! one backend statement. Each backend session keeps a bounded least-recently-used record of what
//! it has prepared; evicted statements are closed on the server.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

/// Most statements pgcordon keeps prepared on one backend session before closing the least
/// recently used; bounds server memory per session.
pub const BACKEND_CACHE_SIZE: usize = 256;

/// Prefix of every backend statement name pgcordon creates.
const BACKEND_PREFIX: &str = "pgcordon_";

/// A statement a client prepared: its backend name and what a Parse of it carries after the
/// name (the SQL text, its terminator, and the parameter type list).
#[derive(Debug)]
pub struct Statement {
    pub backend_name: String,
    pub parse_rest: Bytes,
}

impl Statement {
    /// The statement's SQL text.
    pub fn sql(&self) -> &[u8] {
        let end = self
            .parse_rest
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.parse_rest.len());
        &self.parse_rest[..end]
    }
}

/// The statements one client has prepared, by the client's name.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Vec<u8>, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<Arc<Statement>> {
        self.by_name.get(name).cloned()
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.by_name.contains_key(name)
    }

    /// Records a Parse body (`name\0rest`) and returns the statement.
    pub fn insert(&mut self, name: &[u8], parse_rest: Bytes) -> Arc<Statement> {
        let statement = Arc::new(Statement {
            backend_name: backend_name(&parse_rest),
            parse_rest,
        });
        self.by_name.insert(name.to_vec(), statement.clone());
        statement
    }

    pub fn remove(&mut self, name: &[u8]) {
        self.by_name.remove(name);
    }
}

/// The backend name of a statement: a hash of its text and parameter types, so equal statements
/// share a name and different ones never do.
pub fn backend_name(parse_rest: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, parse_rest);
    let mut name = String::with_capacity(BACKEND_PREFIX.len() + 24);
    name.push_str(BACKEND_PREFIX);
    for byte in &digest.as_ref()[..12] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Marks `name` as used now on a backend's cache; returns the names to close to stay within
/// [`BACKEND_CACHE_SIZE`] (never `name` itself).
pub fn touch(cache: &mut HashMap<String, u64>, name: &str) -> Vec<String> {
    let tick = cache.values().copied().max().unwrap_or(0) + 1;
    cache.insert(name.to_owned(), tick);
    let mut evicted = Vec::new();
    while cache.len() > BACKEND_CACHE_SIZE {
        let Some(oldest) = cache
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .min_by_key(|(_, t)| **t)
            .map(|(n, _)| n.clone())
        else {
            break;
        };
        cache.remove(&oldest);
        evicted.push(oldest);
    }
    evicted
}

/// A tagged message: tag, length, body parts.
fn message(tag: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(len + 1);
    out.put_u8(tag);
    out.put_i32(len as i32);
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// Parse of `name` with a client's statement text and types.
pub fn parse_message(name: &str, parse_rest: &[u8]) -> Bytes {
    message(b'P', &[name.as_bytes(), b"\0", parse_rest])
}

/// Close of statement `name`.
pub fn close_statement(name: &str) -> Bytes {
    message(b'C', &[b"S", name.as_bytes(), b"\0"])
}

/// Describe of statement `name`.
pub fn describe_statement(name: &str) -> Bytes {
    message(b'D', &[b"S", name.as_bytes(), b"\0"])
}

/// A Bind body with its statement name replaced by `statement`.
///
/// Returns `None` on a malformed body.
pub fn rewrite_bind(body: &[u8], statement: &str) -> Option<Bytes> {
    let portal_end = body.iter().position(|b| *b == 0)?;
    let rest = &body[portal_end + 1..];
    let stmt_end = rest.iter().position(|b| *b == 0)?;
    Some(message(
        b'B',
        &[
            &body[..=portal_end],
            statement.as_bytes(),
            b"\0",
            &rest[stmt_end + 1..],
        ],
    ))
}

/// The fixed body-less answers pgcordon may stand in for: ParseComplete ('1'), CloseComplete ('3').
pub fn empty_message(tag: u8) -> [u8; 5] {
    [tag, 0, 0, 0, 4]
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgcordon_wire::{decode_frame, inspect};

    #[test]
    fn equal_statements_share_a_name_and_different_ones_do_not() {
        let a = backend_name(b"SELECT 1\0\0\0");
        assert_eq!(a, backend_name(b"SELECT 1\0\0\0"));
        assert_ne!(a, backend_name(b"SELECT 2\0\0\0"));
        assert_ne!(
            a,
            backend_name(b"SELECT 1\0\0\x01\0\0\0\x17"),
            "types are part of it"
        );
        assert!(a.starts_with("pgcordon_") && a.len() == 9 + 24);
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_but_never_the_one_in_use() {
        let mut cache = HashMap::new();
        for i in 0..BACKEND_CACHE_SIZE {
            assert!(touch(&mut cache, &format!("s{i}")).is_empty());
        }
        touch(&mut cache, "s0"); // s1 is now the oldest
        assert_eq!(touch(&mut cache, "new"), vec!["s1".to_string()]);
        assert_eq!(cache.len(), BACKEND_CACHE_SIZE);
        assert!(cache.contains_key("s0") && cache.contains_key("new"));
    }

    #[test]
    fn rewritten_messages_decode_with_the_new_names() {
        let mut buf = BytesMut::from(
            &rewrite_bind(b"p1\0client\0\0\0\0\x01x\0\0", "pgcordon_ab").unwrap()[..],
        );
        let msg = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(
            inspect::bind_head(msg.body()),
            Some((&b"p1"[..], &b"pgcordon_ab"[..]))
        );
        assert!(msg.body().ends_with(b"\0\0\0\x01x\0\0"));

        let mut buf =
            BytesMut::from(&parse_message("pgcordon_ab", b"SELECT $1\0\0\x01\0\0\0\x17")[..]);
        let msg = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(
            inspect::parse_head(msg.body()),
            Some((&b"pgcordon_ab"[..], &b"SELECT $1"[..]))
        );

        let mut buf = BytesMut::from(&close_statement("x")[..]);
        let msg = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(inspect::target_of(msg.body()), Some((b'S', &b"x"[..])));
        assert_eq!(rewrite_bind(b"p1", "x"), None);
    }
}
