//! Reading values: exactly one scope's ([`SecretStore::get_secret`]) or what
//! a listener sees, a space's override falling back to its environment's
//! ([`SecretStore::resolve_on_topic`], the `get-secret` hot path).
//!
//! Every read first applies the changes the bucket's watch has seen
//! (`cache_sync.rs`), then serves the record from the sealed cache or the
//! backend, and decrypts it on demand.
//!
//! A listener's read also honours the record's topic binding
//! (`topic_binding.rs`): a secret bound to topics the event's does not
//! match is refused ([`StoreError::TopicBound`]). The binding of a cached
//! record is checked before it is opened, so a refused read decrypts
//! nothing; a record read from the backend is opened first (which
//! authenticates its binding, sealed into the AD) and only then cached,
//! so the cache holds only records that authenticated. The resolved
//! record's binding decides: a space override bound to other topics is
//! refused, not passed over for the environment's value.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Preview, StoreError};
use crate::layout;
use crate::model::{Provenance, Resolved, Scope, SecretValue};
use crate::open::SecretStore;
use crate::records;
use crate::sealed_cache::{Cached, SealedEntry};
use crate::topic_binding::TopicBinding;
use crate::validate::validate_name;

/// A secret record as read from the backend.
enum Fetched {
    Missing,
    /// Its DEK is gone: a rotation retired it after re-encrypting the
    /// record (read it again), or a writer's fence is about to.
    StaleDek,
    Entry(Arc<SealedEntry>),
}

/// Who is reading, which decides whether a topic binding applies.
#[derive(Clone, Copy)]
enum Reader<'a> {
    /// The host, reading one scope's value ([`SecretStore::get_secret`]):
    /// bindings say which listeners may read a secret, not whether the
    /// host may.
    Host,
    /// A listener, during an event on this topic (`None`: outside any).
    Listener(Option<&'a str>),
}

/// How many times a read re-reads a record whose DEK is gone: at once, then
/// waiting a little longer each time (1, 2, 4 ... ms, 127 ms in all) for a
/// writer's fence to land.
const STALE_RETRIES: u32 = 8;

impl SecretStore {
    /// The value of `name` in exactly `scope` (no inheritance), whatever
    /// topics it is bound to: this is the host's read, not a listener's.
    pub fn get_secret(&self, scope: &Scope, name: &str) -> Result<SecretValue, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        self.inner.sync.catch_up(&self.inner)?;
        match self.read_value(scope, name, Reader::Host)? {
            Some((value, _)) => Ok(value),
            None => {
                self.require_scope(scope)?;
                Err(StoreError::NotFound {
                    scope: scope.clone(),
                    name: name.to_owned(),
                })
            }
        }
    }

    /// What a listener in `environment` (and `space`) gets for `name`
    /// outside of any event: the space's own secret if it has one, else the
    /// environment's. A secret bound to topics is refused
    /// ([`StoreError::TopicBound`]); see [`SecretStore::resolve_on_topic`].
    pub fn resolve(
        &self,
        environment: &str,
        space: Option<&str>,
        name: &str,
    ) -> Result<Resolved, StoreError> {
        self.resolve_as(environment, space, name, Reader::Listener(None))
    }

    /// What a listener in `environment` (and `space`) gets for `name`
    /// during an event on `topic`: as [`SecretStore::resolve`], and a
    /// secret bound to topics is read only if `topic` matches one of them.
    pub fn resolve_on_topic(
        &self,
        environment: &str,
        space: Option<&str>,
        name: &str,
        topic: &str,
    ) -> Result<Resolved, StoreError> {
        self.resolve_as(environment, space, name, Reader::Listener(Some(topic)))
    }

    fn resolve_as(
        &self,
        environment: &str,
        space: Option<&str>,
        name: &str,
        reader: Reader<'_>,
    ) -> Result<Resolved, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        self.inner.sync.catch_up(&self.inner)?;
        if let Some(space) = space {
            self.require_space_in(space, environment)?;
            let scope = Scope::Space(space.to_owned());
            if let Some((value, version)) = self.read_value(&scope, name, reader)? {
                return Ok(Resolved {
                    value,
                    scope,
                    provenance: Provenance::SpaceOverride,
                    version,
                });
            }
        }
        let scope = Scope::Environment(environment.to_owned());
        match self.read_value(&scope, name, reader)? {
            Some((value, version)) => Ok(Resolved {
                value,
                scope,
                provenance: Provenance::Environment,
                version,
            }),
            None => {
                self.require_scope(&scope)?;
                Err(StoreError::NotFound {
                    scope,
                    name: name.to_owned(),
                })
            }
        }
    }

    /// Reads and decrypts one value; `None` if the record does not exist.
    /// The record comes from the sealed cache, or from the backend (and is
    /// cached once it has authenticated, if the bucket saw no change
    /// meanwhile; a missing record is cached as missing). A listener's read
    /// of a record bound to other topics is [`StoreError::TopicBound`].
    fn read_value(
        &self,
        scope: &Scope,
        name: &str,
        reader: Reader<'_>,
    ) -> Result<Option<(SecretValue, u64)>, StoreError> {
        let key = layout::secret_inline(scope, name);
        let cache = &self.inner.sealed_cache;
        let bucket = &*self.inner.bucket;
        // A hit is opened under the cache's read lock, from the entry in
        // place: cloning its `Arc` would be two more atomic writes to a
        // line every reading thread shares.
        let hit = cache.with(&key, |cached| {
            cached.map(|cached| match cached {
                Cached::Missing => Ok(None),
                // Cached, so it authenticated when it was read: a refused
                // read does not open it.
                Cached::Sealed(entry) if !allows(entry, reader) => Err(topic_bound(scope, name)),
                Cached::Sealed(entry) => Ok(Some((open(entry, scope, name)?, entry.version))),
            })
        });
        if let Some(hit) = hit {
            return hit;
        }
        for attempt in 0..STALE_RETRIES {
            let generation = cache.generation();
            let revision = bucket.revision();
            let entry = match self.fetch(&key, scope, name)? {
                Fetched::Missing => {
                    if bucket.revision() == revision {
                        cache.insert(generation, key.to_vec(), Cached::Missing);
                    }
                    return Ok(None);
                }
                Fetched::StaleDek => {
                    if attempt > 0 {
                        std::thread::sleep(Duration::from_millis(1 << (attempt - 1)));
                    }
                    continue;
                }
                Fetched::Entry(entry) => entry,
            };
            // Opened before it is cached (and before a refusal), so the
            // cache holds only records that authenticated.
            let value = open(&entry, scope, name)?;
            let (version, allowed) = (entry.version, allows(&entry, reader));
            if bucket.revision() == revision {
                cache.insert(generation, key.to_vec(), Cached::Sealed(entry));
            }
            if !allowed {
                // Opened only to authenticate it; the value drops
                // (zeroized) here.
                return Err(topic_bound(scope, name));
            }
            return Ok(Some((value, version)));
        }
        Err(StoreError::corrupt(format!(
            "secret {} in {scope} refers to a DEK that does not exist",
            Preview(name)
        )))
    }

    /// The record under `key` from the backend, decoded, with its DEK.
    fn fetch(&self, key: &[u8], scope: &Scope, name: &str) -> Result<Fetched, StoreError> {
        let read = self.inner.bucket.get(key)?;
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::SecretRecordRead);
        let Some(entry) = read else {
            return Ok(Fetched::Missing);
        };
        let records::Current::Live(rec) = records::decode_current(&entry.value)? else {
            return Ok(Fetched::Missing); // deleted: a tombstone
        };
        let Some(cipher) = self.inner.keys.dek(scope, rec.dek_version)? else {
            return Ok(Fetched::StaleDek);
        };
        let sk = records::scope_key(scope);
        let topics = if rec.topics.is_empty() {
            None
        } else {
            Some(Box::new(TopicBinding::compile(&rec.topics)?))
        };
        Ok(Fetched::Entry(Arc::new(SealedEntry {
            version: rec.version,
            nonce: rec.nonce,
            sealed: rec.sealed.into(),
            ad: records::value_ad(&sk, name, rec.version, rec.dek_version, &rec.topics).into(),
            cipher,
            topics,
        })))
    }
}

/// Whether `reader` may read the record: a topic binding binds listeners,
/// not the host.
fn allows(entry: &SealedEntry, reader: Reader<'_>) -> bool {
    match (&entry.topics, reader) {
        (None, _) | (Some(_), Reader::Host) => true,
        (Some(binding), Reader::Listener(topic)) => topic.is_some_and(|t| binding.allows(t)),
    }
}

fn topic_bound(scope: &Scope, name: &str) -> StoreError {
    StoreError::TopicBound {
        scope: scope.clone(),
        name: name.to_owned(),
    }
}

/// Authenticates and decrypts the record's value.
fn open(entry: &SealedEntry, scope: &Scope, name: &str) -> Result<SecretValue, StoreError> {
    let mut plain = entry
        .cipher
        .open(&entry.nonce, &entry.ad, &entry.sealed)
        .map_err(|_| {
            StoreError::integrity(format!(
                "secret {} in {scope} does not authenticate",
                Preview(name)
            ))
        })?;
    match String::from_utf8(std::mem::take(&mut *plain)) {
        Ok(s) => Ok(SecretValue::new(s)),
        Err(e) => {
            drop(zeroize::Zeroizing::new(e.into_bytes()));
            Err(StoreError::corrupt(format!(
                "secret {} in {scope} is not UTF-8",
                Preview(name)
            )))
        }
    }
}
