//! Errors from building a [`Guard`](crate::Guard). Checking a statement never fails: every
//! outcome, including "could not parse", is a [`Verdict`](crate::Verdict).

/// Why a [`Guard`](crate::Guard) could not be built from the configured setting names.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The list of protected settings is empty, so the guard would protect nothing; that is
    /// a configuration mistake rather than a useful guard.
    #[error("no protected settings configured: the statement guard needs at least one name")]
    NoProtectedSettings,

    /// A configured name is not a custom PostgreSQL setting name.
    #[error("protected setting {name:?} is not valid: {problem}")]
    InvalidName {
        /// The name as configured.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// The prefilter automaton could not be built from the configured names.
    #[error("cannot build the statement prefilter for {count} patterns")]
    Prefilter {
        /// How many patterns were given to the automaton.
        count: usize,
        /// The builder's own error.
        #[source]
        source: aho_corasick::BuildError,
    },
}
