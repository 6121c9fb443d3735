//! Key management, with one owner: [`KeyManager`] holds the master keyring
//! (KEK versions), the cache of unwrapped data keys (DEKs), and knows where
//! wrapped DEKs and the current-key pointers live in the bucket. The rest
//! of the store asks it for ciphers and never touches key records itself.
//!
//! - `unseal.rs`: whether the KEK opens the store, at open.
//! - `deks.rs`: DEKs: the cache, wrapping, the current-DEK pointer.
//! - here: the keyring and the current-KEK pointer.
//!
//! **Coordination without locks.** Several stores (hosts) may share one
//! backend, so nothing here relies on an in-process lock to order writers
//! against rotations. Each scope has a `dek-current` pointer and the store
//! a `kek-current` pointer; a rotation moves a pointer with compare-and-set,
//! re-encrypts (or rewraps) everything under the old key, and deletes the
//! old key only once a scan finds nothing that refers to it. A writer reads
//! the pointer, writes, and then reads the pointer again (its *fence*): if
//! a rotation moved it meanwhile, the writer re-seals its own record under
//! the new key, since the rotation's sweep may have passed that record
//! already. See `docs/architecture.md` ("Key rotation") for the argument
//! and the one residual case.
//!
//! **Keyring reloads.** Another store sharing the key file may rotate the
//! KEK: a record wrapped under a version this process does not hold makes
//! it re-read its key source once before giving up.

mod deks;
mod unseal;

use std::sync::{Arc, RwLock};

use keyhole_kv::{Bucket, Cas, Revision};

pub(crate) use deks::{CurrentDek, DekCache, unwrap_dek, wrap_dek};
pub(crate) use unseal::{unseal, write_check};

use crate::crypto::KEY_LEN;
use crate::error::StoreError;
use crate::keyring::{self, KeyMaterial, KeySource, Keyring};
use crate::layout;
use crate::locks::{read_lock, write_lock};
use crate::model::Scope;
use crate::records;

/// How many times a writer re-seals after a rotation moved a key under it
/// before it reports contention (each round means another rotation).
pub(crate) const FENCE_ROUNDS: usize = 16;

pub(crate) struct KeyManager {
    bucket: Arc<dyn Bucket>,
    source: KeySource,
    /// The KEK versions this process holds; replaced whole on reload.
    ring: RwLock<Arc<Keyring>>,
    pub(crate) deks: DekCache,
}

impl KeyManager {
    pub(crate) fn new(bucket: Arc<dyn Bucket>, source: KeySource, ring: Keyring) -> Self {
        KeyManager {
            bucket,
            source,
            ring: RwLock::new(Arc::new(ring)),
            deks: DekCache::default(),
        }
    }

    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    pub(crate) fn bucket(&self) -> &dyn Bucket {
        &*self.bucket
    }

    /// The keyring as this process holds it.
    pub(crate) fn ring(&self) -> Arc<Keyring> {
        read_lock(&self.ring).clone()
    }

    /// Replaces the keyring (after a rotation rewrote the key file).
    pub(crate) fn set_ring(&self, ring: Keyring) {
        *write_lock(&self.ring) = Arc::new(ring);
    }

    /// A keyring holding KEK `version`, re-reading the key source once if
    /// this process does not hold it (another store rotated the KEK, or an
    /// operator copied in a key file with a prepared version).
    pub(crate) fn ring_with(&self, version: u64) -> Result<Arc<Keyring>, StoreError> {
        self.ring_holding(version)?.ok_or_else(|| {
            StoreError::corrupt(format!(
                "a data key is wrapped under master key v{version}, which {} does not hold",
                self.source.location()
            ))
        })
    }

    /// Whether this process holds KEK `version` (re-reading the key
    /// source once if not). Errors only when the source cannot be read.
    pub(crate) fn holds(&self, version: u64) -> Result<bool, StoreError> {
        Ok(self.ring_holding(version)?.is_some())
    }

    fn ring_holding(&self, version: u64) -> Result<Option<Arc<Keyring>>, StoreError> {
        let ring = self.ring();
        if ring.get(version).is_some() {
            return Ok(Some(ring));
        }
        if let KeyMaterial::Ring(fresh) = keyring::load(&self.source)? {
            let mut merged = (*ring).clone();
            merged.keys.extend(fresh.keys);
            self.set_ring(merged);
        }
        let ring = self.ring();
        Ok(ring.get(version).is_some().then_some(ring))
    }

    /// The KEK version new DEKs are wrapped under, read from the backend,
    /// with a keyring holding it.
    pub(crate) fn current_kek(&self) -> Result<(u64, Arc<Keyring>, Revision), StoreError> {
        let entry = self
            .bucket
            .get(layout::KEK_CURRENT)?
            .ok_or_else(|| StoreError::corrupt("no current master key recorded"))?;
        let version = records::u64_value(&entry.value, "current KEK pointer")?;
        Ok((version, self.ring_with(version)?, entry.revision))
    }

    /// The fence after writing a wrapped key (`wrapped`: where it is stored,
    /// and the AD scope and version it is wrapped with) under KEK `used` at
    /// revision `rev`: while `kek-current` names another KEK, rewrap it under
    /// that one. A conflict means a KEK rotation rewrapped it or a DEK
    /// rotation retired it, and either is as good. Returns the revision the
    /// key was last written at by this fence (or `rev`).
    pub(crate) fn kek_fence(
        &self,
        wrapped: &Wrapped,
        dek: &[u8; KEY_LEN],
        mut used: u64,
        mut rev: Revision,
    ) -> Result<Revision, StoreError> {
        let Wrapped {
            key,
            ad_scope: sk,
            version,
        } = wrapped;
        let version = *version;
        for _ in 0..FENCE_ROUNDS {
            let (current, ring, _) = self.current_kek()?;
            if current == used {
                return Ok(rev);
            }
            let kek = &ring.get(current).expect("ring_with holds it").cipher;
            let rec = wrap_dek(kek, current, sk, version, dek);
            match self.bucket.update(key, &rec, rev)? {
                Cas::Written(r) => (used, rev) = (current, r),
                Cas::Conflict => return Ok(rev),
            }
        }
        Err(StoreError::Contended("the current master key".into()))
    }

    /// The audit log's root key (32 random bytes, created on first use and
    /// kept wrapped under the KEK like a DEK), from which the audit log
    /// derives the key that authenticates its chain. Rotating the KEK
    /// rewraps it; nothing else ever changes it.
    pub(crate) fn audit_root(&self) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>, StoreError> {
        let wrapped = Wrapped::audit_root();
        for _ in 0..FENCE_ROUNDS {
            if let Some(entry) = self.bucket.get(&wrapped.key)? {
                let rec: records::DekRecord<'_> =
                    records::decode(&entry.value, "wrapped audit key")?;
                let ring = self.ring_with(rec.kek_version)?;
                return unwrap_dek(&ring, &wrapped.ad_scope, wrapped.version, &rec);
            }
            let (kek_version, ring, _) = self.current_kek()?;
            let kek = &ring.get(kek_version).expect("current_kek holds it").cipher;
            let root = crate::crypto::random_key();
            let rec = wrap_dek(kek, kek_version, &wrapped.ad_scope, wrapped.version, &root);
            if let Cas::Written(rev) = self.bucket.create(&wrapped.key, &rec)? {
                self.kek_fence(&wrapped, &root, kek_version, rev)?;
                return Ok(root);
            }
        }
        Err(StoreError::Contended("the audit key".into()))
    }
}

/// A key stored wrapped under the KEK: where, and the AD it is wrapped
/// with. DEKs, and the audit log's root key.
pub(crate) struct Wrapped {
    pub key: Vec<u8>,
    pub ad_scope: Vec<u8>,
    pub version: u64,
}

impl Wrapped {
    pub(crate) fn dek(scope: &Scope, version: u64) -> Self {
        Wrapped {
            key: layout::dek(scope, version),
            ad_scope: records::scope_key(scope),
            version,
        }
    }

    /// The audit root key: AD scope `audit` (no scope key looks like it).
    pub(crate) fn audit_root() -> Self {
        Wrapped {
            key: layout::AUDIT_ROOT.to_vec(),
            ad_scope: b"audit".to_vec(),
            version: 1,
        }
    }

    /// The wrapped key stored under `key`, if `key` is one.
    pub(crate) fn at(key: &[u8]) -> Option<Self> {
        if key == layout::AUDIT_ROOT {
            return Some(Self::audit_root());
        }
        Some(Self::dek(
            &layout::dek_scope(key)?,
            layout::version_suffix(key)?,
        ))
    }
}
