//! Reading identifiers and constants out of the generic parse tree (`node_tree`), for the
//! classifiers.

use crate::node_tree::Tree;

/// The text of a `String` node (an identifier).
pub(crate) fn string_node(node: &Tree) -> Option<&str> {
    let node = node.unwrap_node();
    if node.kind() != Some("String") {
        return None;
    }
    node.field("sval")?.text()
}

/// The value of a string constant (`AConst` holding `Sval`).
pub(crate) fn string_constant(node: &Tree) -> Option<&str> {
    match constant(node)? {
        ("Sval", value) => value.field("sval")?.text(),
        _ => None,
    }
}

pub(crate) fn int_constant(node: &Tree) -> Option<i64> {
    match constant(node)? {
        ("Ival", value) => value.field("ival")?.int(),
        _ => None,
    }
}

/// The chosen value of an `AConst`, as (variant, message).
pub(crate) fn constant(node: &Tree) -> Option<(&'static str, &Tree)> {
    let node = node.unwrap_node();
    if node.kind() != Some("AConst") {
        return None;
    }
    node.field("val")?.choice()
}
