//! A small bounded cache of routing analyses, keyed by a hash of the statement text.
//!
//! Routing is asked at every transaction start, and applications send the same few texts
//! over and over, so a parse per distinct text is enough. The cache keeps what the parser
//! showed before the hint and the operator's allow-list are applied (`route::Analysis`), so
//! a change of the allow-list needs no flush.
//!
//! The hash uses the standard library's randomly keyed SipHash, and each entry keeps its
//! text, so neither a chance nor a crafted collision can hand one text another's route.
//! Eviction is first-in, first-out: a text that is still hot after 1024 other misses costs
//! one more parse.
//!
//! Owns only storage; what is stored is computed in `read_only`.

use std::collections::hash_map::{HashMap, RandomState};
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use crate::route::Analysis;

/// How many texts the cache keeps: enough for the distinct statements of a typical
/// application, small enough to scan the eviction order cheaply.
pub(crate) const CAPACITY: usize = 1024;

/// Texts longer than this are analysed every time rather than kept: the cache then holds at
/// most `CAPACITY * MAX_TEXT` bytes of text (4 MiB).
pub(crate) const MAX_TEXT: usize = 4096;

#[derive(Debug)]
pub(crate) struct RouteCache {
    hasher: RandomState,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<u64, (Box<str>, Analysis)>,
    /// Hashes in insertion order, oldest first.
    order: VecDeque<u64>,
}

impl RouteCache {
    pub(crate) fn new() -> RouteCache {
        RouteCache {
            hasher: RandomState::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Runs `use_it` on the cached analysis of `text`, if there is one, under the lock (so
    /// nothing is cloned).
    pub(crate) fn with<T>(&self, text: &str, use_it: impl FnOnce(&Analysis) -> T) -> Option<T> {
        if text.len() > MAX_TEXT {
            return None;
        }
        let key = self.hasher.hash_one(text);
        // A panic while holding the lock cannot leave an entry half-written: entries are
        // inserted whole. So a poisoned lock is still usable.
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (stored, analysis) = inner.entries.get(&key)?;
        (**stored == *text).then(|| use_it(analysis))
    }

    /// Keeps the analysis of `text`, evicting the oldest entry when full.
    pub(crate) fn insert(&self, text: &str, analysis: Analysis) {
        if text.len() > MAX_TEXT {
            return;
        }
        let key = self.hasher.hash_one(text);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = inner.entries.insert(key, (text.into(), analysis)).is_none();
        if fresh {
            inner.order.push_back(key);
        }
        while inner.order.len() > CAPACITY {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }

    /// How many texts are cached.
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Hint, PrimaryReason, Route};

    fn write() -> Analysis {
        Analysis::primary(PrimaryReason::Write, true)
    }

    #[test]
    fn finds_what_it_kept_and_nothing_else() {
        let cache = RouteCache::new();
        cache.insert("INSERT INTO t VALUES (1)", write());
        let route = |a: &Analysis| a.route(Hint::None, &[]);
        assert_eq!(
            cache.with("INSERT INTO t VALUES (1)", route),
            Some(Route::Primary(PrimaryReason::Write))
        );
        assert_eq!(cache.with("INSERT INTO t VALUES (2)", route), None);
    }

    #[test]
    fn stays_bounded_and_evicts_the_oldest() {
        let cache = RouteCache::new();
        for n in 0..CAPACITY + 10 {
            cache.insert(&format!("SELECT {n}"), write());
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.with("SELECT 0", |_| ()).is_none());
        assert!(cache.with("SELECT 9", |_| ()).is_none());
        assert!(cache.with("SELECT 10", |_| ()).is_some());
        // Inserting a text again does not grow the order queue.
        cache.insert("SELECT 10", write());
        assert_eq!(cache.len(), CAPACITY);
    }

    #[test]
    fn long_texts_are_not_kept() {
        let cache = RouteCache::new();
        let long = format!("SELECT '{}'", "x".repeat(MAX_TEXT));
        cache.insert(&long, write());
        assert_eq!(cache.len(), 0);
        assert!(cache.with(&long, |_| ()).is_none());
    }
}
