//! The [`Classifier`]: session effects for transaction pooling and read-only routing, each
//! behind the cheap token pass in `quick`, with PostgreSQL's own grammar (`pg_query`) for
//! the texts that pass cannot settle.
//!
//! Texts holding a backslash are read twice, as the guard does: with
//! standard_conforming_strings on (the default) and off (which a client can choose), since
//! the two readings can split into different tokens. A replica is only chosen when both
//! readings allow it; session effects that differ between the readings pin the client.
//!
//! Owns the entry points, the readings and the cache use; the rules are in `session`,
//! `read_only` and `quick`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::effects::{PinReason, SessionEffects};
use crate::node_tree::Tree;
use crate::parse::{self, StringMode};
use crate::quick::{self, QuickRoute};
use crate::read_only;
use crate::route::{Analysis, Hint, PrimaryReason, Route};
use crate::route_cache::RouteCache;
use crate::session;

/// Classifies statement texts for the pooler and the router. Build one at start-up and
/// share it between connections; every method takes `&self`.
#[derive(Debug)]
pub struct Classifier {
    cache: RouteCache,
    /// Parser runs (one per reading), for tests and a metric of how often the cheap pass
    /// defers to the parser.
    parses: AtomicU64,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new()
    }
}

impl Classifier {
    /// A classifier with an empty route cache.
    pub fn new() -> Classifier {
        Classifier {
            cache: RouteCache::new(),
            parses: AtomicU64::new(0),
        }
    }

    /// What the text (one or more statements) leaves behind on its backend session: a reason
    /// to pin the client to it, settings of tracked parameters, or RESET ALL. Most texts
    /// leave nothing and are settled without a parse.
    pub fn session_effects(&self, sql: &str) -> SessionEffects {
        let needs_parse = StringMode::needed_for(sql)
            .iter()
            .any(|&mode| quick::session_needs_parse(sql, mode));
        if !needs_parse {
            return SessionEffects::default();
        }
        self.session_effects_parsed(sql)
    }

    /// [`Classifier::session_effects`] with the cheap pass skipped: the text is always
    /// parsed. For every text, both give the same answer; this exists so tests can show it.
    pub fn session_effects_parsed(&self, sql: &str) -> SessionEffects {
        let mut readings = self.readings(sql).map(|tree| session::effects_of(&tree));
        let Some(first) = readings.next() else {
            // The server may accept what the parser could not analyse (too deep): fail closed.
            return pinned(PinReason::Other("unparsable"));
        };
        match readings.next() {
            // The proxy cannot know which reading the server used: pin, and say why.
            Some(second) if second != first => SessionEffects {
                pins: Some(PinReason::Other("ambiguous_escapes")),
                ..first
            },
            _ => first,
        }
    }

    /// Where the text should run when it starts a transaction: on a replica only if it
    /// provably reads (see docs/routing.md, "Classification"). `allow_functions` names
    /// functions the operator declares read-only, as `name` or `schema.name`. Plain SELECT,
    /// INSERT, UPDATE and DELETE texts are settled without a parse; parsed texts are cached.
    pub fn route(&self, sql: &str, allow_functions: &[String]) -> Route {
        let hint = Hint::of(sql);
        if hint == Hint::Primary {
            return Route::Primary(PrimaryReason::Hinted);
        }

        if let Some(analysis) = quick_analysis(sql, allow_functions, hint) {
            return analysis.route(hint, allow_functions);
        }

        if let Some(route) = self.cache.with(sql, |a| a.route(hint, allow_functions)) {
            return route;
        }
        let analysis = self.analyse(sql);
        let route = analysis.route(hint, allow_functions);
        self.cache.insert(sql, analysis);
        route
    }

    /// [`Classifier::route`] with the cheap pass and the cache skipped: the text is always
    /// parsed. Wherever the cheap pass answers "replica", this does too.
    pub fn route_parsed(&self, sql: &str, allow_functions: &[String]) -> Route {
        self.analyse(sql).route(Hint::of(sql), allow_functions)
    }

    /// How many parser runs this classifier has made so far.
    pub fn parse_count(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }

    /// How many texts the route cache holds now.
    pub fn cached_routes(&self) -> usize {
        self.cache.len()
    }

    fn analyse(&self, sql: &str) -> Analysis {
        self.readings(sql)
            .map(|tree| read_only::analyse(&tree))
            .reduce(Analysis::and)
            .unwrap_or_else(|| Analysis::primary(PrimaryReason::Unparsable, false))
    }

    /// The parse trees of the readings that parse; a reading that does not is one the
    /// server rejects as well.
    fn readings<'s>(&'s self, sql: &'s str) -> impl Iterator<Item = Tree> + 's {
        StringMode::needed_for(sql).iter().filter_map(move |&mode| {
            self.parses.fetch_add(1, Ordering::Relaxed);
            parse::parse_tree(sql, mode)
        })
    }
}

fn pinned(reason: PinReason) -> SessionEffects {
    let mut effects = SessionEffects::default();
    effects.pin(reason);
    effects
}

/// The cheap pass's answer as an analysis, if every reading gives the same one. With a
/// replica hint only the answers that settle the hint are used: a plain SELECT (replica
/// anyway) and a leading INSERT/UPDATE/DELETE/MERGE (which the hint cannot move).
fn quick_analysis(sql: &str, allow: &[String], hint: Hint) -> Option<Analysis> {
    let mut answers = StringMode::needed_for(sql)
        .iter()
        .map(|&mode| quick::route(sql, mode, allow));
    let first = answers.next()?;
    if answers.any(|other| other != first) {
        return None;
    }
    match first {
        QuickRoute::Parse => None,
        QuickRoute::Replica => Some(Analysis::replica()),
        QuickRoute::Empty => Some(Analysis::primary(PrimaryReason::Empty, false)),
        QuickRoute::Primary(PrimaryReason::Write) => {
            Some(Analysis::primary(PrimaryReason::Write, true))
        }
        QuickRoute::Primary(reason) if hint == Hint::None => Some(Analysis::primary(reason, false)),
        QuickRoute::Primary(_) => None,
    }
}
