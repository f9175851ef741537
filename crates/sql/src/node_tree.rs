//! A generic copy of pg_query's parse tree that keeps every message's type name.
//!
//! pg_query's tree types only implement `serde::Serialize`, and a message appears either
//! wrapped in a `Node` (tagged with its type) or directly in a typed field (`setstmt` of
//! ALTER ROLE ... SET, `funccall` of CALL). Serialising into this tree records the type name
//! in both cases, so the rules in `judge` find a `FuncCall` or `VariableSetStmt` wherever it
//! sits, without a list of fields that could go stale when the grammar grows.
//!
//! Owns only the conversion and small accessors; it knows nothing about settings.

use std::fmt;

use serde::ser::{self, Serialize};

/// One value of the parse tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tree {
    /// A message with its type name (`FuncCall`, `VariableSetStmt`, `String`, `Node`, ...)
    /// and its fields in declaration order.
    Message {
        kind: &'static str,
        fields: Vec<(&'static str, Tree)>,
    },
    /// One alternative of a `oneof`: the node inside a `Node`, or the value of an `AConst`
    /// (`Sval`, `Ival`, ...).
    Choice {
        variant: &'static str,
        value: Box<Tree>,
    },
    /// A repeated field.
    List(Vec<Tree>),
    /// A string field.
    Text(String),
    /// An integer field; enums are integers in the tree.
    Int(i64),
    /// A boolean field.
    Flag(bool),
    /// An absent message or a value the guard never inspects (floats, bytes).
    Empty,
}

impl Tree {
    /// Converts a serialisable pg_query value into a tree.
    pub(crate) fn of<T: Serialize>(value: &T) -> Result<Tree, TreeError> {
        value.serialize(Builder)
    }

    /// The message type name, if this is a message.
    pub(crate) fn kind(&self) -> Option<&'static str> {
        match self {
            Tree::Message { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// A field of a message.
    pub(crate) fn field(&self, name: &str) -> Option<&Tree> {
        let Tree::Message { fields, .. } = self else {
            return None;
        };
        fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }

    /// The items of a repeated field (none for anything else).
    pub(crate) fn items(&self) -> &[Tree] {
        match self {
            Tree::List(items) => items,
            _ => &[],
        }
    }

    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Tree::Text(text) => Some(text),
            _ => None,
        }
    }

    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Tree::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The alternative chosen in a `oneof`.
    pub(crate) fn choice(&self) -> Option<(&'static str, &Tree)> {
        match self {
            Tree::Choice { variant, value } => Some((variant, value)),
            _ => None,
        }
    }

    /// The message inside a `Node` wrapper; any other value is returned as it is, so a node
    /// reached through a typed field and one reached through a `Node` look the same.
    pub(crate) fn unwrap_node(&self) -> &Tree {
        if self.kind() != Some("Node") {
            return self;
        }
        match self.field("node").and_then(Tree::choice) {
            Some((_, inner)) => inner,
            None => self,
        }
    }
}

/// Why a value could not be turned into a tree (only for shapes pg_query does not produce).
#[derive(Debug)]
pub(crate) struct TreeError(String);

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TreeError {}

impl ser::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TreeError(msg.to_string())
    }
}

// ---- serde plumbing: a Serializer whose output is a `Tree` --------------------------------

struct Builder;

/// Collects sequence-like values (lists, tuples, maps as key/value pairs).
struct ListBuilder(Vec<Tree>);

/// Collects the fields of a message.
struct MessageBuilder {
    kind: &'static str,
    fields: Vec<(&'static str, Tree)>,
}

impl ser::Serializer for Builder {
    type Ok = Tree;
    type Error = TreeError;
    type SerializeSeq = ListBuilder;
    type SerializeTuple = ListBuilder;
    type SerializeTupleStruct = ListBuilder;
    type SerializeTupleVariant = ListBuilder;
    type SerializeMap = ListBuilder;
    type SerializeStruct = MessageBuilder;
    type SerializeStructVariant = MessageBuilder;

    fn serialize_bool(self, v: bool) -> Result<Tree, TreeError> {
        Ok(Tree::Flag(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Tree, TreeError> {
        Ok(Tree::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Tree, TreeError> {
        Ok(i64::try_from(v).map_or(Tree::Empty, Tree::Int))
    }
    fn serialize_f32(self, _: f32) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_f64(self, _: f64) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_char(self, v: char) -> Result<Tree, TreeError> {
        Ok(Tree::Text(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Tree, TreeError> {
        Ok(Tree::Text(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_none(self) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Tree, TreeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Tree, TreeError> {
        Ok(Tree::Empty)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Tree, TreeError> {
        Ok(Tree::Text(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Tree, TreeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Tree, TreeError> {
        Ok(Tree::Choice {
            variant,
            value: Box::new(value.serialize(Builder)?),
        })
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ListBuilder, TreeError> {
        Ok(ListBuilder(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<ListBuilder, TreeError> {
        Ok(ListBuilder(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<ListBuilder, TreeError> {
        Ok(ListBuilder(Vec::with_capacity(len)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<ListBuilder, TreeError> {
        Ok(ListBuilder(Vec::with_capacity(len)))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<ListBuilder, TreeError> {
        Ok(ListBuilder(Vec::with_capacity(len.unwrap_or(0) * 2)))
    }
    fn serialize_struct(self, kind: &'static str, len: usize) -> Result<MessageBuilder, TreeError> {
        Ok(MessageBuilder {
            kind,
            fields: Vec::with_capacity(len),
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MessageBuilder, TreeError> {
        Ok(MessageBuilder {
            kind: variant,
            fields: Vec::with_capacity(len),
        })
    }
}

impl ListBuilder {
    fn push<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), TreeError> {
        self.0.push(value.serialize(Builder)?);
        Ok(())
    }
}

macro_rules! list_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for ListBuilder {
            type Ok = Tree;
            type Error = TreeError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), TreeError> {
                self.push(value)
            }
            fn end(self) -> Result<Tree, TreeError> {
                Ok(Tree::List(self.0))
            }
        }
    )*};
}

list_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for ListBuilder {
    type Ok = Tree;
    type Error = TreeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), TreeError> {
        self.push(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), TreeError> {
        self.push(value)
    }
    fn end(self) -> Result<Tree, TreeError> {
        Ok(Tree::List(self.0))
    }
}

macro_rules! message_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for MessageBuilder {
            type Ok = Tree;
            type Error = TreeError;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), TreeError> {
                self.fields.push((name, value.serialize(Builder)?));
                Ok(())
            }
            fn end(self) -> Result<Tree, TreeError> {
                Ok(Tree::Message { kind: self.kind, fields: self.fields })
            }
        }
    )*};
}

message_like!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_type_names_of_wrapped_and_typed_messages() {
        let parsed = pg_query::parse("ALTER ROLE r SET a.b = 1; CALL p()", 0).expect("parses");
        let tree = Tree::of(&parsed.protobuf).expect("converts");
        let statements: Vec<&Tree> = tree
            .field("stmts")
            .map(Tree::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|raw| raw.field("stmt").map(Tree::unwrap_node))
            .collect();
        assert_eq!(statements.len(), 2);

        let alter = statements[0];
        assert_eq!(alter.kind(), Some("AlterRoleSetStmt"));
        // A typed field: no Node wrapper, yet the type name is there.
        let set = alter.field("setstmt").expect("setstmt");
        assert_eq!(set.kind(), Some("VariableSetStmt"));
        assert_eq!(set.field("name").and_then(Tree::text), Some("a.b"));

        let call = statements[1].field("funccall").expect("funccall");
        assert_eq!(call.kind(), Some("FuncCall"));
        let name = call.field("funcname").map(Tree::items).unwrap_or_default();
        assert_eq!(name.len(), 1);
        let string = name[0].unwrap_node();
        assert_eq!(string.kind(), Some("String"));
        assert_eq!(string.field("sval").and_then(Tree::text), Some("p"));
    }

    #[test]
    fn constants_keep_their_oneof_variant() {
        let parsed = pg_query::parse("SELECT 'x', 7", 0).expect("parses");
        let tree = Tree::of(&parsed.protobuf).expect("converts");
        let select = tree.field("stmts").map(Tree::items).unwrap_or_default()[0]
            .field("stmt")
            .map(Tree::unwrap_node)
            .expect("statement");
        let targets = select
            .field("target_list")
            .map(Tree::items)
            .unwrap_or_default();
        let values: Vec<(&str, Option<&Tree>)> = targets
            .iter()
            .filter_map(|t| t.unwrap_node().field("val"))
            .filter_map(|v| v.unwrap_node().field("val").and_then(Tree::choice))
            .map(|(variant, inner)| (variant, inner.field("sval").or(inner.field("ival"))))
            .collect();
        assert_eq!(
            values,
            [
                ("Sval", Some(&Tree::Text("x".into()))),
                ("Ival", Some(&Tree::Int(7)))
            ]
        );
    }
}
