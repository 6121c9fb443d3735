//! Rotating one scope's data key: switch the pointer to a new DEK,
//! re-encrypt every value under an older one, then delete the older DEKs
//! that nothing refers to.

use std::collections::HashSet;

use keyhole_kv::Cas;

use super::{SWEEP_PASSES, SWITCH_ATTEMPTS, delete_current};
use crate::crypto;
use crate::error::{Preview, StoreError};
use crate::keys::{Wrapped, wrap_dek};
use crate::layout;
use crate::model::{RotationReport, RotationTarget, Scope};
use crate::open::SecretStore;
use crate::records::{self, Current, Slot};
use crate::scopes::utf8;
use crate::writes::{At, RecordMeta, open_record};

impl SecretStore {
    /// Replaces a scope's DEK: re-encrypts each of its values under a new
    /// DEK version, then deletes the old DEK versions.
    pub fn rotate_dek(&self, scope: &Scope) -> Result<RotationReport, StoreError> {
        self.require_scope(scope)?;
        self.check_unsealed()?;
        #[cfg(test)]
        crate::test_hooks::hit(crate::test_hooks::Point::BeforeDekSwitch);
        let (previous, new_version) = self.switch_dek(scope)?;
        self.flush()?;
        let rewritten = self.reencrypt_scope(scope, new_version)?;
        self.flush()?;
        let retired = self.retire_deks(scope, new_version)?;
        self.flush()?;
        Ok(RotationReport {
            target: RotationTarget::Dek(scope.clone()),
            previous_version: previous,
            new_version,
            records_rewritten: rewritten,
            retired_versions: retired,
            key_file: None,
            prepared_only: false,
        })
    }

    /// Creates DEK `max + 1` (a version is never written twice: values
    /// sealed under a version must always find the same key under it) and
    /// moves `dek-current` to it with compare-and-set. Returns the previous
    /// and the new version.
    fn switch_dek(&self, scope: &Scope) -> Result<(Option<u64>, u64), StoreError> {
        let keys = &self.inner.keys;
        let bucket = &*self.inner.bucket;
        let sk = records::scope_key(scope);
        let pointer_key = layout::dek_current(scope);
        for _ in 0..SWITCH_ATTEMPTS {
            let pointer = keys.dek_pointer(scope)?;
            // Versions only grow, and the current DEK is never deleted, so
            // the highest existing version is the highest ever used.
            let new_version = keys
                .dek_versions(scope)?
                .into_iter()
                .chain(pointer.map(|(v, _)| v))
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("DEK version overflow"))?;
            let (kek_version, ring, _) = keys.current_kek()?;
            let kek = &ring.get(kek_version).expect("current_kek holds it").cipher;
            let dek = crypto::random_key();
            let rec = wrap_dek(kek, kek_version, &sk, new_version, &dek);
            let dek_key = layout::dek(scope, new_version);
            let Cas::Written(rev) = bucket.create(&dek_key, &rec)? else {
                continue; // another rotation took this version
            };
            let rev = keys.kek_fence(&Wrapped::dek(scope, new_version), &dek, kek_version, rev)?;
            // A deletion that marked the scope after our check may have
            // swept its DEKs already: take ours back.
            crate::deletion::live_fence(bucket, scope, &dek_key, rev)?;
            #[cfg(test)]
            crate::test_hooks::hit(crate::test_hooks::Point::BeforeDekPointerMove);
            let switched = match pointer {
                Some((_, rev)) => bucket.update(&pointer_key, &new_version.to_be_bytes(), rev)?,
                None => bucket.create(&pointer_key, &new_version.to_be_bytes())?,
            };
            if switched.written().is_some() {
                return Ok((pointer.map(|(v, _)| v), new_version));
            }
            // Someone moved the pointer first: another rotation, or a
            // scope's first write, which points `dek-current` at a v1 it
            // finds already created (ours). So ours may have been current
            // and may have values sealed under it: it stays, and a later
            // rotation's retirement deletes it once nothing refers to it.
            // Start over from the pointer as it is now.
        }
        Err(StoreError::Contended(format!("the data key of {scope}")))
    }

    /// Re-encrypts every value of `scope` still under a DEK older than
    /// `new_version`, pass after pass until one finds none (a writer that
    /// read the old pointer may write after a pass went by; its own fence
    /// re-seals it too). Returns how many values were re-encrypted.
    fn reencrypt_scope(&self, scope: &Scope, new_version: u64) -> Result<usize, StoreError> {
        let mut rewritten = 0;
        for _ in 0..SWEEP_PASSES {
            let mut behind = 0;
            for Sealed {
                slot,
                prefix,
                key,
                entry,
            } in sealed_records(&*self.inner.bucket, scope)?
            {
                let Current::Live(rec) = records::decode_current(&entry.value)? else {
                    continue; // a tombstone: nothing sealed
                };
                if rec.dek_version >= new_version {
                    continue;
                }
                behind += 1;
                let name = record_name(slot, &key, &prefix)?;
                let Some(old_dek) = self.inner.keys.dek(scope, rec.dek_version)? else {
                    // Retired under us by another rotation, which does so
                    // only once nothing refers to it: the record has moved
                    // on, or is about to (a writer's fence). Next pass.
                    self.expect_moved(&key, entry.revision, scope, &name, rec.dek_version)?;
                    continue;
                };
                let plain = open_record(slot, &old_dek, scope, &name, &rec)?;
                let meta = RecordMeta::of(&rec);
                let at = At {
                    scope,
                    key: &key,
                    name: &name,
                    slot,
                };
                let cas = self.reseal(&at, &plain, &meta, entry.revision)?;
                rewritten += usize::from(cas.written().is_some());
            }
            if behind == 0 {
                return Ok(rewritten);
            }
        }
        Err(StoreError::Contended(format!("the values of {scope}")))
    }

    /// Waits briefly for a record whose DEK is gone to change; errors if it
    /// does not (it really refers to a DEK that no longer exists).
    fn expect_moved(
        &self,
        key: &[u8],
        revision: keyhole_kv::Revision,
        scope: &Scope,
        name: &str,
        dek_version: u64,
    ) -> Result<(), StoreError> {
        for wait_ms in [0, 1, 2, 4, 8, 16, 32, 64] {
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            if self
                .inner
                .bucket
                .get(key)?
                .is_none_or(|e| e.revision != revision)
            {
                return Ok(());
            }
        }
        Err(StoreError::corrupt(format!(
            "secret {} in {scope} refers to missing DEK v{dek_version}",
            Preview(name)
        )))
    }

    /// Deletes the DEKs of `scope` older than `new_version` that no record
    /// refers to, if `new_version` is still current (otherwise a newer
    /// rotation has taken over, and retires them itself). Returns the
    /// versions deleted.
    fn retire_deks(&self, scope: &Scope, new_version: u64) -> Result<Vec<u64>, StoreError> {
        let keys = &self.inner.keys;
        if keys.dek_pointer(scope)?.map(|(v, _)| v) != Some(new_version) {
            return Ok(Vec::new());
        }
        let mut referenced = HashSet::new();
        for record in sealed_records(&*self.inner.bucket, scope)? {
            if let Current::Live(rec) = records::decode_current(&record.entry.value)? {
                referenced.insert(rec.dek_version);
            }
        }
        let mut retired = Vec::new();
        for version in keys.dek_versions(scope)? {
            if version >= new_version || referenced.contains(&version) {
                continue;
            }
            let dek_key = layout::dek(scope, version);
            delete_current(&*self.inner.bucket, &dek_key)?;
            keys.deks.remove(&dek_key);
            retired.push(version);
        }
        Ok(retired)
    }
}

/// A record that may hold a sealed value, with its slot and the prefix it
/// was found under.
struct Sealed {
    slot: Slot,
    prefix: std::rc::Rc<[u8]>,
    key: Vec<u8>,
    entry: keyhole_kv::Entry,
}

/// Every record of `scope` that may hold a sealed value: current ones, then
/// kept older versions.
fn sealed_records(
    bucket: &dyn keyhole_kv::Bucket,
    scope: &Scope,
) -> Result<Vec<Sealed>, StoreError> {
    let mut out = Vec::new();
    for (slot, prefix) in [
        (Slot::Current, layout::secrets_of(scope)),
        (Slot::History, layout::versions_of(scope)),
    ] {
        let shared: std::rc::Rc<[u8]> = prefix.as_slice().into();
        for (key, entry) in bucket.scan(&prefix)? {
            out.push(Sealed {
                slot,
                prefix: shared.clone(),
                key,
                entry,
            });
        }
    }
    Ok(out)
}

/// The secret name in a record key found under `prefix`.
fn record_name(slot: Slot, key: &[u8], prefix: &[u8]) -> Result<String, StoreError> {
    let raw = match slot {
        Slot::Current => &key[prefix.len()..],
        Slot::History => layout::kept_name(key, prefix)
            .ok_or_else(|| StoreError::corrupt("a kept version with a malformed key"))?,
    };
    utf8(raw, "secret name")
}
