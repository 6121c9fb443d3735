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
use crate::records::{self, Current, SecretRecord, Slot, Tombstone};
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
    /// What a caller is told about the record written with this.
    pub(crate) fn into_secret_meta(self, scope: &Scope, name: &str) -> SecretMeta {
        SecretMeta {
            scope: scope.clone(),
            name: name.to_owned(),
            version: self.version,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            topics: self.topics,
        }
    }

    pub(crate) fn of(rec: &SecretRecord<'_>) -> Self {
        RecordMeta {
            version: rec.version,
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
            topics: rec.topics.clone(),
        }
    }
}

/// The encoded record of `plain` sealed under `dek`, for `slot`.
pub(crate) fn seal_record(
    slot: Slot,
    dek: &CurrentDek,
    scope: &Scope,
    name: &str,
    plain: &[u8],
    meta: &RecordMeta,
) -> Vec<u8> {
    let nonce = crypto::random_nonce();
    let ad = records::slot_ad(
        slot,
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

/// The plaintext of `rec`, a value in `slot`, opened with `dek` (the DEK its
/// `dek_version` names): [`seal_record`]'s inverse. A record that does not
/// authenticate is an integrity error.
pub(crate) fn open_record(
    slot: Slot,
    dek: &crypto::Cipher,
    scope: &Scope,
    name: &str,
    rec: &SecretRecord<'_>,
) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
    let ad = records::slot_ad(
        slot,
        &records::scope_key(scope),
        name,
        rec.version,
        rec.dek_version,
        &rec.topics,
    );
    dek.open(&rec.nonce, &ad, rec.sealed).map_err(|_| {
        let which = match slot {
            Slot::Current => String::new(),
            Slot::History => format!("version {} of ", rec.version),
        };
        StoreError::integrity(format!(
            "{which}secret {} in {scope} does not authenticate",
            crate::error::Preview(name)
        ))
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
        self.write_secret(scope, name, value, topics, None)
    }

    /// Creates or replaces a secret, as [`SecretStore::set_secret_with_topics`],
    /// if its current version is `expect` (`Some(0)`: it must not exist
    /// yet; a deleted secret's version is its tombstone's). Otherwise
    /// [`StoreError::VersionMismatch`] and nothing is written. The version
    /// it replaces is kept in its history (`history.rs`).
    pub fn write_secret(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
        topics: Option<&[String]>,
        expect: Option<u64>,
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
            let current = old
                .as_ref()
                .map(|e| records::decode_current(&e.value))
                .transpose()?;
            let found = current.as_ref().map_or(0, Current::version);
            if expect.is_some_and(|want| want != found) {
                return Err(StoreError::VersionMismatch {
                    scope: scope.clone(),
                    name: name.to_owned(),
                    expected: expect.unwrap_or_default(),
                    found,
                });
            }
            let now = now_ms();
            let meta = match &current {
                Some(Current::Live(r)) => RecordMeta {
                    version: r.version + 1,
                    created_at_ms: r.created_at_ms,
                    updated_at_ms: now,
                    topics: topics.clone().unwrap_or_else(|| r.topics.clone()),
                },
                Some(Current::Deleted(t)) => RecordMeta {
                    version: t.version + 1,
                    created_at_ms: now,
                    updated_at_ms: now,
                    topics: topics.clone().unwrap_or_else(|| t.topics.clone()),
                },
                None => RecordMeta {
                    version: 1,
                    created_at_ms: now,
                    updated_at_ms: now,
                    topics: topics.clone().unwrap_or_default(),
                },
            };
            // The version being replaced goes to the history first, so a
            // crash in between leaves it in both places, never in neither.
            if let Some(Current::Live(r)) = &current
                && !self.keep_version(scope, name, r)?
            {
                continue; // its DEK was retired under us: read it again
            }
            let rec = seal_record(Slot::Current, &dek, scope, name, plain, &meta);
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
                let at = At::current(scope, &key, name);
                self.fence(&at, plain, &meta, dek.version, rev)?;
                break meta;
            }
        };
        self.prune_history(scope, name, meta.version, false)?;
        self.flush()?;
        Ok(meta.into_secret_meta(scope, name))
    }

    /// Deletes a secret, softly: its record becomes a tombstone that keeps
    /// its version, and its last value is kept in its history, so
    /// [`SecretStore::undelete_secret`] brings it back. `false` if there
    /// was no live secret of that name. Works while sealed only for a
    /// secret with no value to keep.
    pub fn delete_secret(&self, scope: &Scope, name: &str) -> Result<bool, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let bucket = &*self.inner.bucket;
        let key = layout::secret(scope, name);
        let existed = loop {
            let Some(entry) = bucket.get(&key)? else {
                break false;
            };
            let Current::Live(r) = records::decode_current(&entry.value)? else {
                break false;
            };
            self.check_unsealed()?;
            if !self.keep_version(scope, name, &r)? {
                continue;
            }
            let tomb = records::encode_tombstone(&Tombstone {
                version: r.version,
                created_at_ms: r.created_at_ms,
                deleted_at_ms: now_ms(),
                topics: r.topics.clone(),
            });
            if bucket
                .update(&key, &tomb, entry.revision)?
                .written()
                .is_some()
            {
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
        at: &At<'_>,
        plain: &[u8],
        meta: &RecordMeta,
        expected: Revision,
    ) -> Result<Cas, StoreError> {
        let dek = self.inner.keys.current_dek(at.scope)?;
        let rec = seal_record(at.slot, &dek, at.scope, at.name, plain, meta);
        let cas = self.inner.bucket.update(at.key, &rec, expected)?;
        if let Cas::Written(rev) = cas {
            self.fence(at, plain, meta, dek.version, rev)?;
        }
        Ok(cas)
    }

    /// The fence after a write sealed under DEK `used` at revision `rev`:
    /// while the scope's current DEK is another one, seal the record again
    /// under it. A conflict means a later write (which fences itself) or a
    /// rotation's re-encryption replaced ours, and either is as good.
    pub(crate) fn fence(
        &self,
        at: &At<'_>,
        plain: &[u8],
        meta: &RecordMeta,
        mut used: u64,
        mut rev: Revision,
    ) -> Result<(), StoreError> {
        for _ in 0..FENCE_ROUNDS {
            let dek = self.inner.keys.current_dek(at.scope)?;
            if dek.version == used {
                return Ok(());
            }
            let rec = seal_record(at.slot, &dek, at.scope, at.name, plain, meta);
            match self.inner.bucket.update(at.key, &rec, rev)? {
                Cas::Written(r) => (used, rev) = (dek.version, r),
                Cas::Conflict => return Ok(()),
            }
        }
        Err(StoreError::Contended(format!(
            "the data key of {}",
            at.scope
        )))
    }
}

/// Where a sealed value is written: its record's key, and the scope, name
/// and slot its AD names.
pub(crate) struct At<'a> {
    pub scope: &'a Scope,
    pub key: &'a [u8],
    pub name: &'a str,
    pub slot: Slot,
}

impl<'a> At<'a> {
    pub(crate) fn current(scope: &'a Scope, key: &'a [u8], name: &'a str) -> Self {
        At {
            scope,
            key,
            name,
            slot: Slot::Current,
        }
    }
}
