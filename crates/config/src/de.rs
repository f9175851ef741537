//! A serde `Deserializer` over the positioned tree that knows the key path it is reading.
//!
//! Owns the second pass of loading: the raw structs (`raw`) are derived with serde and read
//! from the tree through [`NodeDeserializer`], so that a type error, an unknown key or a
//! missing key comes back as a [`Problem`] naming `pool.size` and its line, not as a bare
//! "invalid type". It does not check values beyond their types; that is `validate`.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected};
use serde::forward_to_deserialize_any;
use std::fmt;

use crate::error::{Position, Problem};
use crate::tree::{position, Located, Node};

/// A deserialisation failure, with the key path attached on its way out of the tree.
#[derive(Debug)]
pub(crate) struct DeError {
    problem: Problem,
    /// Set until the error has passed the node it belongs to.
    unplaced: bool,
    /// For a missing key: its name, appended to the path of the mapping that lacks it.
    missing: Option<&'static str>,
}

impl DeError {
    fn new(expected: impl Into<String>, found: impl Into<String>) -> Self {
        let problem = Problem {
            key: String::new(),
            expected: expected.into(),
            found: found.into(),
            position: None,
        };
        DeError {
            problem,
            unplaced: true,
            missing: None,
        }
    }

    /// Attaches the innermost key path and position; outer nodes leave it alone.
    fn place(mut self, key: &str, position: Option<Position>) -> Self {
        if !self.unplaced {
            return self;
        }
        self.unplaced = false;
        self.problem.key = match self.missing.take() {
            Some(field) => join(key, field),
            None => key.to_owned(),
        };
        self.problem.position = position;
        self
    }

    pub(crate) fn into_problem(self) -> Problem {
        self.problem
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), "a value that does not fit")
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::new(plain_expected(expected), describe(unexpected))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::new(plain_expected(expected), describe(unexpected))
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        DeError::new(plain_expected(expected), format!("{len} elements"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(one_of(expected), format!("{variant:?}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let expected = format!("one of the keys {}", list(expected));
        DeError::new(expected, format!("the unknown key {field:?}"))
    }

    fn missing_field(field: &'static str) -> Self {
        let mut error = DeError::new("a value for this required key", "no such key");
        error.missing = Some(field);
        error
    }
}

/// Words an operator reads, for serde's own expectation texts.
fn plain_expected(expected: &dyn de::Expected) -> String {
    let text = expected.to_string();
    match text.as_str() {
        "a sequence" => "a list".to_owned(),
        "a boolean" => "true or false".to_owned(),
        _ => text,
    }
}

/// Describes a YAML value the way the operator wrote it.
pub(crate) fn describe(unexpected: Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unsigned(n) => format!("the integer {n}"),
        Unexpected::Signed(n) => format!("the integer {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Str(s) => format!("the string {s:?}"),
        Unexpected::Unit => "an empty value".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [only] => format!("{only:?}"),
        _ => format!("one of {}", list(names)),
    }
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

fn unexpected(node: &Node) -> Unexpected<'_> {
    match node {
        Node::Null => Unexpected::Unit,
        Node::Bool(b) => Unexpected::Bool(*b),
        Node::Signed(n) => Unexpected::Signed(*n),
        Node::Unsigned(n) => Unexpected::Unsigned(*n),
        Node::Float(n) => Unexpected::Float(*n),
        Node::Str(s) => Unexpected::Str(s),
        Node::Seq(_) => Unexpected::Seq,
        Node::Map(_) => Unexpected::Map,
    }
}

// ---- the deserializer ----

/// Reads one node of the tree; `key` is its path from the document root.
pub(crate) struct NodeDeserializer<'a> {
    node: &'a Located,
    key: String,
}

impl<'a> NodeDeserializer<'a> {
    /// A deserializer for the whole document.
    pub(crate) fn root(node: &'a Located) -> Self {
        NodeDeserializer {
            node,
            key: String::new(),
        }
    }

    fn place(&self, error: DeError) -> DeError {
        error.place(&self.key, position(self.node))
    }

    fn mismatch(&self, expected: &str) -> DeError {
        self.place(DeError::new(
            expected,
            describe(unexpected(&self.node.value)),
        ))
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Signed(n) => visitor.visit_i64(*n),
            Node::Unsigned(n) => visitor.visit_u64(*n),
            Node::Float(n) => visitor.visit_f64(*n),
            Node::Str(s) => visitor.visit_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqWalker::new(items, &self.key)),
            Node::Map(entries) => visitor.visit_map(MapWalker::new(entries, &self.key)),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Node::Null => visitor.visit_none().map_err(|e| self.place(e)),
            _ => visitor.visit_some(self),
        }
    }

    /// A section must be a mapping; an empty section (`pool:` with nothing under it) reads as
    /// an empty mapping, so commenting out every key of a section keeps the defaults.
    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let entries: &[(Located, Located)] = match &self.node.value {
            Node::Map(entries) => entries,
            Node::Null => &[],
            _ => return Err(self.mismatch("a mapping of keys")),
        };
        visitor
            .visit_map(MapWalker::new(entries, &self.key))
            .map_err(|e| self.place(e))
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Node::Str(text) = &self.node.value else {
            return Err(self.mismatch(&one_of(variants)));
        };
        let access: de::value::StrDeserializer<'_, DeError> = text.as_str().into_deserializer();
        visitor.visit_enum(access).map_err(|e| self.place(e))
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct SeqWalker<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Located>>,
    parent: &'a str,
}

impl<'a> SeqWalker<'a> {
    fn new(items: &'a [Located], parent: &'a str) -> Self {
        SeqWalker {
            items: items.iter().enumerate(),
            parent,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqWalker<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let key = format!("{}[{index}]", self.parent);
        seed.deserialize(NodeDeserializer { node, key }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapWalker<'a> {
    entries: std::slice::Iter<'a, (Located, Located)>,
    parent: &'a str,
    /// The value of the key just read, with its path.
    pending: Option<(&'a Located, String)>,
}

impl<'a> MapWalker<'a> {
    fn new(entries: &'a [(Located, Located)], parent: &'a str) -> Self {
        MapWalker {
            entries: entries.iter(),
            parent,
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for MapWalker<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key_node, value)) = self.entries.next() else {
            return Ok(None);
        };
        // Derived structs read an integer key as a field index, so `0:` would silently mean
        // the first field. Only text names a key.
        let Node::Str(name) = &key_node.value else {
            let found = describe(unexpected(&key_node.value));
            let error = DeError::new("a key name (text)", found);
            return Err(error.place(self.parent, position(key_node)));
        };
        let key = join(self.parent, name);
        self.pending = Some((value, key.clone()));
        seed.deserialize(NodeDeserializer {
            node: key_node,
            key,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, key)) = self.pending.take() else {
            return Err(de::Error::custom("a key before its value"));
        };
        seed.deserialize(NodeDeserializer { node, key })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
