//! The YAML document as a tree of positioned nodes.
//!
//! Owns the first pass of loading: serde-saphyr parses the text into [`Node`]s, each wrapped in
//! a `Spanned` that remembers its line and column. Keeping the tree (instead of deserialising
//! straight into structs) lets every later error name its key path and position, including the
//! errors of cross-field validation. It does not know the pgcordon schema.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

use crate::error::Position;

/// A YAML node with its position.
pub(crate) type Located = Spanned<Node>;

/// One YAML value, typed the way YAML 1.2's core schema reads plain scalars.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Located>),
    Map(Vec<(Located, Located)>),
}

/// Parses one YAML document into a positioned tree.
///
/// Duplicate keys and multiple documents are errors. Only the YAML 1.2 spellings of booleans
/// count as booleans, so `level: off` stays the string `off`.
pub(crate) fn parse(text: &str) -> Result<Located, serde_saphyr::Error> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(text, options)
}

/// The position of a node, if the parser recorded one.
pub(crate) fn position(node: &Located) -> Option<Position> {
    let location = node.referenced;
    (location.line() > 0).then(|| Position {
        line: location.line(),
        column: location.column(),
    })
}

/// The position of the value at a key path such as `listen[1].address`.
///
/// When the path does not exist in full (a missing key), this returns the position of the
/// deepest part that does, so an error about a missing key points at its parent mapping.
pub(crate) fn locate(root: &Located, key: &str) -> Option<Position> {
    let mut node = root;
    for step in steps(key) {
        let next = match (step, &node.value) {
            (Step::Key(name), Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Node::Str(s) if s == name))
                .map(|(_, v)| v),
            (Step::Index(i), Node::Seq(items)) => items.get(i),
            _ => None,
        };
        let Some(next) = next else { break };
        node = next;
    }
    position(node)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step<'k> {
    Key(&'k str),
    Index(usize),
}

/// Splits `a.b[2].c` into steps. Schema keys hold no dots or brackets, so this is unambiguous.
fn steps(key: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        for index in rest.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

// ---- building the tree through serde ----

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Signed(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Unsigned(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = access.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_split_keys_and_indexes() {
        assert_eq!(
            steps("listen[1].address"),
            vec![Step::Key("listen"), Step::Index(1), Step::Key("address")]
        );
        assert_eq!(steps(""), Vec::<Step<'_>>::new());
    }

    #[test]
    fn locate_finds_values_and_falls_back_to_parents() {
        let tree = parse("pool:\n  size: 4\nlisten:\n  - address: a\n  - address: b\n").unwrap();
        assert_eq!(
            locate(&tree, "pool.size"),
            Some(Position { line: 2, column: 9 })
        );
        assert_eq!(
            locate(&tree, "listen[1].address"),
            Some(Position {
                line: 5,
                column: 14
            })
        );
        // A missing key points at the mapping that should hold it.
        assert_eq!(
            locate(&tree, "pool.min_idle"),
            Some(Position { line: 2, column: 3 })
        );
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        let tree = parse("a: off\nb: true\nc: 0x10\nd: 1.5\ne: '12'\nf:\n").unwrap();
        let Node::Map(entries) = &tree.value else {
            panic!("expected a mapping")
        };
        let values: Vec<String> = entries
            .iter()
            .map(|(_, v)| format!("{:?}", v.value))
            .collect();
        assert_eq!(
            values,
            [
                "Str(\"off\")",
                "Bool(true)",
                "Unsigned(16)",
                "Float(1.5)",
                "Str(\"12\")",
                "Null"
            ]
        );
    }
}
