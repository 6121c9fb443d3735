//! A secret's history: its older versions, kept sealed, so that a write can
//! be rolled back, a delete undone, and a version destroyed for good.
//!
//! **Layout.** The current version stays where reads find it,
//! `secret/<scope>/<name>` (the `get-secret` path is unchanged). Every
//! version a write replaces, or a delete removes, is first sealed again
//! under the scope's current DEK into `version/<scope>/<name>/<version>`,
//! with an AD naming that slot (`records::Slot::History`), so a kept
//! version cannot be moved back into the current slot behind the store's
//! back. A delete leaves a tombstone at the current slot that keeps the
//! version number, so versions keep growing when the name is written again.
//!
//! **No multi-key transactions.** A version is kept *before* the write that
//! replaces it, with `create`: a crash in between leaves it in both places,
//! never in neither, and a version is kept at most once. A destroyed
//! version leaves a tombstone in its kept slot, so a writer that read the
//! version before the destroy cannot keep it again afterwards. A kept
//! version is fenced like any write (`writes.rs`), and key rotation
//! re-seals kept versions with the current ones (`rotation/dek.rs`).
//!
//! **How many.** The current version and the `keep - 1` before it: the
//! secret's own setting (`keep/<scope>/<name>`), else the store's
//! (`history-keep`), else [`DEFAULT_HISTORY`]; older ones are deleted
//! after each write.
//!
//! **Destroy** erases the kept ciphertext and then rotates the scope's DEK,
//! so that no key the store still holds opens what the embedded backend's
//! files may keep of the old bytes until it reuses the space; a master key
//! rotation afterwards makes those bytes useless to a holder of the current
//! key file too (`docs/threat-model.md`).

use std::collections::BTreeMap;

use keyhole_kv::Cas;
use zeroize::Zeroizing;

use crate::error::{Preview, StoreError};
use crate::layout;
use crate::model::{Scope, SecretMeta, SecretValue, VersionInfo, VersionState, now_ms};
use crate::open::SecretStore;
use crate::records::{self, Current, SecretRecord, Slot, Tombstone};
use crate::validate::validate_name;
use crate::writes::{At, RecordMeta, open_record, seal_record};

/// Versions kept per secret (the current one included) unless the store
/// is told otherwise.
pub const DEFAULT_HISTORY: u64 = 10;
/// The most versions a store may keep per secret.
pub const MAX_HISTORY: u64 = 1_000;

/// The store-wide setting's key.
const HISTORY_KEEP: &[u8] = b"history-keep";

/// Checks a count of versions to keep (1 to [`MAX_HISTORY`]): for callers
/// that check it before a write the count goes with (`secret set
/// --keep-versions`), so a bad count writes nothing.
pub fn validate_versions_kept(keep: u64) -> Result<(), StoreError> {
    if !(1..=MAX_HISTORY).contains(&keep) {
        return Err(StoreError::InvalidValue {
            rule: "versions kept must be 1 to 1000",
        });
    }
    Ok(())
}

impl SecretStore {
    /// How many versions of each secret are kept, the current one included.
    pub fn history_keep(&self) -> Result<u64, StoreError> {
        match self.inner.bucket.get(HISTORY_KEEP)? {
            Some(e) => records::u64_value(&e.value, "history-keep setting"),
            None => Ok(DEFAULT_HISTORY),
        }
    }

    /// Sets how many versions of each secret are kept (1 to
    /// [`MAX_HISTORY`]); takes effect at each secret's next write.
    pub fn set_history_keep(&self, keep: u64) -> Result<(), StoreError> {
        validate_versions_kept(keep)?;
        self.inner.bucket.put(HISTORY_KEEP, &keep.to_be_bytes())?;
        self.flush()
    }

    /// How many versions of `name` are kept: its own setting, else the
    /// store's.
    pub fn versions_kept(&self, scope: &Scope, name: &str) -> Result<u64, StoreError> {
        validate_name(name)?;
        match self.inner.bucket.get(&layout::keep(scope, name))? {
            Some(e) => records::u64_value(&e.value, "versions kept"),
            None => self.history_keep(),
        }
    }

    /// Sets how many versions of `name` are kept (1 to [`MAX_HISTORY`]),
    /// or (`None`) makes it follow the store's setting again; prunes its
    /// history to that at once.
    pub fn set_versions_kept(
        &self,
        scope: &Scope,
        name: &str,
        keep: Option<u64>,
    ) -> Result<(), StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let bucket = &*self.inner.bucket;
        let key = layout::keep(scope, name);
        match keep {
            Some(n) => {
                validate_versions_kept(n)?;
                bucket.put(&key, &n.to_be_bytes())?;
            }
            None => {
                if let Some(e) = bucket.get(&key)? {
                    let _ = bucket.delete(&key, e.revision)?;
                }
            }
        }
        if let Some(e) = bucket.get(&layout::secret(scope, name))? {
            let current = records::decode_current(&e.value)?.version();
            self.prune_history(scope, name, current, true)?;
        }
        self.flush()
    }

    /// Every version of a secret still known, oldest first: kept ones, the
    /// current one, deleted and destroyed ones. Never a value.
    pub fn secret_history(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let bucket = &*self.inner.bucket;
        let mut out = BTreeMap::new();
        for (_, e) in bucket.scan(&layout::versions_of_secret(scope, name))? {
            let info = match records::decode_current(&e.value)? {
                Current::Live(r) => info(&r, VersionState::Kept),
                Current::Deleted(t) => VersionInfo {
                    version: t.version,
                    created_at_ms: t.created_at_ms,
                    updated_at_ms: t.deleted_at_ms,
                    state: VersionState::Destroyed,
                },
            };
            out.insert(info.version, info);
        }
        match bucket.get(&layout::secret(scope, name))? {
            Some(e) => match records::decode_current(&e.value)? {
                Current::Live(r) => {
                    out.insert(r.version, info(&r, VersionState::Current));
                }
                Current::Deleted(t) => match out.get_mut(&t.version) {
                    Some(kept) if kept.state == VersionState::Kept => {
                        kept.state = VersionState::Deleted;
                    }
                    Some(_) => {}
                    None => {
                        out.insert(
                            t.version,
                            VersionInfo {
                                version: t.version,
                                created_at_ms: t.created_at_ms,
                                updated_at_ms: t.deleted_at_ms,
                                state: VersionState::Destroyed,
                            },
                        );
                    }
                },
            },
            None if out.is_empty() => {
                return Err(StoreError::NotFound {
                    scope: scope.clone(),
                    name: name.to_owned(),
                });
            }
            None => {}
        }
        Ok(out.into_values().collect())
    }

    /// Writes a new version holding version `version`'s value (kept, or
    /// the current one), if the current version is `expect` (when given).
    pub fn rollback_secret(
        &self,
        scope: &Scope,
        name: &str,
        version: u64,
        expect: Option<u64>,
    ) -> Result<SecretMeta, StoreError> {
        let value = self.version_value(scope, name, version)?;
        self.write_secret(scope, name, &value, None, expect)
    }

    /// Brings a deleted secret back: its last version becomes current
    /// again, with the same version number.
    pub fn undelete_secret(&self, scope: &Scope, name: &str) -> Result<SecretMeta, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        self.check_unsealed()?;
        let bucket = &*self.inner.bucket;
        let key = layout::secret(scope, name);
        for _ in 0..crate::keys::FENCE_ROUNDS {
            let Some(entry) = bucket.get(&key)? else {
                return Err(StoreError::NotFound {
                    scope: scope.clone(),
                    name: name.to_owned(),
                });
            };
            let Current::Deleted(t) = records::decode_current(&entry.value)? else {
                return Err(self.wrong_state(scope, name, "is not deleted"));
            };
            let plain = self.kept_plain(scope, name, t.version)?;
            let meta = RecordMeta {
                version: t.version,
                created_at_ms: t.created_at_ms,
                updated_at_ms: now_ms(),
                topics: t.topics.clone(),
            };
            let dek = self.inner.keys.current_dek(scope)?;
            let rec = seal_record(Slot::Current, &dek, scope, name, &plain, &meta);
            if let Cas::Written(rev) = bucket.update(&key, &rec, entry.revision)? {
                crate::deletion::live_fence(bucket, scope, &key, rev)?;
                self.fence(
                    &At::current(scope, &key, name),
                    &plain,
                    &meta,
                    dek.version,
                    rev,
                )?;
                self.flush()?;
                return Ok(meta.into_secret_meta(scope, name));
            }
        }
        Err(StoreError::Contended(format!("secret {}", Preview(name))))
    }

    /// Erases kept versions of a secret for good (`None`: every version,
    /// after deleting the secret if it is live), with every copy the
    /// backend keeps as history, then rotates the scope's data key (whose
    /// retirement erases the old key the same way). What the embedded
    /// backend freed stays in its files until `keyhole compact`. The live current version cannot be destroyed alone:
    /// delete it first, or write a new one. Returns the versions destroyed.
    pub fn destroy_versions(
        &self,
        scope: &Scope,
        name: &str,
        versions: Option<&[u64]>,
    ) -> Result<Vec<u64>, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        let bucket = &*self.inner.bucket;
        let current = match bucket.get(&layout::secret(scope, name))? {
            Some(e) => Some(records::decode_current(&e.value)?.version_and_liveness()),
            None => None,
        };
        let wanted: Vec<u64> = match versions {
            Some(v) => {
                if let Some((cur, true)) = current
                    && v.contains(&cur)
                {
                    return Err(self.wrong_state(
                        scope,
                        name,
                        "has that version as its current value: delete the secret first, or write a new version",
                    ));
                }
                v.to_vec()
            }
            None => {
                if matches!(current, Some((_, true))) {
                    self.delete_secret(scope, name)?;
                }
                bucket
                    .scan(&layout::versions_of_secret(scope, name))?
                    .iter()
                    .filter_map(|(k, _)| layout::version_suffix(k))
                    .collect()
            }
        };
        let mut destroyed = Vec::new();
        for version in wanted {
            let key = layout::kept_version(scope, name, version);
            let Some(entry) = bucket.get(&key)? else {
                return Err(StoreError::VersionGone {
                    scope: scope.clone(),
                    name: name.to_owned(),
                    version,
                    destroyed: false,
                });
            };
            let Current::Live(r) = records::decode_current(&entry.value)? else {
                continue; // destroyed already
            };
            let marker = records::encode_tombstone(&Tombstone {
                version,
                created_at_ms: r.created_at_ms,
                deleted_at_ms: now_ms(),
                topics: Vec::new(),
            });
            // A conflict: rotation re-sealed it meanwhile; erase that.
            let mut rev = entry.revision;
            for _ in 0..crate::keys::FENCE_ROUNDS {
                match bucket.update(&key, &marker, rev)? {
                    Cas::Written(_) => break,
                    Cas::Conflict => match bucket.get(&key)? {
                        Some(e) => rev = e.revision,
                        None => break,
                    },
                }
            }
            bucket.erase_history(&key)?;
            destroyed.push(version);
        }
        self.flush()?;
        if !destroyed.is_empty() {
            // The secret's own key once held each destroyed version as its
            // current value.
            bucket.erase_history(&layout::secret(scope, name))?;
            self.rotate_dek(scope)?;
        }
        Ok(destroyed)
    }

    /// The value of version `version`: the current one, or a kept one.
    fn version_value(
        &self,
        scope: &Scope,
        name: &str,
        version: u64,
    ) -> Result<SecretValue, StoreError> {
        validate_name(name)?;
        self.require_scope(scope)?;
        self.check_unsealed()?;
        if let Some(e) = self.inner.bucket.get(&layout::secret(scope, name))?
            && let Current::Live(r) = records::decode_current(&e.value)?
            && r.version == version
        {
            return self.get_secret(scope, name);
        }
        let plain = self.kept_plain(scope, name, version)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::corrupt(format!("secret {} is not UTF-8", Preview(name))))?;
        Ok(SecretValue::new(text))
    }

    /// The plaintext of kept version `version`.
    fn kept_plain(
        &self,
        scope: &Scope,
        name: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let key = layout::kept_version(scope, name, version);
        for attempt in 0..8u32 {
            let gone = |destroyed| StoreError::VersionGone {
                scope: scope.clone(),
                name: name.to_owned(),
                version,
                destroyed,
            };
            let Some(entry) = self.inner.bucket.get(&key)? else {
                return Err(gone(false));
            };
            let Current::Live(r) = records::decode_current(&entry.value)? else {
                return Err(gone(true));
            };
            let Some(dek) = self.inner.keys.dek(scope, r.dek_version)? else {
                // Re-sealed by a rotation that retired its DEK: read again.
                std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
                continue;
            };
            return open_record(Slot::History, &dek, scope, name, &r);
        }
        Err(StoreError::corrupt(format!(
            "version {version} of secret {} in {scope} refers to a DEK that does not exist",
            Preview(name)
        )))
    }

    fn wrong_state(&self, scope: &Scope, name: &str, why: &'static str) -> StoreError {
        StoreError::WrongState {
            scope: scope.clone(),
            name: name.to_owned(),
            why,
        }
    }
}

fn info(r: &SecretRecord<'_>, state: VersionState) -> VersionInfo {
    VersionInfo {
        version: r.version,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
        state,
    }
}

impl Current<'_> {
    /// `(version, live)`.
    fn version_and_liveness(&self) -> (u64, bool) {
        (self.version(), matches!(self, Current::Live(_)))
    }
}
