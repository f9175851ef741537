//! A small, allocation-free tokenizer for the classifiers' cheap first pass.
//!
//! It splits a statement text into the tokens PostgreSQL's scanner would see (following the
//! lexical rules of the SQL syntax chapter: comments, string constants in all their prefixes,
//! dollar quoting, quoted identifiers, numbers, parameters and operators), but only as far as
//! the classifiers need: words and quoted identifiers are kept as slices of the text, everything
//! that is data becomes [`Token::Literal`]. Whenever the scanner cannot be sure the server would
//! split the text the same way (an unterminated string or comment, `U&` escapes, a number
//! glued to a word, a backslash outside a string, unknown bytes), it reports [`Unsure`] and
//! the caller falls back to the real parser.
//!
//! Owns only tokenizing; what a token sequence means is decided in `quick`.

use crate::parse::StringMode;

/// One token of a statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// An unquoted word (a keyword or an identifier) as written, without case folding.
    Word(&'a str),
    /// The inside of a double-quoted identifier, with any doubled quote left doubled.
    Quoted(&'a str),
    /// A string constant, a number or a parameter (`$1`): data, never a name.
    Literal,
    /// One of `( ) , ; . [ ] :`.
    Punct(u8),
    /// A run of operator characters (`=`, `<>`, `||`, `->>`, ...).
    Operator,
}

/// The scanner cannot vouch for how the server tokenizes the rest of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsure;

/// Iterates over the tokens of a text; after the first [`Unsure`] it yields nothing more.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    mode: StringMode,
    done: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer that reads plain string constants as a server with the given
    /// `standard_conforming_strings` setting would.
    pub(crate) fn new(text: &'a str, mode: StringMode) -> Lexer<'a> {
        Lexer {
            text,
            pos: 0,
            mode,
            done: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    /// Skips whitespace and comments; `Err` for an unterminated block comment.
    fn skip_blank(&mut self) -> Result<(), Unsure> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b), _) if is_space(b) => self.pos += 1,
                (Some(b'-'), Some(b'-')) => {
                    let rest = &self.bytes()[self.pos..];
                    let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
                    self.pos += end.unwrap_or(rest.len());
                }
                (Some(b'/'), Some(b'*')) => self.skip_block_comment()?,
                _ => return Ok(()),
            }
        }
    }

    /// Block comments nest in PostgreSQL: `/* a /* b */ still comment */`.
    fn skip_block_comment(&mut self) -> Result<(), Unsure> {
        let mut depth = 0usize;
        while let Some(b) = self.peek(0) {
            match (b, self.peek(1)) {
                (b'/', Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => self.pos += 1,
            }
        }
        Err(Unsure)
    }

    /// A string constant whose opening quote is at `pos`. `escapes` says whether a backslash
    /// escapes the next byte (E'...' always, plain strings with standard_conforming_strings
    /// off). A doubled quote stands for one quote in every kind.
    fn string(&mut self, escapes: bool) -> Result<Token<'a>, Unsure> {
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            match b {
                b'\\' if escapes => self.pos += 2,
                b'\'' if self.peek(1) == Some(b'\'') => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return Ok(Token::Literal);
                }
                _ => self.pos += 1,
            }
        }
        Err(Unsure)
    }

    fn quoted_identifier(&mut self) -> Result<Token<'a>, Unsure> {
        let start = self.pos + 1;
        self.pos = start;
        while let Some(b) = self.peek(0) {
            if b == b'"' && self.peek(1) == Some(b'"') {
                self.pos += 2;
            } else if b == b'"' {
                let inside = &self.text[start..self.pos];
                self.pos += 1;
                return Ok(Token::Quoted(inside));
            } else {
                self.pos += 1;
            }
        }
        Err(Unsure)
    }

    /// A word, or a string constant introduced by a one-letter prefix (`E'..'`, `B'..'`,
    /// `X'..'`, `N'..'`). The server's scanner takes the longest match, so only a word that
    /// is exactly the prefix letter starts such a constant.
    fn word(&mut self) -> Result<Token<'a>, Unsure> {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let word = &self.text[start..self.pos];
        let next = self.peek(0);
        match (word.as_bytes(), next) {
            ([b'e' | b'E'], Some(b'\'')) => self.string(true),
            ([b'b' | b'B' | b'x' | b'X'], Some(b'\'')) => self.string(false),
            ([b'n' | b'N'], Some(b'\'')) => self.string(self.mode == StringMode::Legacy),
            // U&'...' and U&"...": Unicode escapes can spell any name.
            ([b'u' | b'U'], Some(b'&')) => Err(Unsure),
            _ => Ok(Token::Word(word)),
        }
    }

    /// Digits with an optional fraction and exponent. A number glued to a letter, a `$` or a
    /// quote is left to the parser: older servers read `1from` as `1 from`, newer ones
    /// reject it, and hex/octal/binary forms are rare enough not to bother.
    fn number(&mut self) -> Result<Token<'a>, Unsure> {
        self.digits();
        if self.peek(0) == Some(b'.') && self.peek(1) != Some(b'.') {
            self.pos += 1;
            self.digits();
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
            if self.peek(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.digits();
            }
        }
        self.end_of_literal()
    }

    fn digits(&mut self) {
        while self
            .peek(0)
            .is_some_and(|b| b.is_ascii_digit() || b == b'_')
        {
            self.pos += 1;
        }
    }

    fn end_of_literal(&self) -> Result<Token<'a>, Unsure> {
        match self.peek(0) {
            Some(b) if is_ident_continue(b) || b == b'\'' || b == b'"' => Err(Unsure),
            _ => Ok(Token::Literal),
        }
    }

    /// `$1` (a parameter) or a dollar-quoted string `$tag$ ... $tag$`.
    fn dollar(&mut self) -> Result<Token<'a>, Unsure> {
        if self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            self.digits();
            return self.end_of_literal();
        }

        let open_start = self.pos;
        self.pos += 1;
        if self.peek(0).is_some_and(is_ident_start) {
            while self
                .peek(0)
                .is_some_and(|b| is_ident_continue(b) && b != b'$')
            {
                self.pos += 1;
            }
        }
        if self.peek(0) != Some(b'$') {
            return Err(Unsure);
        }
        self.pos += 1;

        // The body ends at the first occurrence of the same delimiter; the server's scanner
        // examines every `$` in the body, so a plain search finds the same end.
        let delimiter = &self.text[open_start..self.pos];
        let rest = &self.text[self.pos..];
        let end = rest.find(delimiter).ok_or(Unsure)?;
        self.pos += end + delimiter.len();
        Ok(Token::Literal)
    }

    /// Operator characters up to (not including) a comment start, which the server's scanner
    /// never reads as part of an operator.
    fn operator(&mut self) -> Token<'a> {
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            let comment = matches!((b, self.peek(1)), (b'-', Some(b'-')) | (b'/', Some(b'*')));
            if !is_operator(b) || comment {
                break;
            }
            self.pos += 1;
        }
        Token::Operator
    }

    fn token(&mut self) -> Option<Result<Token<'a>, Unsure>> {
        if let Err(unsure) = self.skip_blank() {
            return Some(Err(unsure));
        }
        let b = self.peek(0)?;
        let token = match b {
            b'\'' => self.string(self.mode == StringMode::Legacy),
            b'"' => self.quoted_identifier(),
            b'$' => self.dollar(),
            b'0'..=b'9' => self.number(),
            b'.' if self.peek(1).is_some_and(|n| n.is_ascii_digit()) => self.number(),
            b'(' | b')' | b',' | b';' | b'.' | b'[' | b']' | b':' => {
                self.pos += 1;
                Ok(Token::Punct(b))
            }
            _ if is_ident_start(b) => self.word(),
            _ if is_operator(b) => Ok(self.operator()),
            _ => Err(Unsure),
        };
        Some(token)
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Result<Token<'a>, Unsure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let token = self.token();
        if !matches!(token, Some(Ok(_))) {
            self.done = true;
        }
        token
    }
}

/// The server's whitespace: space, tab, newline, carriage return, form feed, vertical tab.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Letters, `_` and every byte of a multi-byte character start an identifier.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_operator(b: u8) -> bool {
    b"~!@#^&|`?+-*/%<>=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::{Literal, Operator, Punct, Quoted, Word};

    fn tokens(text: &str, mode: StringMode) -> Result<Vec<Token<'_>>, Unsure> {
        Lexer::new(text, mode).collect()
    }

    fn standard(text: &str) -> Result<Vec<Token<'_>>, Unsure> {
        tokens(text, StringMode::Standard)
    }

    #[test]
    fn words_punctuation_and_operators() {
        assert_eq!(
            standard("SELECT a.b, \"C\"\"d\" FROM t WHERE x>=$1;"),
            Ok(vec![
                Word("SELECT"),
                Word("a"),
                Punct(b'.'),
                Word("b"),
                Punct(b','),
                Quoted("C\"\"d"),
                Word("FROM"),
                Word("t"),
                Word("WHERE"),
                Word("x"),
                Operator,
                Literal,
                Punct(b';'),
            ])
        );
        assert_eq!(standard("a$b$ c"), Ok(vec![Word("a$b$"), Word("c")]));
        assert_eq!(
            standard("x::int[]"),
            Ok(vec![
                Word("x"),
                Punct(b':'),
                Punct(b':'),
                Word("int"),
                Punct(b'['),
                Punct(b']')
            ])
        );
    }

    #[test]
    fn comments_are_skipped_and_nest() {
        assert_eq!(
            standard("/* a /* b */ c */ x -- y\n z +-- w\n"),
            Ok(vec![Word("x"), Word("z"), Operator])
        );
        assert_eq!(standard("x /* open"), Err(Unsure));
    }

    #[test]
    fn string_constants_follow_the_mode() {
        let text = r"SELECT 'a\', b --'";
        assert_eq!(
            standard(text),
            Ok(vec![Word("SELECT"), Literal, Punct(b','), Word("b")])
        );
        assert_eq!(
            tokens(text, StringMode::Legacy),
            Ok(vec![Word("SELECT"), Literal])
        );
        assert_eq!(standard(r"E'it\'s' x"), Ok(vec![Literal, Word("x")]));
        assert_eq!(
            standard("'it''s' be'x'"),
            Ok(vec![Literal, Word("be"), Literal])
        );
        assert_eq!(
            standard(r"B'01' X'ff' N'\' y"),
            Ok(vec![Literal, Literal, Literal, Word("y")])
        );
        assert_eq!(standard("'open"), Err(Unsure));
        assert_eq!(standard(r#"U&'\0041'"#), Err(Unsure));
        assert_eq!(standard(r#"u&"x""#), Err(Unsure));
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        assert_eq!(
            standard("$$ a ' b $$ $tag$ $x$ $$ $tag$ $1 c"),
            Ok(vec![Literal, Literal, Literal, Word("c")])
        );
        assert_eq!(standard("$a$ $b$a$ x"), Ok(vec![Literal, Word("x")]));
        assert_eq!(standard("$a$ never closed"), Err(Unsure));
        assert_eq!(standard("$ x"), Err(Unsure));
        assert_eq!(standard("$1x"), Err(Unsure));
    }

    #[test]
    fn numbers_glued_to_words_are_unsure() {
        assert_eq!(
            standard("1.5e-3 .5 1_000"),
            Ok(vec![Literal, Literal, Literal])
        );
        assert_eq!(standard("1..2"), Ok(vec![Literal, Punct(b'.'), Literal]));
        assert_eq!(standard("SELECT 1from t"), Err(Unsure));
        assert_eq!(standard("0x1F"), Err(Unsure));
        assert_eq!(standard("1$a$ $a$"), Err(Unsure));
    }

    #[test]
    fn unknown_bytes_are_unsure_and_end_the_stream() {
        let mut lexer = Lexer::new(r"a \ b", StringMode::Standard);
        assert_eq!(lexer.next(), Some(Ok(Word("a"))));
        assert_eq!(lexer.next(), Some(Err(Unsure)));
        assert_eq!(lexer.next(), None);
        assert_eq!(standard("a\0"), Err(Unsure));
        assert_eq!(standard("{"), Err(Unsure));
    }

    #[test]
    fn non_ascii_identifiers_are_words() {
        assert_eq!(
            standard("SELECT größe"),
            Ok(vec![Word("SELECT"), Word("größe")])
        );
    }
}
