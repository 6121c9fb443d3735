//! Reading values: exactly one scope's ([`SecretStore::get_secret`]) or what
//! a listener sees, a space's override falling back to its environment's
//! ([`SecretStore::resolve`], the `get-secret` hot path).
//!
//! Every read first applies the changes the bucket's watch has seen
//! (`cache_sync.rs`), then serves the record from the sealed cache or the
//! backend, and decrypts it on demand.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Preview, StoreError};
use crate::layout;
use crate::model::{Provenance, Resolved, Scope, SecretValue};
use crate::open::SecretStore;
use crate::records::{self, SecretRecord};
use crate::sealed_cache::{Cached, SealedEntry};
use crate::validate::validate_name;

/// A secret record as read from the backend.
enum Fetched {
    Missing,
    /// Its DEK is gone: a rotation retired it after re-encrypting the
    /// record (read it again), or a writer's fence is about to.
    StaleDek,
    Entry(Arc<SealedEntry>),
}

/// How many times a read re-reads a record whose DEK is gone: at once, then
/// waiting a little longer each time (1, 2, 4 ... ms, 127 ms in all) for a
/// writer's fence to land.
const STALE_RETRIES: u32 = 8;

impl SecretStore {
    /// The value of `name` in exactly `scope` (no inheritance).
    pub fn get_secret(&self, scope: &Scope, name: &str) -> Result<SecretValue, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        self.inner.sync.catch_up(&self.inner)?;
        match self.read_value(scope, name)? {
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

    /// What a listener in `environment` (and `space`) gets for `name`: the
    /// space's own secret if it has one, else the environment's.
    pub fn resolve(
        &self,
        environment: &str,
        space: Option<&str>,
        name: &str,
    ) -> Result<Resolved, StoreError> {
        validate_name(name)?;
        self.check_unsealed()?;
        self.inner.sync.catch_up(&self.inner)?;
        if let Some(space) = space {
            self.require_space_in(space, environment)?;
            let scope = Scope::Space(space.to_owned());
            if let Some((value, version)) = self.read_value(&scope, name)? {
                return Ok(Resolved {
                    value,
                    scope,
                    provenance: Provenance::SpaceOverride,
                    version,
                });
            }
        }
        let scope = Scope::Environment(environment.to_owned());
        match self.read_value(&scope, name)? {
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
    /// meanwhile; a missing record is cached as missing).
    fn read_value(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<(SecretValue, u64)>, StoreError> {
        let key = layout::secret(scope, name);
        let cache = &self.inner.sealed_cache;
        let bucket = &*self.inner.bucket;
        for attempt in 0..STALE_RETRIES {
            let (entry, fresh) = match cache.get(&key) {
                Some(Cached::Sealed(entry)) => (entry, None),
                Some(Cached::Missing) => return Ok(None),
                None => {
                    let generation = cache.generation();
                    let revision = bucket.revision();
                    match self.fetch(&key, scope, name)? {
                        Fetched::Missing => {
                            if bucket.revision() == revision {
                                cache.insert(generation, key, Cached::Missing);
                            }
                            return Ok(None);
                        }
                        Fetched::StaleDek => {
                            if attempt > 0 {
                                std::thread::sleep(Duration::from_millis(1 << (attempt - 1)));
                            }
                            continue;
                        }
                        Fetched::Entry(entry) => (entry, Some((generation, revision))),
                    }
                }
            };
            let mut plain = entry
                .cipher
                .open(&entry.nonce, &entry.ad, &entry.sealed)
                .map_err(|_| {
                    StoreError::integrity(format!(
                        "secret {} in {scope} does not authenticate",
                        Preview(name)
                    ))
                })?;
            let value = match String::from_utf8(std::mem::take(&mut *plain)) {
                Ok(s) => SecretValue::new(s),
                Err(e) => {
                    drop(zeroize::Zeroizing::new(e.into_bytes()));
                    return Err(StoreError::corrupt(format!(
                        "secret {} in {scope} is not UTF-8",
                        Preview(name)
                    )));
                }
            };
            let version = entry.version;
            if let Some((generation, revision)) = fresh
                && bucket.revision() == revision
            {
                cache.insert(generation, key, Cached::Sealed(entry));
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
        let rec: SecretRecord<'_> = records::decode(&entry.value, "secret record")?;
        let Some(cipher) = self.inner.keys.dek(scope, rec.dek_version)? else {
            return Ok(Fetched::StaleDek);
        };
        let sk = records::scope_key(scope);
        Ok(Fetched::Entry(Arc::new(SealedEntry {
            version: rec.version,
            nonce: rec.nonce,
            sealed: rec.sealed.into(),
            ad: records::value_ad(&sk, name, rec.version, rec.dek_version).into(),
            cipher,
        })))
    }
}
