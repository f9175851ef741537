//! The classifiers' cheap first pass over the tokens of a text (see `lexer`): linear and
//! allocation-free. It settles the common statements (a plain SELECT, INSERT, UPDATE or DELETE)
//! without the parser and sends everything it cannot vouch for to `pg_query`.
//!
//! Both passes are conservative in one direction only. The session pass may ask for a parse
//! that finds nothing; it never skips a text that could change session state. The routing pass
//! may ask for a parse of a text that turns out read-only; it only answers "replica" for a
//! single SELECT (or TABLE, SHOW) whose every call is on the read-only allow-list and that
//! has no locking clause, no INTO and no WITH.
//!
//! Owns only these token-level rules; the exact judgement is in `session` and `read_only`.

use crate::functions::{self, NamePart};
use crate::lexer::{Lexer, Token, Unsure};
use crate::parse::StringMode;
use crate::route::PrimaryReason;

/// Statements that can only change session state when they begin a statement.
const SESSION_LEADERS: [&str; 7] = ["set", "reset", "listen", "prepare", "discard", "do", "load"];

/// Words that ask for a parse wherever they appear: temporary objects, WITH HOLD cursors,
/// set_config and session-level advisory locks.
const SESSION_WORDS: [&str; 8] = [
    "temp",
    "temporary",
    "hold",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Whether the text could change session state, so the parser must look at it.
pub(crate) fn session_needs_parse(text: &str, mode: StringMode) -> bool {
    let mut at_statement_start = true;
    for token in Lexer::new(text, mode) {
        let Ok(token) = token else {
            return true;
        };
        match token {
            Token::Punct(b';') => at_statement_start = true,
            // `(SELECT ...)`: the statement's first word comes after its parentheses.
            Token::Punct(b'(') if at_statement_start => {}
            Token::Word(word) => {
                if at_statement_start && is_one_of(word, &SESSION_LEADERS) {
                    return true;
                }
                if names_session_object(word) {
                    return true;
                }
                at_statement_start = false;
            }
            Token::Quoted(name) => {
                if names_session_object(name) {
                    return true;
                }
                at_statement_start = false;
            }
            _ => at_statement_start = false,
        }
    }
    false
}

fn names_session_object(word: &str) -> bool {
    is_one_of(word, &SESSION_WORDS) || starts_with_ignore_case(word, "pg_temp")
}

/// What the routing pass concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuickRoute {
    /// A single SELECT, TABLE or SHOW that provably only reads.
    Replica,
    /// The first statement decides: it writes, or opens a transaction that is not read-only.
    Primary(PrimaryReason),
    /// Empty text (nothing but whitespace and comments).
    Empty,
    /// The parser must decide.
    Parse,
}

/// Words that, after a SELECT's first word, ask for a parse: locking clauses (`FOR UPDATE`,
/// also `SUBSTRING(x FOR n)`), `INTO`, and `WITH` (a nested CTE, `WITH ORDINALITY`, ...).
const SELECT_STOP_WORDS: [&str; 3] = ["for", "into", "with"];

/// Reserved keywords (and column-name keywords that only form constructs) that may stand
/// before `(` without being a function call. None of them can name a function unquoted.
const NOT_CALLS: [&str; 33] = [
    "all",
    "and",
    "any",
    "array",
    "as",
    "between",
    "case",
    "distinct",
    "else",
    "except",
    "exists",
    "from",
    "group",
    "having",
    "in",
    "intersect",
    "lateral",
    "limit",
    "not",
    "offset",
    "on",
    "or",
    "order",
    "row",
    "select",
    "some",
    "then",
    "union",
    "using",
    "values",
    "when",
    "where",
    "window",
];

/// The routing pass for one reading of the text.
pub(crate) fn route(text: &str, mode: StringMode, allow: &[String]) -> QuickRoute {
    let mut tokens = Lexer::new(text, mode);
    let first = match tokens.next() {
        None => return QuickRoute::Empty,
        Some(Err(Unsure)) => return QuickRoute::Parse,
        Some(Ok(token)) => token,
    };
    let Token::Word(first) = first else {
        return QuickRoute::Parse;
    };

    if is_one_of(first, &["insert", "update", "delete", "merge"]) {
        return QuickRoute::Primary(PrimaryReason::Write);
    }
    if is_one_of(first, &["begin", "start"]) {
        return transaction_start(tokens);
    }
    if first.eq_ignore_ascii_case("show") {
        return single_statement(tokens, QuickRoute::Replica);
    }
    if is_one_of(first, &["select", "table"]) {
        return select(Token::Word(first), tokens, allow);
    }
    QuickRoute::Parse
}

/// `BEGIN`/`START TRANSACTION` without the word READ (in READ ONLY) opens a read-write
/// transaction, whatever follows its first `;`.
fn transaction_start(tokens: Lexer<'_>) -> QuickRoute {
    for token in tokens {
        match token {
            Err(Unsure) => return QuickRoute::Parse,
            Ok(Token::Punct(b';')) => break,
            Ok(Token::Word(word)) if word.eq_ignore_ascii_case("read") => return QuickRoute::Parse,
            Ok(_) => {}
        }
    }
    QuickRoute::Primary(PrimaryReason::Transaction)
}

/// `answer` if nothing but `;` follows the current statement.
fn single_statement(tokens: Lexer<'_>, answer: QuickRoute) -> QuickRoute {
    let mut ended = false;
    for token in tokens {
        match token {
            Err(Unsure) => return QuickRoute::Parse,
            Ok(Token::Punct(b';')) => ended = true,
            Ok(_) if ended => return QuickRoute::Parse,
            Ok(_) => {}
        }
    }
    answer
}

/// The rest of a SELECT or TABLE statement: replica if it is the only statement, has none of
/// the stop words, its parentheses and brackets balance, and every `(` follows an operator,
/// punctuation, a keyword that is not a call, or the name of an allowed function.
///
/// This pass does not check the grammar beyond that: a text it sends to a replica that the
/// server rejects (`SELECT FROM WHERE`) fails there as it would on the primary, writing
/// nothing.
fn select<'a>(first: Token<'a>, tokens: Lexer<'a>, allow: &[String]) -> QuickRoute {
    // The three tokens before the current one, most recent first.
    let mut before: [Option<Token<'a>>; 3] = [Some(first), None, None];
    let mut ended = false;
    let mut depth = 0usize;
    for token in tokens {
        let Ok(token) = token else {
            return QuickRoute::Parse;
        };
        match token {
            Token::Punct(b';') if depth == 0 => ended = true,
            Token::Punct(b';') => return QuickRoute::Parse,
            _ if ended => return QuickRoute::Parse,
            Token::Word(word) if is_one_of(word, &SELECT_STOP_WORDS) => return QuickRoute::Parse,
            Token::Punct(b'(') if !paren_is_harmless(&before, allow) => return QuickRoute::Parse,
            Token::Punct(b'(' | b'[') => depth += 1,
            Token::Punct(b')' | b']') => {
                let Some(outer) = depth.checked_sub(1) else {
                    return QuickRoute::Parse;
                };
                depth = outer;
            }
            _ => {}
        }
        before = [Some(token), before[0], before[1]];
    }
    if depth == 0 {
        QuickRoute::Replica
    } else {
        QuickRoute::Parse
    }
}

/// Whether a `(` after `before` opens something other than a call of a function that is not
/// allowed.
fn paren_is_harmless(before: &[Option<Token<'_>>; 3], allow: &[String]) -> bool {
    match before {
        [Some(Token::Operator | Token::Punct(b'(' | b',' | b'[')), ..] => true,
        // `count(*) OVER (...)`, `agg(x) FILTER (WHERE ...)`: after `)` these are clauses.
        [Some(Token::Word(word)), Some(Token::Punct(b')')), _]
            if is_one_of(word, &["over", "filter"]) =>
        {
            true
        }
        [Some(name), Some(Token::Punct(b'.')), Some(schema)] => {
            match (name_part(*name), name_part(*schema)) {
                (Some(name), Some(schema)) => functions::is_allowed(Some(schema), name, allow),
                _ => false,
            }
        }
        [Some(Token::Word(word)), ..] if is_one_of(word, &NOT_CALLS) => true,
        [Some(name), ..] => {
            name_part(*name).is_some_and(|name| functions::is_allowed(None, name, allow))
        }
        [None, ..] => false,
    }
}

/// A name as the server resolves it: an unquoted word is folded, a quoted one taken as it is.
/// A quoted name holding a doubled quote is left to the parser.
fn name_part(token: Token<'_>) -> Option<NamePart<'_>> {
    match token {
        Token::Word(text) => Some(NamePart { text, fold: true }),
        Token::Quoted(text) if !text.contains('"') => Some(NamePart { text, fold: false }),
        _ => None,
    }
}

fn is_one_of(word: &str, list: &[&str]) -> bool {
    list.iter().any(|known| word.eq_ignore_ascii_case(known))
}

fn starts_with_ignore_case(word: &str, prefix: &str) -> bool {
    word.len() >= prefix.len()
        && word.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}
