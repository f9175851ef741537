//! Read-your-writes bookkeeping: the primary's position after each client's latest write.
//!
//! Owns a bounded map from a key (a client connection, or an identity) to the highest primary
//! WAL position recorded after that key's writes. Entries expire after a time to live: once a
//! write is older than the longest lag a replica in rotation may have, every replica in rotation
//! shows it, so the entry has nothing left to enforce. When more keys than the capacity wrote
//! within that time, the least recently written are evicted and their positions folded into a
//! floor that every lookup then returns at least, so eviction makes reads more careful, never
//! less. It does not learn positions itself; see [`current_wal_lsn`](crate::current_wal_lsn).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::lsn::Lsn;

/// Write positions per key, bounded in count and age. Shared by reference between sessions.
pub struct WriteLsns<K> {
    book: Mutex<Book<K>>,
    capacity: usize,
    ttl: Duration,
}

struct Book<K> {
    entries: HashMap<K, Entry>,
    /// Keys by the tick of their latest write: oldest first, for expiry and eviction.
    order: BTreeMap<u64, K>,
    next_tick: u64,
    floor: Option<Stamp>,
}

#[derive(Clone, Copy)]
struct Entry {
    stamp: Stamp,
    tick: u64,
}

/// A position and when it was recorded.
#[derive(Clone, Copy)]
struct Stamp {
    lsn: Lsn,
    at: Instant,
}

impl<K: Hash + Eq + Clone> WriteLsns<K> {
    /// Keeps at most `capacity` keys (at least one), each for `ttl` after its latest write.
    /// Choose `ttl` at least the replicas' `max_lag`.
    pub fn new(capacity: usize, ttl: Duration) -> WriteLsns<K> {
        WriteLsns {
            book: Mutex::new(Book {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next_tick: 0,
                floor: None,
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Records that `key` wrote and the primary was then at `lsn`. A key's position only moves
    /// forward: an older `lsn` than the one recorded keeps the recorded one.
    pub fn record(&self, key: K, lsn: Lsn) {
        self.record_at(key, lsn, Instant::now());
    }

    /// The position `key`'s reads must see: its own latest write, or the floor left by evicted
    /// keys if that is higher. `None` means no constraint.
    pub fn get<Q>(&self, key: &Q) -> Option<Lsn>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_at(key, Instant::now())
    }

    /// Forgets `key` (for example when its connection closes).
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut book = self.lock();
        if let Some(entry) = book.entries.remove(key) {
            book.order.remove(&entry.tick);
        }
    }

    /// Keys held now (expired ones may still count until the next call that expires them).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record_at(&self, key: K, lsn: Lsn, now: Instant) {
        let mut book = self.lock();
        book.expire(now, self.ttl);

        let tick = book.next_tick;
        book.next_tick += 1;
        let previous = book.entries.get(&key).copied();
        let lsn = match previous {
            Some(old) => {
                book.order.remove(&old.tick);
                old.stamp.lsn.max(lsn)
            }
            None => lsn,
        };
        let stamp = Stamp { lsn, at: now };
        book.entries.insert(key.clone(), Entry { stamp, tick });
        book.order.insert(tick, key);

        while book.entries.len() > self.capacity {
            book.evict_oldest();
        }
    }

    fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<Lsn>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut book = self.lock();
        book.expire(now, self.ttl);
        let own = book.entries.get(key).map(|e| e.stamp.lsn);
        let floor = book.floor.map(|f| f.lsn);
        own.max(floor)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book<K>> {
        // Every update leaves the book consistent before anything that could panic.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq> Book<K> {
    /// Drops entries (and the floor) recorded `ttl` or longer before `now`.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        let expired = |stamp: &Stamp| now.saturating_duration_since(stamp.at) >= ttl;
        if self.floor.as_ref().is_some_and(expired) {
            self.floor = None;
        }
        while let Some(entry) = self.order.first_entry() {
            let Some(oldest) = self.entries.get(entry.get()) else {
                entry.remove();
                continue;
            };
            if !expired(&oldest.stamp) {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }

    /// Evicts the least recently written key, raising the floor to its position.
    fn evict_oldest(&mut self) {
        let Some((_, key)) = self.order.pop_first() else {
            return;
        };
        let Some(evicted) = self.entries.remove(&key) else {
            return;
        };
        let stamp = evicted.stamp;
        self.floor = Some(match self.floor {
            None => stamp,
            Some(floor) => Stamp {
                lsn: floor.lsn.max(stamp.lsn),
                at: floor.at.max(stamp.at),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn lsn(n: u64) -> Lsn {
        Lsn::new(n)
    }

    #[test]
    fn records_and_only_moves_forward() {
        let book = WriteLsns::new(8, TTL);
        assert_eq!(book.get("a"), None);
        book.record("a".to_owned(), lsn(100));
        book.record("a".to_owned(), lsn(50));
        assert_eq!(book.get("a"), Some(lsn(100)));
        book.record("a".to_owned(), lsn(300));
        assert_eq!(book.get("a"), Some(lsn(300)));
        assert_eq!(book.get("b"), None);
        book.remove("a");
        assert_eq!(book.get("a"), None);
        assert!(book.is_empty());
    }

    #[test]
    fn capacity_evicts_the_least_recently_written_into_a_floor() {
        let book = WriteLsns::new(2, TTL);
        let t = Instant::now();
        book.record_at(1, lsn(10), t);
        book.record_at(2, lsn(20), t);
        // Writing 1 again makes 2 the least recently written.
        book.record_at(1, lsn(15), t);
        book.record_at(3, lsn(30), t);
        assert_eq!(book.len(), 2);

        // 2 is gone, but its position still binds everyone: nobody may read older than it.
        assert_eq!(book.get_at(&2, t), Some(lsn(20)));
        assert_eq!(book.get_at(&99, t), Some(lsn(20)));
        assert_eq!(book.get_at(&1, t), Some(lsn(20)));
        assert_eq!(book.get_at(&3, t), Some(lsn(30)));

        for key in 4..1000 {
            book.record_at(key, lsn(key), t);
        }
        assert_eq!(book.len(), 2);
        assert_eq!(book.get_at(&0, t), Some(lsn(997)));
    }

    #[test]
    fn entries_and_the_floor_expire_after_the_ttl() {
        let book = WriteLsns::new(1, TTL);
        let t = Instant::now();
        book.record_at("old", lsn(10), t);
        book.record_at("new", lsn(20), t + Duration::from_secs(5));
        assert_eq!(
            book.get_at("nobody", t + Duration::from_secs(9)),
            Some(lsn(10))
        );
        assert_eq!(
            book.get_at("new", t + Duration::from_secs(9)),
            Some(lsn(20))
        );

        // The floor left by "old" expires with it; "new" lives 10 s from its own write.
        assert_eq!(book.get_at("nobody", t + TTL), None);
        assert_eq!(
            book.get_at("new", t + Duration::from_secs(14)),
            Some(lsn(20))
        );
        assert_eq!(book.get_at("new", t + Duration::from_secs(15)), None);
        assert!(book.is_empty());
    }
}
