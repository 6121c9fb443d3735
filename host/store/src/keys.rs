//! Key hierarchy at run time: deciding whether the KEK opens this store
//! (sealing), and turning wrapped DEKs into cached ciphers.
//!
//! **Sealing.** Each KEK version the store has used leaves a check record in
//! sled: a fixed marker sealed under that KEK with AD naming the version. At
//! open, a provided key that fails its check record means "wrong key": the
//! store opens *sealed* (metadata works, values do not) and writes nothing.
//! A fresh store (no check record, no DEK) adopts the provided key. A keyring
//! version newer than every recorded one is adopted too: that is a KEK
//! rotation that crashed after writing the key file.
//!
//! **DEK cache.** `resolve` runs on every guest `get-secret`, so unwrapping a
//! DEK (an AES-GCM open under the KEK) on each call would double its cost.
//! Unwrapped DEK ciphers are cached by `(scope, DEK version)`; entries are
//! dropped on rotation, and the cipher's key schedule is zeroized on drop.
//! DEK versions are never reused (`rotate_dek` picks and creates the next
//! version under the exclusive keyring lock, which excludes the lazy
//! creation of v1 in [`Inner::current_dek`], and creates it only if absent),
//! so an entry can never decrypt under a different key than the one its
//! version named. A miss re-checks under the cache lock that the DEK still
//! exists before caching it, so a retired DEK does not linger in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::crypto::{self, Cipher, KEY_LEN};
use crate::error::StoreError;
use crate::keyring::{KeySource, Keyring, Loaded};
use crate::records::{self, CheckRecord, DekRecord, KEK_CHECK_MARKER};
use crate::store::{Inner, read_lock, write_lock};

/// The keyring to run with, or the reason the store is sealed.
pub(crate) fn unseal(
    db: &sled::Db,
    meta: &sled::Tree,
    deks: &sled::Tree,
    source: &KeySource,
    loaded: Loaded,
) -> Result<(Keyring, Option<String>), StoreError> {
    let ring = match loaded {
        Loaded::Missing(reason) => return Ok((Keyring::default(), Some(reason))),
        Loaded::Ring(r) => r,
    };
    let not_open = format!(
        "master key at {} does not open this store",
        source.location()
    );

    let mut recorded = BTreeMap::new();
    for item in meta.scan_prefix(records::kek_check_prefix()) {
        let (k, v) = item?;
        let version = records::parse_kek_check_key(&k)
            .ok_or_else(|| StoreError::corrupt("key check record with a malformed key"))?;
        recorded.insert(version, v);
    }

    if recorded.is_empty() {
        if !deks.is_empty() {
            return Ok((Keyring::default(), Some(not_open)));
        }
        for (version, kek) in &ring.keys {
            write_check(meta, *version, &kek.cipher)?;
        }
        db.flush()?;
        return Ok((ring, None));
    }

    let max_recorded = *recorded.keys().next_back().expect("non-empty");
    let mut usable = Keyring::default();
    let mut verified_any = false;
    let mut adopt = Vec::new();
    for (version, kek) in ring.keys {
        match recorded.get(&version) {
            Some(bytes) => {
                let rec: CheckRecord<'_> = records::decode(bytes, "key check record")?;
                let ok = kek
                    .cipher
                    .open(&rec.nonce, &records::check_ad(version), rec.sealed)
                    .is_ok_and(|m| m[..] == *KEK_CHECK_MARKER);
                if !ok {
                    return Ok((Keyring::default(), Some(not_open)));
                }
                verified_any = true;
                usable.keys.insert(version, kek);
            }
            None if version > max_recorded => {
                adopt.push(version);
                usable.keys.insert(version, kek);
            }
            // An old version this store has retired: not needed, not used.
            None => {}
        }
    }
    if !verified_any {
        return Ok((Keyring::default(), Some(not_open)));
    }
    for item in deks.iter() {
        let (_, v) = item?;
        let rec: DekRecord<'_> = records::decode(&v, "wrapped DEK")?;
        if usable.get(rec.kek_version).is_none() {
            let reason = format!("{not_open} (keyring lacks v{})", rec.kek_version);
            return Ok((Keyring::default(), Some(reason)));
        }
    }
    for version in adopt {
        let kek = usable.get(version).expect("adopted version is usable");
        write_check(meta, version, &kek.cipher)?;
    }
    db.flush()?;
    Ok((usable, None))
}

pub(crate) fn write_check(meta: &sled::Tree, version: u64, kek: &Cipher) -> Result<(), StoreError> {
    let nonce = crypto::random_nonce();
    let sealed = kek.seal(&nonce, &records::check_ad(version), KEK_CHECK_MARKER);
    let rec = CheckRecord {
        nonce,
        sealed: &sealed,
    };
    meta.insert(records::kek_check_key(version), records::encode(&rec))?;
    Ok(())
}

/// Cache of unwrapped DEKs, keyed by the DEK record key.
#[derive(Default)]
pub(crate) struct DekCache(RwLock<HashMap<Vec<u8>, Arc<Cipher>>>);

impl DekCache {
    pub fn get(&self, dek_key: &[u8]) -> Option<Arc<Cipher>> {
        read_lock(&self.0).get(dek_key).cloned()
    }

    /// Caches `cipher` unless its DEK record is gone. The check runs under
    /// the cache's write lock and retirement deletes the record before it
    /// evicts the entry ([`DekCache::remove`]), so a miss that raced with a
    /// DEK rotation cannot re-insert a retired key after its eviction.
    fn put_if_live(
        &self,
        dek_key: Vec<u8>,
        cipher: Arc<Cipher>,
        deks: &sled::Tree,
    ) -> Result<(), StoreError> {
        let mut cache = write_lock(&self.0);
        if deks.contains_key(&dek_key)? {
            cache.insert(dek_key, cipher);
        }
        Ok(())
    }

    /// Evicts a DEK; call only after its record is deleted from sled.
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

impl Inner {
    /// The cipher of DEK `dek_version` of a scope, or `None` if that DEK no
    /// longer exists (a rotation retired it: re-read the value record).
    /// `ring` is the caller's keyring guard if it holds one; otherwise the
    /// keyring is locked only on a cache miss.
    pub(crate) fn dek(
        &self,
        ring: Option<&Keyring>,
        scope_key: &[u8],
        dek_version: u64,
    ) -> Result<Option<Arc<Cipher>>, StoreError> {
        let dek_key = records::dek_key(scope_key, dek_version);
        if let Some(c) = self.dek_cache.get(&dek_key) {
            return Ok(Some(c));
        }
        let cipher = {
            let guard;
            let ring = match ring {
                Some(r) => r,
                None => {
                    guard = read_lock(&self.keys);
                    &guard
                }
            };
            let Some(bytes) = self.trees.deks.get(&dek_key)? else {
                return Ok(None);
            };
            let rec: DekRecord<'_> = records::decode(&bytes, "wrapped DEK")?;
            let key = unwrap_dek(ring, scope_key, dek_version, &rec)?;
            Arc::new(Cipher::new(&key))
        };
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::DekUnwrapped);
        // The record we unwrapped may have been retired since; the cipher
        // still opens what the caller read, but must not outlive the DEK in
        // the cache.
        self.dek_cache
            .put_if_live(dek_key, cipher.clone(), &self.trees.deks)?;
        Ok(Some(cipher))
    }

    /// The scope's current DEK for writing, creating DEK v1 on first use.
    /// The caller holds the keyring read lock for the whole write, which is
    /// what lets rotations wait out writers that picked an older DEK.
    pub(crate) fn current_dek(
        &self,
        ring: &Keyring,
        scope_key: &[u8],
    ) -> Result<(u64, Arc<Cipher>), StoreError> {
        loop {
            if let Some(v) = self.trees.dek_current.get(scope_key)? {
                let version = records::u64_value(&v, "current DEK pointer")?;
                return match self.dek(Some(ring), scope_key, version)? {
                    Some(c) => Ok((version, c)),
                    None => Err(StoreError::corrupt(format!(
                        "current DEK v{version} of {} is missing",
                        records::parse_scope_key(scope_key)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ))),
                };
            }
            let (kek_version, kek) = ring
                .current()
                .ok_or_else(|| StoreError::corrupt("no master key loaded"))?;
            let dek = crypto::random_key();
            let rec = wrap_dek(&kek.cipher, kek_version, scope_key, 1, &dek);
            // Losing either race is fine: someone else created DEK v1.
            let _ = self.trees.deks.compare_and_swap(
                records::dek_key(scope_key, 1),
                None::<&[u8]>,
                Some(rec),
            )?;
            let _ = self.trees.dek_current.compare_and_swap(
                scope_key,
                None::<&[u8]>,
                Some(&1u64.to_be_bytes()[..]),
            )?;
        }
    }
}
