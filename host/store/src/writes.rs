//! Writing secrets: set (a new version) and delete, and the sealed write
//! with its fence that rotation's re-encryption shares.
//!
//! Durability: every acknowledged write flushes the backend before it
//! returns, so a write the caller saw succeed survives a crash.
//!
//! Topic bindings (`topic_binding.rs`) are written with the value and
//! sealed into its AD. A write that does not say otherwise keeps the
//! binding the secret had: replacing a value (a routine rotation, a script
//! that knows nothing of topics) never widens who may read it.
//!
//! Concurrency: versions are bumped with compare-and-set on the record's
//! revision, so concurrent writers (in this process or another host) never
//! lose an acknowledged write. A record is sealed under the scope's current
//! DEK, and after the write the pointer is read again (the fence, see
//! `keys/mod.rs`): if a DEK rotation moved it meanwhile, the record is
//! sealed again under the new DEK, keeping its version. Before that, the
//! scope record is read again too (`deletion::live_fence`): a write that
//! lands in a scope a deletion has marked meanwhile is taken back.

use keyhole_kv::{Cas, Revision};

use crate::crypto;
use crate::error::StoreError;
use crate::keys::{CurrentDek, FENCE_ROUNDS};
use crate::layout;
use crate::model::{Scope, SecretMeta, SecretValue, now_ms};
use crate::open::SecretStore;
use crate::records::{self, SecretRecord};
use crate::topic_binding;
use crate::validate::{validate_name, validate_value};

/// What a secret record keeps besides its sealed value.
#[derive(Clone)]
pub(crate) struct RecordMeta {
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Normalized (`topic_binding::normalize`); empty: every topic.
    pub topics: Vec<String>,
}

impl RecordMeta {
    pub(crate) fn of(rec: &SecretRecord<'_>) -> Self {
        RecordMeta {
            version: rec.version,
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
            topics: rec.topics.clone(),
        }
    }
}

/// The encoded record of `plain` sealed under `dek`.
fn seal_record(
    dek: &CurrentDek,
    scope: &Scope,
    name: &str,
    plain: &[u8],
    meta: &RecordMeta,
) -> Vec<u8> {
    let nonce = crypto::random_nonce();
    let ad = records::value_ad(
        &records::scope_key(scope),
        name,
        meta.version,
        dek.version,
        &meta.topics,
    );
    let sealed = dek.cipher.seal(&nonce, &ad, plain);
    records::encode_secret(&SecretRecord {
        version: meta.version,
        created_at_ms: meta.created_at_ms,
        updated_at_ms: meta.updated_at_ms,
        dek_version: dek.version,
        nonce,
        sealed: &sealed,
        topics: meta.topics.clone(),
    })
}

impl SecretStore {
    /// Creates or replaces a secret; its version grows by one. A secret
    /// bound to topics stays bound to them (see
    /// [`SecretStore::set_secret_with_topics`]).
    pub fn set_secret(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretMeta, StoreError> {
        self.set_secret_with_topics(scope, name, value, None)
    }

    /// Creates or replaces a secret, and says which event topics listeners
    /// may read it during: `None` keeps the binding the secret had (none
    /// for a new secret); `Some` replaces it with these topic globs, where
    /// an empty list, or one holding `*`, means every topic. Its version
    /// grows by one.
    pub fn set_secret_with_topics(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
        topics: Option<&[String]>,
    ) -> Result<SecretMeta, StoreError> {
        validate_name(name)?;
        validate_value(value.expose())?;
        let topics = topics.map(topic_binding::normalize).transpose()?;
        self.require_scope(scope)?;
        self.check_unsealed()?;
        let bucket = &*self.inner.bucket;
        let key = layout::secret(scope, name);
        let plain = value.expose().as_bytes();
        let meta = loop {
            let dek = self.inner.keys.current_dek(scope)?;
            let old = bucket.get(&key)?;
            let now = now_ms();
            let meta = match &old {
                Some(e) => {
                    let r = records::decode_secret(&e.value)?;
                    RecordMeta {
                        version: r.version + 1,
                        created_at_ms: r.created_at_ms,
                        updated_at_ms: now,
                        topics: topics.clone().unwrap_or(r.topics),
                    }
                }
                None => RecordMeta {
                    version: 1,
                    created_at_ms: now,
                    updated_at_ms: now,
                    topics: topics.clone().unwrap_or_default(),
                },
            };
            let rec = seal_record(&dek, scope, name, plain, &meta);
            #[cfg(test)]
            crate::test_hooks::hit(crate::test_hooks::Point::BeforeSecretWrite);
            let cas = match &old {
                Some(e) => bucket.update(&key, &rec, e.revision)?,
                None => bucket.create(&key, &rec)?,
            };
            if let Cas::Written(rev) = cas {
                // First the scope (a deletion may have marked it since the
                // check above: take the write back), then the DEK.
                crate::deletion::live_fence(bucket, scope, &key, rev)?;
                self.fence(scope, &key, name, plain, &meta, dek.version, rev)?;
                break meta;
            }
        };
        self.flush()?;
        Ok(SecretMeta {
            scope: scope.clone(),
            name: name.to_owned(),
            version: meta.version,
            created_at_ms: meta.created_at_ms,
            updated_at_ms: meta.updated_at_ms,
            topics: meta.topics,
        })
    }

    /// Deletes a secret; `false` if it did not exist. Works while sealed.
    pub fn delete_secret(&self, scope: &Scope, name: &str) -> Result<bool, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let bucket = &*self.inner.bucket;
        let key = layout::secret(scope, name);
        let existed = loop {
            let Some(entry) = bucket.get(&key)? else {
                break false;
            };
            if bucket.delete(&key, entry.revision)?.written().is_some() {
                break true;
            }
        };
        self.flush()?;
        Ok(existed)
    }

    /// Seals `plain` under the scope's current DEK over the record at
    /// revision `expected`, keeping `meta` (rotation's re-encryption). A
    /// conflict means someone wrote the record since; their write stands.
    pub(crate) fn reseal(
        &self,
        scope: &Scope,
        key: &[u8],
        name: &str,
        plain: &[u8],
        meta: &RecordMeta,
        expected: Revision,
    ) -> Result<Cas, StoreError> {
        let dek = self.inner.keys.current_dek(scope)?;
        let rec = seal_record(&dek, scope, name, plain, meta);
        let cas = self.inner.bucket.update(key, &rec, expected)?;
        if let Cas::Written(rev) = cas {
            self.fence(scope, key, name, plain, meta, dek.version, rev)?;
        }
        Ok(cas)
    }

    /// The fence after a write sealed under DEK `used` at revision `rev`:
    /// while the scope's current DEK is another one, seal the record again
    /// under it. A conflict means a later write (which fences itself) or a
    /// rotation's re-encryption replaced ours, and either is as good.
    #[allow(clippy::too_many_arguments)]
    fn fence(
        &self,
        scope: &Scope,
        key: &[u8],
        name: &str,
        plain: &[u8],
        meta: &RecordMeta,
        mut used: u64,
        mut rev: Revision,
    ) -> Result<(), StoreError> {
        for _ in 0..FENCE_ROUNDS {
            let dek = self.inner.keys.current_dek(scope)?;
            if dek.version == used {
                return Ok(());
            }
            let rec = seal_record(&dek, scope, name, plain, meta);
            match self.inner.bucket.update(key, &rec, rev)? {
                Cas::Written(r) => (used, rev) = (dek.version, r),
                Cas::Conflict => return Ok(()),
            }
        }
        Err(StoreError::Contended(format!("the data key of {scope}")))
    }
}
