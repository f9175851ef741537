//! Read-only classification for routing: may a statement text run on a replica?
//!
//! A text goes to a replica only when it provably reads: every statement is a SELECT (also
//! VALUES, TABLE, WITH ... SELECT) without locking clause, data-modifying CTE or INTO, calling
//! only allowed functions (see `functions`); or SHOW; or a transaction start or
//! `SET TRANSACTION` that asks for READ ONLY (and not SERIALIZABLE, which a standby refuses);
//! or COMMIT/ROLLBACK next to those. Everything else, including what does not parse, goes to
//! the primary. A leading `/* pgcordon:primary */` or `/* pgcordon:replica */` comment
//! overrides, except that the replica hint never sends a text that writes.
//!
//! Owns the answer types, the hint and the analysis the cache keeps; the judgement on a parse
//! tree is in `read_only`, the cheap pass in `quick`, the cache and the entry point in
//! `classifier`.

use crate::functions::FunctionName;

/// Where a statement text (the first of a transaction) should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// It provably only reads: any healthy replica may run it.
    Replica,
    /// It must run on the primary, for the given reason.
    Primary(PrimaryReason),
}

/// Why a text goes to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrimaryReason {
    /// The text starts with `/* pgcordon:primary */`.
    Hinted,
    /// The text starts with `/* pgcordon:replica */` but writes (DML, DDL, SELECT INTO, a
    /// locking clause), so the hint is not followed.
    HintIgnored,
    /// INSERT, UPDATE, DELETE or MERGE, also inside a CTE or EXPLAIN, or COPY ... FROM.
    Write,
    /// A statement that changes the schema, privileges or storage (CREATE, ALTER, DROP,
    /// GRANT, VACUUM, ...).
    Ddl,
    /// A SELECT with FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE or FOR KEY SHARE.
    Locking,
    /// `SELECT ... INTO`, which creates a table.
    SelectInto,
    /// A call of a function that is neither on the built-in read-only list nor allowed by the
    /// operator (nextval, set_config, advisory locks, lo_*, user functions, ...).
    Function,
    /// A transaction start or SET TRANSACTION that is not READ ONLY (or asks for
    /// SERIALIZABLE), or other transaction control such as SAVEPOINT or PREPARE TRANSACTION.
    Transaction,
    /// Another statement that is not provably read-only (CALL, DO, EXPLAIN, COPY ... TO,
    /// SET, LISTEN, ...).
    Statement,
    /// The text does not parse (or is nested too deeply to analyse).
    Unparsable,
    /// The text holds no statement.
    Empty,
}

impl PrimaryReason {
    /// Every reason, for registering metric labels once at start-up.
    pub const ALL: [PrimaryReason; 11] = [
        PrimaryReason::Hinted,
        PrimaryReason::HintIgnored,
        PrimaryReason::Write,
        PrimaryReason::Ddl,
        PrimaryReason::Locking,
        PrimaryReason::SelectInto,
        PrimaryReason::Function,
        PrimaryReason::Transaction,
        PrimaryReason::Statement,
        PrimaryReason::Unparsable,
        PrimaryReason::Empty,
    ];

    /// A stable snake_case label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PrimaryReason::Hinted => "hinted",
            PrimaryReason::HintIgnored => "hint_ignored",
            PrimaryReason::Write => "write",
            PrimaryReason::Ddl => "ddl",
            PrimaryReason::Locking => "locking_clause",
            PrimaryReason::SelectInto => "select_into",
            PrimaryReason::Function => "function",
            PrimaryReason::Transaction => "transaction",
            PrimaryReason::Statement => "statement",
            PrimaryReason::Unparsable => "unparsable",
            PrimaryReason::Empty => "empty",
        }
    }
}

impl std::fmt::Display for PrimaryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing hint: a comment that is the text's first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    None,
    Primary,
    Replica,
}

impl Hint {
    /// Reads `/* pgcordon:primary */` or `/* pgcordon:replica */` (inner spaces and ASCII
    /// case do not matter) at the start of the text, after whitespace only.
    pub(crate) fn of(text: &str) -> Hint {
        let rest = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        let Some(body) = rest.strip_prefix("/*") else {
            return Hint::None;
        };
        let Some((inner, _)) = body.split_once("*/") else {
            return Hint::None;
        };
        let inner = inner.trim();
        if inner.eq_ignore_ascii_case("pgcordon:primary") {
            Hint::Primary
        } else if inner.eq_ignore_ascii_case("pgcordon:replica") {
            Hint::Replica
        } else {
            Hint::None
        }
    }
}

/// What the parser showed about a text, before the hint and the operator's allow-list are
/// applied; this is what the route cache keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// Some statement obviously writes: DML, DDL, SELECT INTO, a locking clause.
    pub(crate) writes: bool,
    pub(crate) verdict: Pending,
}

/// The routing verdict with the operator's allow-list still to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Replica,
    Primary(PrimaryReason),
    /// Read-only if the operator allows every one of these functions.
    ReplicaIfAllowed(Vec<FunctionName>),
}

impl Analysis {
    pub(crate) fn primary(reason: PrimaryReason, writes: bool) -> Analysis {
        Analysis {
            writes,
            verdict: Pending::Primary(reason),
        }
    }

    pub(crate) const fn replica() -> Analysis {
        Analysis {
            writes: false,
            verdict: Pending::Replica,
        }
    }

    /// The route, given the text's hint and the operator's allowed functions.
    pub(crate) fn route(&self, hint: Hint, allow: &[String]) -> Route {
        match (hint, &self.verdict) {
            (Hint::Primary, _) => Route::Primary(PrimaryReason::Hinted),
            // A hint cannot vouch for a text nobody could read.
            (_, Pending::Primary(reason @ (PrimaryReason::Unparsable | PrimaryReason::Empty))) => {
                Route::Primary(*reason)
            }
            (Hint::Replica, _) if self.writes => Route::Primary(PrimaryReason::HintIgnored),
            (Hint::Replica, _) | (Hint::None, Pending::Replica) => Route::Replica,
            (Hint::None, Pending::Primary(reason)) => Route::Primary(*reason),
            (Hint::None, Pending::ReplicaIfAllowed(names)) => {
                if names.iter().all(|name| name.is_allowed(allow)) {
                    Route::Replica
                } else {
                    Route::Primary(PrimaryReason::Function)
                }
            }
        }
    }

    /// Combines two readings of one text (with and without standard_conforming_strings): the
    /// server reads it one way, so a replica is only right if both readings allow it.
    pub(crate) fn and(self, other: Analysis) -> Analysis {
        let writes = self.writes || other.writes;
        let verdict = match (self.verdict, other.verdict) {
            (primary @ Pending::Primary(_), _) | (_, primary @ Pending::Primary(_)) => primary,
            (Pending::ReplicaIfAllowed(mut a), Pending::ReplicaIfAllowed(b)) => {
                a.extend(b);
                Pending::ReplicaIfAllowed(a)
            }
            (names @ Pending::ReplicaIfAllowed(_), Pending::Replica)
            | (Pending::Replica, names @ Pending::ReplicaIfAllowed(_)) => names,
            (Pending::Replica, Pending::Replica) => Pending::Replica,
        };
        Analysis { writes, verdict }
    }
}
