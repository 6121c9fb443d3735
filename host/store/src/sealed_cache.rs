//! An in-memory cache of secret records *as stored* (still sealed), in front
//! of the backend on the read path.
//!
//! Why: a listener's `get-secret` is the store's hottest call, and the
//! backend's `get` (for the embedded one: epoch pin, page-table walk, node search, value
//! copy) plus decoding the record and looking up its DEK was most of it. A
//! hit costs one hash lookup. The cache holds what the backend holds, nonce,
//! ciphertext and tag, beside the DEK cipher the store already keeps in
//! memory, so every read still authenticates and decrypts on demand and a
//! plaintext value is never kept. Names known to be missing are cached too:
//! a space's listener reading an inherited secret looks for the space's
//! override first.
//!
//! Consistency: the store applies every change it observes on the bucket's
//! watch before it reads (`cache_sync.rs`), and each change to a secret or
//! a DEK calls [`SealedCache::invalidate`], which empties the cache and
//! bumps its generation. A reader takes [`SealedCache::generation`] and the
//! bucket's revision *before* it reads the backend, and inserts only if the
//! generation is unchanged (checked under the cache's lock) and the bucket
//! has seen no change since. So an entry read before a write is either
//! refused or removed by that write's invalidation, and a read that starts
//! after a write was observed never sees the older value, whichever store
//! (host) wrote it. Only records that authenticated are inserted.
//!
//! Bounded: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of keys and
//! ciphertext. Misses have their own, smaller cap ([`MAX_MISSES`]) beyond
//! which they are not cached, so a guest asking for made-up names costs
//! only its own backend reads and cannot push out the records other listeners
//! use. An insert of a record into a full cache empties it first, so the
//! cache never stops admitting the secrets in use.

use foldhash::HashMap;
use std::sync::{Arc, RwLock};

use crate::crypto::{Cipher, NONCE_LEN};
use crate::locks::{read_lock, write_lock};
use crate::topic_binding::TopicBinding;

/// Most entries cached.
pub(crate) const MAX_ENTRIES: usize = 16_384;
/// Most bytes of keys, ciphertext and associated data cached.
pub(crate) const MAX_BYTES: usize = 16 << 20;
/// Most misses (names with no record) cached.
pub(crate) const MAX_MISSES: usize = 1_024;

/// One secret record, sealed, with everything needed to open it.
pub(crate) struct SealedEntry {
    pub version: u64,
    pub nonce: [u8; NONCE_LEN],
    pub sealed: Box<[u8]>,
    /// The associated data the value was sealed with.
    pub ad: Box<[u8]>,
    /// The DEK the record names (the same `Arc` the DEK cache holds).
    pub cipher: Arc<Cipher>,
    /// The record's topic binding, compiled; `None` for a secret readable
    /// on every topic (one branch on the read path).
    pub topics: Option<Box<TopicBinding>>,
}

/// What the cache knows about one key.
#[derive(Clone)]
pub(crate) enum Cached {
    /// No record under the key.
    Missing,
    Sealed(Arc<SealedEntry>),
}

impl Cached {
    fn bytes(&self) -> usize {
        match self {
            Cached::Missing => 0,
            Cached::Sealed(e) => {
                e.sealed.len() + e.ad.len() + e.topics.as_ref().map_or(0, |t| t.bytes)
            }
        }
    }
}

#[derive(Default)]
struct Map {
    generation: u64,
    bytes: usize,
    /// How many entries are [`Cached::Missing`].
    misses: usize,
    /// Keyed by the record's key in the bucket.
    entries: HashMap<Box<[u8]>, Cached>,
}

impl Map {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.misses = 0;
    }
}

#[derive(Default)]
pub(crate) struct SealedCache(RwLock<Map>);

impl SealedCache {
    /// Calls `f` with what is cached under `key`, under the read lock.
    pub fn with<R>(&self, key: &[u8], f: impl FnOnce(Option<&Cached>) -> R) -> R {
        f(read_lock(&self.0).entries.get(key))
    }

    #[cfg(test)]
    pub fn get(&self, key: &[u8]) -> Option<Cached> {
        self.with(key, |c| c.cloned())
    }

    /// Take before reading the record from the backend; pass to [`Self::insert`].
    pub fn generation(&self) -> u64 {
        read_lock(&self.0).generation
    }

    /// Caches `entry` unless an invalidation happened since `generation`
    /// was taken, or it is a miss and [`MAX_MISSES`] are cached. A record
    /// that does not fit empties the cache first. Returns whether it was
    /// cached.
    pub fn insert(&self, generation: u64, key: Vec<u8>, entry: Cached) -> bool {
        let mut map = write_lock(&self.0);
        let miss = matches!(entry, Cached::Missing);
        if map.generation != generation || (miss && map.misses >= MAX_MISSES) {
            return false;
        }
        let key_len = key.len();
        let bytes = key_len + entry.bytes();
        if bytes > MAX_BYTES {
            return false;
        }
        if map.entries.len() >= MAX_ENTRIES || map.bytes + bytes > MAX_BYTES {
            map.clear();
        }
        map.bytes += bytes;
        map.misses += usize::from(miss);
        if let Some(old) = map.entries.insert(key.into_boxed_slice(), entry) {
            // The same key was counted with the old entry.
            map.bytes -= key_len + old.bytes();
            map.misses -= usize::from(matches!(old, Cached::Missing));
        }
        true
    }

    /// Empties the cache; called for every change to a secret record and
    /// every DEK eviction.
    pub fn invalidate(&self) {
        let mut map = write_lock(&self.0);
        map.generation += 1;
        map.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        read_lock(&self.0).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sealed_len: usize) -> Cached {
        Cached::Sealed(Arc::new(SealedEntry {
            version: 1,
            nonce: [0; NONCE_LEN],
            sealed: vec![0; sealed_len].into(),
            ad: Box::new([]),
            cipher: Arc::new(Cipher::new(&[7; 32])),
            topics: None,
        }))
    }

    #[test]
    fn an_insert_after_an_invalidation_it_did_not_see_is_refused() {
        let cache = SealedCache::default();
        let before = cache.generation();
        cache.invalidate();
        assert!(!cache.insert(before, b"k".to_vec(), entry(16)));
        assert!(cache.get(b"k").is_none());
        assert!(cache.insert(cache.generation(), b"k".to_vec(), entry(16)));
        assert!(cache.get(b"k").is_some());
    }

    #[test]
    fn invalidate_empties_the_cache() {
        let cache = SealedCache::default();
        let g = cache.generation();
        assert!(cache.insert(g, b"a".to_vec(), entry(16)));
        assert!(cache.insert(g, b"b".to_vec(), entry(16)));
        cache.invalidate();
        assert_eq!(cache.len(), 0);
        assert!(cache.get(b"a").is_none());
    }

    #[test]
    fn the_byte_cap_is_kept_and_replacing_an_entry_frees_its_bytes() {
        let cache = SealedCache::default();
        let g = cache.generation();
        let half = MAX_BYTES / 2 - 1;
        assert!(cache.insert(g, b"a".to_vec(), entry(half)));
        assert!(cache.insert(g, b"a".to_vec(), entry(half)));
        assert!(cache.insert(g, b"b".to_vec(), entry(half)));
        assert_eq!(cache.len(), 2, "replacing `a` freed its bytes");
        // Full: the next insert starts over rather than being refused.
        assert!(cache.insert(g, b"c".to_vec(), entry(2)));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(b"c").is_some());
        assert!(
            !cache.insert(g, b"d".to_vec(), entry(MAX_BYTES)),
            "never fits"
        );
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = SealedCache::default();
        let g = cache.generation();
        for i in 0..MAX_ENTRIES {
            assert!(cache.insert(g, i.to_be_bytes().to_vec(), entry(0)));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.insert(g, b"one more".to_vec(), entry(0)));
        assert_eq!(cache.len(), 1);
        assert!(matches!(cache.get(b"one more"), Some(Cached::Sealed(_))));
    }

    #[test]
    fn misses_have_their_own_cap_and_never_push_out_records() {
        let cache = SealedCache::default();
        let g = cache.generation();
        assert!(cache.insert(g, b"record".to_vec(), entry(16)));
        for i in 0..MAX_MISSES {
            assert!(cache.insert(g, i.to_be_bytes().to_vec(), Cached::Missing));
        }
        assert!(!cache.insert(g, b"one miss too many".to_vec(), Cached::Missing));
        assert!(matches!(cache.get(b"record"), Some(Cached::Sealed(_))));
        assert_eq!(cache.len(), 1 + MAX_MISSES);
        // A miss that becomes a record frees its miss slot.
        assert!(cache.insert(g, 0usize.to_be_bytes().to_vec(), entry(16)));
        assert!(cache.insert(g, b"now fits".to_vec(), Cached::Missing));
        cache.invalidate();
        assert!(cache.insert(cache.generation(), b"after".to_vec(), Cached::Missing));
    }
}
