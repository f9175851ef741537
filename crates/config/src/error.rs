//! Errors of configuration loading, written for the operator who runs `pgcordon check`.
//!
//! Owns [`ConfigError`], the single error type of [`crate::load`] and [`crate::parse`], and
//! [`Problem`], one finding of validation with its key path, expectation and position. It does not
//! decide which problems exist (that is `validate`) nor where they sit in the text (`tree`).

use std::fmt;
use std::path::PathBuf;

/// A place in the YAML text, both numbers counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line number, 1-based.
    pub line: u64,
    /// Column number, 1-based.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `pool.min_idle` or `listen[1].address`; empty for the document.
    pub key: String,
    /// What the key should hold, in words an operator can act on.
    pub expected: String,
    /// What the file holds instead.
    pub found: String,
    /// Where the key (or its nearest present parent) sits in the file, when known.
    pub position: Option<Position>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "(document)"
        } else {
            &self.key
        };
        write!(f, "{key}: expected {}, found {}", self.expected, self.found)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The file that was asked for.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The text is not well-formed YAML (or is more than one document).
    #[error("{}{}: invalid YAML: {message}", file.display(), at(position))]
    Syntax {
        /// The file being parsed.
        file: PathBuf,
        /// Where the parser stopped, when it says.
        position: Option<Position>,
        /// The parser's explanation, without a source snippet.
        message: String,
        /// The parser's error, which also renders a snippet of the text (boxed: it is large).
        #[source]
        source: Box<serde_saphyr::Error>,
    },

    /// The YAML is well-formed but does not describe a valid pgcordon configuration.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The file being checked.
        file: PathBuf,
        /// Every problem found, in file order where positions are known; never empty.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] error; empty for other kinds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Why an upstream password could not be obtained from its file.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The file could not be read.
    #[error("cannot read upstream password file {}: {source}", file.display())]
    Read {
        /// The password file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds bytes that are not UTF-8.
    #[error("upstream password file {} is not UTF-8 text", file.display())]
    NotUtf8 {
        /// The password file.
        file: PathBuf,
    },
    /// The file is empty, or holds only a line ending.
    #[error("upstream password file {} is empty", file.display())]
    Empty {
        /// The password file.
        file: PathBuf,
    },
}

fn at(position: &Option<Position>) -> String {
    match position {
        Some(p) => format!(":{p}"),
        None => String::new(),
    }
}

/// One line per problem, compiler style: `file:line:column: key: expected ..., found ...`.
fn render_problems(file: &std::path::Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}{}: {p}", file.display(), at(&p.position)))
        .collect();
    lines.join("\n")
}
