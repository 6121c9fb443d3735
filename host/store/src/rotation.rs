//! Online key rotation: replacing the KEK or one scope's DEK while reads and
//! writes keep working.
//!
//! Both rotations add the new key first, move records over one by one with
//! compare-and-swap (so a concurrent `set_secret` is never overwritten by a
//! re-encryption of its older value), flush, and only then retire the old
//! key. A crash at any point leaves every record readable: the old key is
//! gone only after nothing refers to it.
//!
//! Writers hold the keyring lock shared for a whole write. A rotation takes
//! it exclusively to switch keys, which both makes later writes use the new
//! key and waits for writes that already picked the old one, so the
//! migration pass that follows sees them.

use std::sync::PoisonError;

use crate::crypto;
use crate::error::{Preview, StoreError};
use crate::keyring::{self, KeySource};
use crate::keys;
use crate::model::{RotationReport, RotationTarget, Scope};
use crate::records::{self, DekRecord, SecretRecord, scope_key};
use crate::store::{SecretStore, read_lock, write_lock};

impl SecretStore {
    /// Replaces the master key: appends a version to the key file, rewraps
    /// every DEK under it, then drops the old versions from the file.
    pub fn rotate_kek(&self) -> Result<RotationReport, StoreError> {
        let inner = &self.inner;
        let _serial = inner
            .rotation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_unsealed()?;
        let path = match &inner.source {
            KeySource::File(p) => p.clone(),
            KeySource::Inline(_) => {
                return Err(StoreError::Unsupported(
                    "KEK rotation needs a key file; inline key text cannot be rewritten",
                ));
            }
            KeySource::None => return Err(StoreError::Unsupported("no master key configured")),
        };

        // 1. The new version goes into the key file before anything uses it.
        let mut ring = read_lock(&inner.keys).clone();
        let (previous, _) = ring
            .current()
            .ok_or_else(|| StoreError::corrupt("no master key loaded"))?;
        let retired: Vec<u64> = ring.keys.keys().copied().collect();
        let new_version = previous + 1;
        ring.insert(new_version, crypto::random_key());
        keyring::write_atomic(&path, &ring)?;
        let new_kek = ring.get(new_version).expect("just inserted").cipher.clone();
        keys::write_check(&inner.trees.meta, new_version, &new_kek)?;
        inner.db.flush()?;

        // 2. Switch: new DEKs are wrapped under the new version from now on.
        *write_lock(&inner.keys) = ring;

        // 3. Rewrap every DEK, record by record.
        let mut rewritten = 0;
        for item in inner.trees.deks.iter() {
            let (key, _) = item?;
            let (sk, suffix) = records::split_key(&key)
                .ok_or_else(|| StoreError::corrupt("DEK record with a malformed key"))?;
            let dek_version = records::u64_value(suffix, "DEK version")?;
            loop {
                let Some(old) = inner.trees.deks.get(&key)? else {
                    break; // retired by nobody else (rotations are serial); skip
                };
                let rec: DekRecord<'_> = records::decode(&old, "wrapped DEK")?;
                if rec.kek_version == new_version {
                    break;
                }
                let dek = keys::unwrap_dek(&read_lock(&inner.keys), sk, dek_version, &rec)?;
                let new = keys::wrap_dek(&new_kek, new_version, sk, dek_version, &dek);
                if inner
                    .trees
                    .deks
                    .compare_and_swap(&key, Some(&old), Some(new))?
                    .is_ok()
                {
                    rewritten += 1;
                    break;
                }
            }
        }
        inner.db.flush()?;

        // 4. Retire the old versions: file first, then memory and sled.
        let mut ring = read_lock(&inner.keys).clone();
        ring.keys.retain(|v, _| *v == new_version);
        keyring::write_atomic(&path, &ring)?;
        *write_lock(&inner.keys) = ring;
        for v in &retired {
            inner.trees.meta.remove(records::kek_check_key(*v))?;
        }
        inner.db.flush()?;
        inner.dek_cache.clear();
        inner.sealed_cache.invalidate();

        Ok(RotationReport {
            target: RotationTarget::Kek,
            previous_version: Some(previous),
            new_version,
            records_rewritten: rewritten,
            retired_versions: retired,
        })
    }

    /// Replaces a scope's DEK: re-encrypts each of its values under a new
    /// DEK version, then deletes the old DEK versions.
    pub fn rotate_dek(&self, scope: &Scope) -> Result<RotationReport, StoreError> {
        let inner = &self.inner;
        let _serial = inner
            .rotation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.require_scope(scope)?;
        self.check_unsealed()?;
        let sk = scope_key(scope);
        let prefix = records::scope_prefix(&sk);

        // 1. Pick the new DEK version, create the DEK and switch to it, all
        //    under the exclusive keyring lock. Writers hold that lock shared
        //    for a whole write, including `current_dek`, which creates a
        //    scope's DEK v1 on first use; so while we hold it no DEK of this
        //    scope can appear, and any write that picked an older DEK has
        //    finished. Scanning outside the lock would let a first write
        //    create DEK v1 after the scan, and we would then pick v1 again
        //    and overwrite the key its value is sealed under (and that the
        //    DEK cache still holds under the same version).
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::BeforeDekSwitch);
        let (previous, new_version, old_versions, new_dek) = {
            let ring = write_lock(&inner.keys);
            let mut old_versions = Vec::new();
            for item in inner.trees.deks.scan_prefix(&prefix) {
                let (k, _) = item?;
                old_versions.push(records::u64_value(&k[prefix.len()..], "DEK version")?);
            }
            let previous = match inner.trees.dek_current.get(&sk)? {
                Some(v) => Some(records::u64_value(&v, "current DEK pointer")?),
                None => None,
            };
            // Versions only grow: the current DEK is never deleted, so the
            // highest existing version is the highest ever used.
            let new_version = old_versions
                .iter()
                .copied()
                .chain(previous)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("DEK version overflow"))?;
            let (kek_version, kek) = ring
                .current()
                .ok_or_else(|| StoreError::corrupt("no master key loaded"))?;
            let dek = crypto::random_key();
            let rec = keys::wrap_dek(&kek.cipher, kek_version, &sk, new_version, &dek);
            // A DEK version is never written twice: values sealed under a
            // version must always find the same key under it.
            if inner
                .trees
                .deks
                .compare_and_swap(records::dek_key(&sk, new_version), None::<&[u8]>, Some(rec))?
                .is_err()
            {
                return Err(StoreError::corrupt(format!(
                    "DEK v{new_version} of {scope} already exists"
                )));
            }
            inner
                .trees
                .dek_current
                .insert(&sk, &new_version.to_be_bytes())?;
            (
                previous,
                new_version,
                old_versions,
                crypto::Cipher::new(&dek),
            )
        };
        inner.db.flush()?;

        // 2. Re-encrypt every value still under an older DEK.
        let mut rewritten = 0;
        for item in inner.trees.secrets.scan_prefix(&prefix) {
            let (key, _) = item?;
            let name = std::str::from_utf8(&key[prefix.len()..])
                .map_err(|_| StoreError::corrupt("secret name is not UTF-8"))?;
            loop {
                let Some(old) = inner.trees.secrets.get(&key)? else {
                    break; // deleted meanwhile
                };
                let rec: SecretRecord<'_> = records::decode(&old, "secret record")?;
                if rec.dek_version == new_version {
                    break;
                }
                let old_dek = inner.dek(None, &sk, rec.dek_version)?.ok_or_else(|| {
                    StoreError::corrupt(format!(
                        "secret {} in {scope} refers to missing DEK v{}",
                        Preview(name),
                        rec.dek_version
                    ))
                })?;
                let ad = records::value_ad(&sk, name, rec.version, rec.dek_version);
                let plain = old_dek.open(&rec.nonce, &ad, rec.sealed).map_err(|_| {
                    StoreError::integrity(format!(
                        "secret {} in {scope} does not authenticate",
                        Preview(name)
                    ))
                })?;
                let nonce = crypto::random_nonce();
                let ad = records::value_ad(&sk, name, rec.version, new_version);
                let sealed = new_dek.seal(&nonce, &ad, &plain);
                let new = records::encode(&SecretRecord {
                    dek_version: new_version,
                    nonce,
                    sealed: &sealed,
                    ..rec.clone()
                });
                if inner
                    .trees
                    .secrets
                    .compare_and_swap(&key, Some(&old), Some(new))?
                    .is_ok()
                {
                    inner.sealed_cache.invalidate();
                    rewritten += 1;
                    break;
                }
            }
        }
        inner.db.flush()?;

        // 3. Nothing refers to the old DEKs any more: delete them.
        for v in &old_versions {
            let k = records::dek_key(&sk, *v);
            inner.trees.deks.remove(&k)?;
            inner.dek_cache.remove(&k);
            inner.sealed_cache.invalidate();
        }
        inner.db.flush()?;

        Ok(RotationReport {
            target: RotationTarget::Dek(scope.clone()),
            previous_version: previous,
            new_version,
            records_rewritten: rewritten,
            retired_versions: old_versions,
        })
    }
}
