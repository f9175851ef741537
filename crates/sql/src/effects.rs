//! The answer of the session-state classification: [`SessionEffects`] and [`PinReason`].
//!
//! Owns only the types and their labels; the judgement is in `session`.

/// What one statement text does to session state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionEffects {
    /// Why this statement ties the client to its backend session for good, if it does.
    pub pins: Option<PinReason>,
    /// Session-level settings of tracked parameters, in order: (canonical name, the value
    /// text `set_config` accepts, or `None` for RESET / `TO DEFAULT`). When `resets_all` is
    /// set, these are the settings made after the last RESET ALL / DISCARD ALL.
    pub sets: Vec<(String, Option<String>)>,
    /// RESET ALL or DISCARD ALL: every tracked parameter back to its default (before `sets`
    /// apply).
    pub resets_all: bool,
    /// Every value the text gives `client_encoding`, at session level or for the transaction
    /// only (`SET LOCAL`, `set_config(..., true)`), in order; `None` for a value that is not a
    /// constant. The proxy refuses encodings in which its own reading of later statements
    /// would differ from the server's.
    pub encodings: Vec<Option<String>>,
}

impl SessionEffects {
    /// Whether the text leaves no session state behind.
    pub fn is_empty(&self) -> bool {
        self.pins.is_none() && self.sets.is_empty() && !self.resets_all && self.encodings.is_empty()
    }

    /// Records a pin; the first reason in text order is kept.
    pub(crate) fn pin(&mut self, reason: PinReason) {
        if self.pins.is_none() {
            self.pins = Some(reason);
        }
    }

    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        self.sets.push((name.to_owned(), value));
    }

    pub(crate) fn encoding(&mut self, value: Option<String>) {
        self.encodings.push(value);
    }

    pub(crate) fn reset_all(&mut self) {
        self.sets.clear();
        self.resets_all = true;
    }
}

/// Why a client must keep its backend session for the rest of its connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// `LISTEN`: notifications are delivered to the session that listens.
    Listen,
    /// A session-level `SET` or `set_config(..., false)` of the named setting (lower case),
    /// which is not tracked or whose value cannot be followed.
    SessionSet(String),
    /// A temporary table, view, sequence or other object (`TEMP`, `pg_temp.`), or a
    /// search_path that puts `pg_temp` in play.
    TempTable,
    /// `DECLARE ... WITH HOLD`: the cursor outlives its transaction.
    HoldCursor,
    /// `pg_advisory_lock`, `pg_try_advisory_lock` and their `_shared` forms hold the lock
    /// until the session releases it.
    AdvisoryLock,
    /// SQL-level `PREPARE`; protocol-level prepared statements are handled by the proxy.
    SqlPrepare,
    /// Any other reason, with a fixed label: `role` (SET ROLE / SET SESSION AUTHORIZATION),
    /// `load`, `do_block` (a DO block that may change the session), `set_config_dynamic`
    /// (a setting name that is not a constant), `ambiguous_escapes` (the two readings of
    /// backslashes disagree), `unparsable`.
    Other(&'static str),
}

impl PinReason {
    /// A stable snake_case label for metrics; it never holds a setting name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PinReason::Listen => "listen",
            PinReason::SessionSet(_) => "session_set",
            PinReason::TempTable => "temp_table",
            PinReason::HoldCursor => "hold_cursor",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Other(label) => label,
        }
    }
}

impl std::fmt::Display for PinReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
