//! Data keys (DEKs): wrapping under the KEK, the cache of unwrapped ones,
//! and each scope's current-DEK pointer.
//!
//! **Cache.** `resolve` runs on every guest `get-secret`, so unwrapping a
//! DEK (an AES-GCM open under the KEK) on each call would double its cost.
//! Unwrapped DEK ciphers are cached by their record key `dek/<scope>/<v>`;
//! the cipher's key schedule is zeroized on drop. DEK versions are never
//! reused (a rotation *creates* the next version, which fails if it
//! exists), so an entry can never decrypt under a different key than the
//! one its version named. A miss re-checks under the cache lock that the
//! DEK record still exists before caching it, and deleting a DEK evicts it
//! (through the store's watch), so a retired DEK does not linger in memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keyhole_kv::{Bucket, Cas};

use super::KeyManager;
use crate::crypto::{self, Cipher, KEY_LEN};
use crate::error::{Preview, StoreError};
use crate::keyring::Keyring;
use crate::layout;
use crate::locks::{read_lock, write_lock};
use crate::model::Scope;
use crate::records::{self, DekRecord};

/// Cache of unwrapped DEKs, keyed by the DEK record's key.
#[derive(Default)]
pub(crate) struct DekCache(RwLock<HashMap<Vec<u8>, Arc<Cipher>>>);

impl DekCache {
    pub fn get(&self, dek_key: &[u8]) -> Option<Arc<Cipher>> {
        read_lock(&self.0).get(dek_key).cloned()
    }

    /// Caches `cipher` unless its DEK record is gone. The check runs under
    /// the cache's write lock and retirement deletes the record before it
    /// is evicted ([`DekCache::remove`]), so a miss that raced with a DEK
    /// rotation cannot re-insert a retired key after its eviction.
    fn put_if_live(
        &self,
        dek_key: Vec<u8>,
        cipher: Arc<Cipher>,
        bucket: &dyn Bucket,
    ) -> Result<(), StoreError> {
        let mut cache = write_lock(&self.0);
        if bucket.get(&dek_key)?.is_some() {
            cache.insert(dek_key, cipher);
        }
        Ok(())
    }

    /// Evicts a DEK; call only after its record is deleted.
    pub fn remove(&self, dek_key: &[u8]) {
        write_lock(&self.0).remove(dek_key);
    }

    #[cfg(test)]
    pub fn contains(&self, dek_key: &[u8]) -> bool {
        read_lock(&self.0).contains_key(dek_key)
    }

    pub fn clear(&self) {
        write_lock(&self.0).clear();
    }
}

/// Wraps a DEK under a KEK.
pub(crate) fn wrap_dek(
    kek: &Cipher,
    kek_version: u64,
    scope_key: &[u8],
    dek_version: u64,
    dek: &[u8; KEY_LEN],
) -> Vec<u8> {
    let nonce = crypto::random_nonce();
    let wrapped = kek.seal(
        &nonce,
        &records::dek_ad(scope_key, dek_version, kek_version),
        dek.as_slice(),
    );
    records::encode(&DekRecord {
        kek_version,
        nonce,
        wrapped: &wrapped,
    })
}

/// Unwraps a DEK record's key material.
pub(crate) fn unwrap_dek(
    ring: &Keyring,
    scope_key: &[u8],
    dek_version: u64,
    record: &DekRecord<'_>,
) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>, StoreError> {
    let what = || {
        let scope = records::parse_scope_key(scope_key)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into());
        format!("DEK v{dek_version} of {scope}")
    };
    let kek = ring.get(record.kek_version).ok_or_else(|| {
        StoreError::corrupt(format!(
            "{} is wrapped under unknown master key v{}",
            what(),
            record.kek_version
        ))
    })?;
    let plain = kek
        .cipher
        .open(
            &record.nonce,
            &records::dek_ad(scope_key, dek_version, record.kek_version),
            record.wrapped,
        )
        .map_err(|_| StoreError::integrity(format!("{} does not authenticate", what())))?;
    let mut key = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    if plain.len() != KEY_LEN {
        return Err(StoreError::corrupt(format!(
            "{} has the wrong length",
            what()
        )));
    }
    key.copy_from_slice(&plain);
    Ok(key)
}

/// The DEK new values of a scope are sealed under.
pub(crate) struct CurrentDek {
    pub version: u64,
    pub cipher: Arc<Cipher>,
}

impl KeyManager {
    /// The cipher of DEK `version` of `scope`, or `None` if that DEK no
    /// longer exists (a rotation retired it: re-read the value record).
    pub(crate) fn dek(
        &self,
        scope: &Scope,
        version: u64,
    ) -> Result<Option<Arc<Cipher>>, StoreError> {
        let dek_key = layout::dek(scope, version);
        if let Some(c) = self.deks.get(&dek_key) {
            return Ok(Some(c));
        }
        let Some(entry) = self.bucket().get(&dek_key)? else {
            return Ok(None);
        };
        let rec: DekRecord<'_> = records::decode(&entry.value, "wrapped DEK")?;
        let ring = self.ring_with(rec.kek_version)?;
        let key = unwrap_dek(&ring, &records::scope_key(scope), version, &rec)?;
        let cipher = Arc::new(Cipher::new(&key));
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::DekUnwrapped);
        // The record we unwrapped may have been retired since; the cipher
        // still opens what the caller read, but must not outlive the DEK in
        // the cache.
        self.deks
            .put_if_live(dek_key, cipher.clone(), self.bucket())?;
        Ok(Some(cipher))
    }

    /// The version `dek-current` names for `scope`, read from the backend.
    pub(crate) fn dek_pointer(
        &self,
        scope: &Scope,
    ) -> Result<Option<(u64, keyhole_kv::Revision)>, StoreError> {
        match self.bucket().get(&layout::dek_current(scope))? {
            Some(e) => Ok(Some((
                records::u64_value(&e.value, "current DEK pointer")?,
                e.revision,
            ))),
            None => Ok(None),
        }
    }

    /// The scope's current DEK, read from the backend (writers must not
    /// trust a cached pointer), creating DEK v1 on the scope's first write,
    /// or the next version on the first write after the scope was deleted
    /// and created again.
    pub(crate) fn current_dek(&self, scope: &Scope) -> Result<CurrentDek, StoreError> {
        for _ in 0..super::FENCE_ROUNDS {
            let Some((version, rev)) = self.dek_pointer(scope)? else {
                self.create_dek(scope, 1, None)?;
                continue;
            };
            match self.dek(scope, version)? {
                Some(cipher) => return Ok(CurrentDek { version, cipher }),
                // Retired between reading the pointer and the record: the
                // pointer has moved on; read it again. If it has not, the
                // scope was deleted (its DEKs destroyed) and the pointer
                // outlived it as the high-water mark of its versions.
                None if self.dek_pointer(scope)? == Some((version, rev)) => {
                    let next = version
                        .checked_add(1)
                        .ok_or_else(|| StoreError::corrupt("DEK version overflow"))?;
                    self.create_dek(scope, next, Some(rev))?;
                }
                None => continue,
            }
        }
        Err(StoreError::corrupt(format!(
            "the current DEK of {scope} is missing"
        )))
    }

    /// Creates DEK `version` of a live scope and points `dek-current` at it
    /// (creating the pointer, or moving it from revision `pointer`). Losing
    /// either race is fine: another writer created them. A scope that a
    /// deletion marked meanwhile gets no key: the fence after the create
    /// takes it back (`deletion::live_fence`).
    fn create_dek(
        &self,
        scope: &Scope,
        version: u64,
        pointer: Option<keyhole_kv::Revision>,
    ) -> Result<(), StoreError> {
        if !crate::scopes::is_live(self.bucket(), scope)? {
            return Err(StoreError::unknown(scope));
        }
        let (kek_version, ring, _) = self.current_kek()?;
        let kek = &ring.get(kek_version).expect("current_kek holds it").cipher;
        let dek = crypto::random_key();
        let rec = wrap_dek(kek, kek_version, &records::scope_key(scope), version, &dek);
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::BeforeDekCreate);
        let dek_key = layout::dek(scope, version);
        if let Cas::Written(rev) = self.bucket().create(&dek_key, &rec)? {
            let wrapped = super::Wrapped::dek(scope, version);
            let rev = self.kek_fence(&wrapped, &dek, kek_version, rev)?;
            crate::deletion::live_fence(self.bucket(), scope, &dek_key, rev)?;
        }
        let value = version.to_be_bytes();
        let _ = match pointer {
            None => self.bucket().create(&layout::dek_current(scope), &value)?,
            Some(rev) => self
                .bucket()
                .update(&layout::dek_current(scope), &value, rev)?,
        };
        Ok(())
    }

    /// Every DEK version of `scope` that has a record, ascending.
    pub(crate) fn dek_versions(&self, scope: &Scope) -> Result<Vec<u64>, StoreError> {
        self.bucket()
            .scan(&layout::deks_of(scope))?
            .into_iter()
            .map(|(k, _)| {
                layout::version_suffix(&k).ok_or_else(|| {
                    StoreError::corrupt(format!(
                        "DEK record of {scope} with a malformed key {}",
                        Preview(&String::from_utf8_lossy(&k))
                    ))
                })
            })
            .collect()
    }
}
