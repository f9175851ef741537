//! Reading a statement text with PostgreSQL's own grammar (libpg_query through `pg_query`)
//! into a [`Tree`] for `judge` to walk.
//!
//! Owns the two readings of a text and the fail-closed handling of parser failures; it does
//! not judge what it reads.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pg_query::ParserOptions;

use crate::node_tree::Tree;

/// How string constants are read. PostgreSQL reads `'a\nb'` literally when
/// `standard_conforming_strings` is on (the default) and as an escape when a session turned it
/// off, which any client can do. The same text can then hold different string constants or
/// even split into different tokens, so a text with a backslash is read both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringMode {
    /// `standard_conforming_strings = on`.
    Standard,
    /// `standard_conforming_strings = off`: backslash escapes in every string constant.
    Legacy,
}

impl StringMode {
    /// The readings a text needs: the legacy one only matters if it holds a backslash.
    pub(crate) fn needed_for(sql: &str) -> &'static [StringMode] {
        if sql.contains('\\') {
            &[StringMode::Standard, StringMode::Legacy]
        } else {
            &[StringMode::Standard]
        }
    }

    fn options(self) -> ParserOptions {
        match self {
            StringMode::Standard => ParserOptions::DEFAULT,
            StringMode::Legacy => ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS,
        }
    }
}

/// Parses `sql` into a tree, or `None` when the text is not valid SQL, holds a NUL byte, nests
/// deeper than the tree decoder allows (about 100 levels of messages), or the parser panics.
/// The caller treats `None` as "cannot prove it is harmless".
pub(crate) fn parse_tree(sql: &str, mode: StringMode) -> Option<Tree> {
    // pg_query post-processes the tree in Rust and indexes into it; a panic there on a hostile
    // text must cost only this statement, not the connection task.
    let parsed = catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, mode.options()))).ok()?;
    Tree::of(&parsed.ok()?.protobuf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the first string constant in `SELECT '...'`.
    fn first_constant(tree: &Tree) -> Option<&str> {
        let statement = tree
            .field("stmts")?
            .items()
            .first()?
            .field("stmt")?
            .unwrap_node();
        let target = statement
            .field("target_list")?
            .items()
            .first()?
            .unwrap_node();
        let constant = target.field("val")?.unwrap_node();
        let (_, string) = constant.field("val")?.choice()?;
        string.field("sval")?.text()
    }

    #[test]
    fn legacy_mode_reads_backslash_escapes_in_plain_strings() {
        let sql = r"SELECT 'a\056b'";
        let standard = parse_tree(sql, StringMode::Standard).expect("parses");
        let legacy = parse_tree(sql, StringMode::Legacy).expect("parses");
        assert_eq!(first_constant(&standard), Some(r"a\056b"));
        assert_eq!(first_constant(&legacy), Some("a.b"));
    }

    #[test]
    fn modes_needed_depend_on_backslash() {
        assert_eq!(StringMode::needed_for("select 1"), &[StringMode::Standard]);
        let both = [StringMode::Standard, StringMode::Legacy];
        assert_eq!(StringMode::needed_for(r"select '\'"), &both);
    }

    #[test]
    fn invalid_and_too_deep_texts_give_no_tree() {
        assert!(parse_tree("SELEC 1", StringMode::Standard).is_none());
        assert!(parse_tree("SELECT 'a' || ", StringMode::Standard).is_none());
        assert!(parse_tree("SELECT 1\0", StringMode::Standard).is_none());
        let deep = format!("SELECT 'a'{}", " || 'b'".repeat(200));
        assert!(parse_tree(&deep, StringMode::Standard).is_none());
        let shallow = format!("SELECT 'a'{}", " || 'b'".repeat(10));
        assert!(parse_tree(&shallow, StringMode::Standard).is_some());
    }
}
