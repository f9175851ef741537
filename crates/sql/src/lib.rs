//! SQL understanding for pgcordon: the statement guard, and the classifications the pooler
//! and the router need.
//!
//! The statement guard ([`Guard`]) decides, for every simple Query and every Parse text a
//! client sends, whether it could set or reset a setting that pgcordon manages (the identity,
//! such as `app.current_user_id`), and refuses it if so. It also refuses the privileged
//! statement kinds its [`GuardPolicy`] does not allow: `SET ROLE`, `SET SESSION
//! AUTHORIZATION`, `ALTER ROLE` and `ALTER SYSTEM` in all their forms (`policy`).
//!
//! The guard owns the SQL-level judgement only. It does not see the wire (the proxy hands it
//! statement texts and maps a refusal to an ErrorResponse with SQLSTATE 42501), it does not
//! apply the identity, and it cannot see inside functions that already exist in the database:
//! see `docs/guard.md` for what it refuses, allows, and cannot know.
//!
//! Every text first goes through a linear, allocation-free scan (`prefilter`). Only a text that
//! could mention a protected setting, `set_config`, or reset all settings is parsed with
//! PostgreSQL's own grammar (`parse`, libpg_query) and judged node by node (`judge`). A text
//! that needs a parse but does not parse is refused: the guard fails closed.
//!
//! Preconditions the proxy must keep: the text is what the server will parse (client encoding
//! UTF-8, so no multi-byte character can swallow a backslash), and the FunctionCall
//! protocol message (which calls a function by OID, bypassing SQL) is refused.
//!
//! The [`Classifier`] answers two more questions about a statement text, each behind its own
//! cheap, allocation-free token pass (`lexer`, `quick`) so that plain SELECT, INSERT, UPDATE
//! and DELETE texts never reach the parser: what the text leaves behind on its backend
//! session ([`Classifier::session_effects`], for transaction pooling), and whether it may run
//! on a replica ([`Classifier::route`]). See `docs/routing.md`, "Classification".

mod classifier;
mod constants;
mod effects;
mod error;
mod functions;
mod judge;
mod lexer;
mod names;
mod node_tree;
mod parse;
mod policy;
mod prefilter;
mod quick;
mod read_only;
mod route;
mod route_cache;
mod session;
mod tracked;
mod verdict;

use std::sync::atomic::{AtomicU64, Ordering};

pub use classifier::Classifier;
pub use effects::{PinReason, SessionEffects};
pub use error::GuardError;
pub use policy::{GuardPolicy, PrivilegedStatement};
pub use route::{PrimaryReason, Route};
pub use tracked::TRACKED_PARAMETERS;
pub use verdict::{Refusal, RefusalReason, Verdict};

use judge::Judge;
use names::ProtectedNames;
use parse::StringMode;
use prefilter::Prefilter;

/// Checks statement texts against a fixed set of protected settings. Cheap to share: build
/// one at start-up (or on reload) and call [`Guard::check`] from any thread.
#[derive(Debug)]
pub struct Guard {
    names: ProtectedNames,
    policy: GuardPolicy,
    prefilter: Prefilter,
    /// How many times a text was handed to the parser (one per reading), for tests and for a
    /// metric that shows how often the prefilter lets a statement through to the slow path.
    parses: AtomicU64,
}

impl Guard {
    /// Builds a guard for the given setting names. GUC names are case-insensitive, so
    /// `App.Tenant_Id` protects `app.tenant_id`; in statements, quoted and `U&` forms of the
    /// names are recognised too.
    ///
    /// # Errors
    ///
    /// [`GuardError::NoProtectedSettings`] for an empty list, [`GuardError::InvalidName`] for
    /// a name that is not a custom setting name (two or more ASCII identifiers joined by dots;
    /// built-in settings have syntax aliases such as `SET TIME ZONE` and are not supported),
    /// and [`GuardError::Prefilter`] if the scanner cannot be built.
    ///
    /// The guard refuses every [`PrivilegedStatement`] kind (`SET ROLE`, `ALTER ROLE`, ...);
    /// [`Guard::with_policy`] allows some.
    pub fn new(protected: &[String]) -> Result<Guard, GuardError> {
        Guard::with_policy(protected, GuardPolicy::refuse_all())
    }

    /// Like [`Guard::new`], with the privileged statement kinds that `policy` allows let
    /// through. Statements that touch a protected setting are refused whatever the policy
    /// says (`ALTER ROLE r SET app.current_user_id = ...` stays refused when `alter_role` is
    /// allowed).
    ///
    /// # Errors
    ///
    /// As [`Guard::new`].
    pub fn with_policy(protected: &[String], policy: GuardPolicy) -> Result<Guard, GuardError> {
        let names = ProtectedNames::new(protected)?;
        let prefilter = Prefilter::new(&names, policy)?;
        Ok(Guard {
            names,
            policy,
            prefilter,
            parses: AtomicU64::new(0),
        })
    }

    /// The verdict on one statement text (which may hold several statements).
    pub fn check(&self, sql: &str) -> Verdict {
        if !self.needs_parse(sql) {
            return Verdict::Allow;
        }
        self.check_parsed(sql)
    }

    /// Whether the text is sent to the parser; `false` means [`Guard::check`] allows it after
    /// the linear scan alone.
    pub fn needs_parse(&self, sql: &str) -> bool {
        self.prefilter.needs_parse(sql)
    }

    /// The verdict with the prefilter skipped: the text is always parsed, and refused if it
    /// does not parse. For every text that parses, [`Guard::check`] gives the same answer; this
    /// exists so tests and audits can confirm that the prefilter never lets through a text
    /// that the full check would stop.
    pub fn check_parsed(&self, sql: &str) -> Verdict {
        let judge = Judge {
            names: &self.names,
            policy: self.policy,
            prefilter: &self.prefilter,
        };
        let mut combined: Option<Verdict> = None;
        for &mode in StringMode::needed_for(sql) {
            self.parses.fetch_add(1, Ordering::Relaxed);
            // A reading that fails to parse is one the server would reject as well, so only
            // the readings that parse are judged; if none does, the text is refused.
            let Some(tree) = parse::parse_tree(sql, mode) else {
                continue;
            };
            let verdict = judge.verdict(&tree);
            combined = Some(match combined {
                Some(earlier) => earlier.worst(verdict),
                None => verdict,
            });
        }
        combined.unwrap_or_else(|| {
            Verdict::Refuse(Refusal::about_any(
                RefusalReason::UnparsableMention,
                self.names.listing(),
            ))
        })
    }

    /// The privileged statement kinds this guard lets through.
    pub fn policy(&self) -> GuardPolicy {
        self.policy
    }

    /// How many parser runs this guard has made so far.
    pub fn parse_count(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }
}
