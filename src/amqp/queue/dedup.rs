//! A queue's de-duplication cache (`x-message-deduplication`, with
//! `x-cache-size` and `x-cache-ttl`, as LavinMQ and the RabbitMQ community
//! plugin name them): the keys of the last messages stored, each with when
//! it was stored. A message whose key is in the cache (and younger than the
//! TTL) is a duplicate: confirmed, not stored.
//!
//! The cache is not written anywhere of its own: the message log is its
//! record. A durable queue keeps at least its last `x-cache-size` messages
//! on disk, settled or not (the log start never passes them), and a
//! reopened queue reads the keys of those messages back. A key enters the
//! cache when its message is appended and counts as seen only once the
//! append returned (then it is in the log): a duplicate that comes
//! meanwhile waits, so it is never confirmed while the original may still
//! be lost.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::super::codec::{protocol::basic::AMQPProperties, AMQPValue};
use super::options::Dedup;

/// The header naming a message's de-duplication key (else its message-id).
pub const KEY_HEADER: &str = "x-deduplication-header";

/// A message's de-duplication key: its `x-deduplication-header` header,
/// else its `message_id` property; `None`: never a duplicate.
pub fn key_of(properties: &AMQPProperties) -> Option<Bytes> {
    let header = properties.headers().as_ref().and_then(|h| h.inner().get(KEY_HEADER).cloned());
    match header {
        Some(AMQPValue::LongString(s)) => Some(Bytes::copy_from_slice(s.as_bytes())),
        Some(AMQPValue::ShortString(s)) => Some(Bytes::copy_from_slice(s.as_str().as_bytes())),
        Some(AMQPValue::Void) | None => {
            properties.message_id().as_ref().map(|m| Bytes::copy_from_slice(m.as_str().as_bytes()))
        }
        // Numbers and the rest: their printed value.
        Some(other) => Some(Bytes::from(format!("{other:?}"))),
    }
}

/// What the cache says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not in the cache (or older than the TTL): now it is, as pending.
    New { at_ms: i64 },
    /// Its message is stored: a duplicate.
    Stored,
    /// Its message is being appended: wait and ask again.
    Pending,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    at_ms: i64,
    stored: bool,
}

pub struct DedupCache {
    size_max: usize,
    ttl_ms: Option<u64>,
    entries: HashMap<Bytes, Entry>,
    /// Keys in the order they entered, with when (entries whose time no
    /// longer matches were entered again later and are skipped).
    order: VecDeque<(Bytes, i64)>,
}

impl DedupCache {
    pub fn new(d: &Dedup) -> DedupCache {
        DedupCache {
            size_max: d.cache_size as usize,
            ttl_ms: d.ttl_ms,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn live(&self, e: &Entry, now_ms: i64) -> bool {
        self.ttl_ms.is_none_or(|ttl| now_ms < e.at_ms + ttl as i64)
    }

    /// Looks `key` up at `now_ms`; a new key enters the cache as pending.
    pub fn check(&mut self, key: &Bytes, now_ms: i64) -> Seen {
        if let Some(e) = self.entries.get(key).copied().filter(|e| self.live(e, now_ms)) {
            return if e.stored { Seen::Stored } else { Seen::Pending };
        }
        self.insert(key.clone(), now_ms, false);
        Seen::New { at_ms: now_ms }
    }

    /// The append of `key`'s message (entered at `at_ms`) returned.
    pub fn stored(&mut self, key: &Bytes, at_ms: i64) {
        if let Some(e) = self.entries.get_mut(key).filter(|e| e.at_ms == at_ms) {
            e.stored = true;
        }
    }

    /// The append of `key`'s message (entered at `at_ms`) failed.
    pub fn forget(&mut self, key: &Bytes, at_ms: i64) {
        if self.entries.get(key).is_some_and(|e| e.at_ms == at_ms) {
            self.entries.remove(key);
        }
    }

    /// A stored message read back at open, oldest first.
    pub fn restore(&mut self, key: Bytes, at_ms: i64) {
        self.insert(key, at_ms, true);
    }

    fn insert(&mut self, key: Bytes, at_ms: i64, stored: bool) {
        self.entries.insert(key.clone(), Entry { at_ms, stored });
        self.order.push_back((key, at_ms));
        // Oldest out: past the size, or past the TTL.
        while let Some((k, t)) = self.order.front().cloned() {
            let current = self.entries.get(&k).is_some_and(|e| e.at_ms == t);
            let expired = self.ttl_ms.is_some_and(|ttl| at_ms >= t + ttl as i64);
            if current && !expired && self.entries.len() <= self.size_max {
                break;
            }
            self.order.pop_front();
            if current && (expired || self.entries.len() > self.size_max) {
                self.entries.remove(&k);
            }
        }
        assert!(self.entries.len() <= self.size_max, "the cache holds at most x-cache-size keys");
        assert!(self.order.len() >= self.entries.len(), "every key is in the order");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(size: u32, ttl_ms: Option<u64>) -> DedupCache {
        DedupCache::new(&Dedup { cache_size: size, ttl_ms })
    }

    fn key(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_key_is_pending_until_its_message_is_stored_then_a_duplicate() {
        let mut c = cache(10, None);
        let Seen::New { at_ms } = c.check(&key("a"), 1) else { panic!("new") };
        assert_eq!(c.check(&key("a"), 2), Seen::Pending);
        c.stored(&key("a"), at_ms);
        assert_eq!(c.check(&key("a"), 3), Seen::Stored);
    }

    #[test]
    fn a_failed_append_forgets_its_key() {
        let mut c = cache(10, None);
        let Seen::New { at_ms } = c.check(&key("a"), 1) else { panic!("new") };
        c.forget(&key("a"), at_ms);
        assert!(matches!(c.check(&key("a"), 2), Seen::New { .. }));
    }

    #[test]
    fn the_oldest_keys_go_past_the_cache_size() {
        let mut c = cache(2, None);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            c.restore(key(k), i as i64);
        }
        assert_eq!(c.len(), 2);
        assert!(matches!(c.check(&key("a"), 10), Seen::New { .. }), "a was pushed out");
        assert_eq!(c.check(&key("c"), 10), Seen::Stored);
    }

    #[test]
    fn keys_older_than_the_ttl_are_not_duplicates_and_leave_the_cache() {
        let mut c = cache(100, Some(50));
        c.restore(key("a"), 0);
        assert_eq!(c.check(&key("a"), 49), Seen::Stored);
        assert!(matches!(c.check(&key("a"), 50), Seen::New { .. }));
        for i in 0..1000 {
            c.restore(key(&format!("k{i}")), 100 + i * 10);
        }
        assert!(c.len() <= 6, "only keys younger than 50 ms stay: {}", c.len());
        assert!(c.order.len() <= 7, "and the order does not grow: {}", c.order.len());
    }
}
