//! Sealing: deciding at open whether the master key opens this store.
//!
//! Each KEK version the store has used leaves a check record: a fixed
//! marker sealed under that KEK with AD naming the version. At open, a
//! provided key that fails its check record means "wrong key": the store
//! opens *sealed* (metadata works, values do not) and writes nothing. A
//! fresh store (no check record, no DEK) adopts the provided key. A keyring
//! version newer than every recorded one is adopted too (someone added it
//! to the key file by hand). A version that has a check record but is
//! newer than `kek-current` is *prepared* (`rotate_kek` switches to it):
//! opening with it does not switch.
//!
//! An unsealed store also has a `kek-current` pointer, the version new DEKs
//! are wrapped under; stores from release 0.1 get it here.

use std::collections::BTreeMap;

use keyhole_kv::{Bucket, Cas};

use crate::crypto::Cipher;
use crate::error::StoreError;
use crate::keyring::{KeyMaterial, KeySource, Keyring};
use crate::layout;
use crate::records::{self, CheckRecord, DekRecord, KEK_CHECK_MARKER};

/// The keyring to run with, or the reason the store is sealed.
pub(crate) fn unseal(
    bucket: &dyn Bucket,
    source: &KeySource,
    material: KeyMaterial,
) -> Result<(Keyring, Option<String>), StoreError> {
    let ring = match material {
        KeyMaterial::Missing(reason) => return Ok((Keyring::default(), Some(reason))),
        KeyMaterial::Ring(r) => r,
    };
    let not_open = format!(
        "master key at {} does not open this store",
        source.location()
    );

    let mut recorded = BTreeMap::new();
    for (k, e) in bucket.scan(layout::KEK_CHECK_PREFIX)? {
        let version = layout::version_suffix(&k)
            .ok_or_else(|| StoreError::corrupt("key check record with a malformed key"))?;
        recorded.insert(version, e.value);
    }
    let mut deks = bucket.scan(layout::DEK_PREFIX)?;
    if let Some(root) = bucket.get(layout::AUDIT_ROOT)? {
        deks.push((layout::AUDIT_ROOT.to_vec(), root));
    }

    if recorded.is_empty() {
        if !deks.is_empty() {
            return Ok((Keyring::default(), Some(not_open)));
        }
        for (version, kek) in &ring.keys {
            let _ = write_check(bucket, *version, &kek.cipher)?;
        }
        if let Some((newest, _)) = ring.current() {
            point_at(bucket, newest)?;
        }
        bucket.flush()?;
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
    for (_, e) in &deks {
        let rec: DekRecord<'_> = records::decode(&e.value, "wrapped DEK")?;
        if usable.get(rec.kek_version).is_none() {
            let reason = format!("{not_open} (keyring lacks v{})", rec.kek_version);
            return Ok((Keyring::default(), Some(reason)));
        }
    }
    for version in &adopt {
        let kek = usable.get(*version).expect("adopted version is usable");
        let _ = write_check(bucket, *version, &kek.cipher)?;
    }
    // A recorded version above `kek-current` is prepared for a rotation
    // across hosts (`rotate_kek` switches to it once every host holds it):
    // opening with it must not switch early.
    match adopt.last() {
        Some(newest) => point_at(bucket, *newest)?,
        None => {
            if bucket.get(layout::KEK_CURRENT)?.is_none() {
                point_at(bucket, max_recorded)?;
            }
        }
    }
    bucket.flush()?;
    Ok((usable, None))
}

/// Writes the check record of KEK `version`.
pub(crate) fn write_check(
    bucket: &dyn Bucket,
    version: u64,
    kek: &Cipher,
) -> Result<Cas, StoreError> {
    let nonce = crate::crypto::random_nonce();
    let sealed = kek.seal(&nonce, &records::check_ad(version), KEK_CHECK_MARKER);
    let rec = CheckRecord {
        nonce,
        sealed: &sealed,
    };
    Ok(bucket.create(&layout::kek_check(version), &records::encode(&rec))?)
}

/// Moves `kek-current` forward to `version`, creating it if the store has
/// none yet. Never moves it back.
fn point_at(bucket: &dyn Bucket, version: u64) -> Result<(), StoreError> {
    loop {
        let cas = match bucket.get(layout::KEK_CURRENT)? {
            Some(e) if records::u64_value(&e.value, "current KEK pointer")? >= version => {
                return Ok(());
            }
            Some(e) => bucket.update(layout::KEK_CURRENT, &version.to_be_bytes(), e.revision)?,
            None => bucket.create(layout::KEK_CURRENT, &version.to_be_bytes())?,
        };
        if cas.written().is_some() {
            return Ok(());
        }
    }
}
