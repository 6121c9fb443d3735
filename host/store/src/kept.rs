//! What a write does with the version it replaces: keeps it, sealed again
//! under the scope's current DEK, and then prunes the versions that fall
//! out of the history. The layout and the rules are in `history.rs`.

use keyhole_kv::Cas;

use crate::error::StoreError;
use crate::history::MAX_HISTORY;
use crate::layout;
use crate::model::Scope;
use crate::open::SecretStore;
use crate::records::{SecretRecord, Slot};
use crate::writes::{At, RecordMeta, open_record, seal_record};

impl SecretStore {
    /// Keeps version `r` of `name` (the current record, about to be
    /// replaced) in its history, sealed again under the scope's current
    /// DEK. `false` if the DEK `r` is sealed under was retired meanwhile
    /// (the caller reads the record again). A version kept or destroyed
    /// before is left as it is.
    pub(crate) fn keep_version(
        &self,
        scope: &Scope,
        name: &str,
        r: &SecretRecord<'_>,
    ) -> Result<bool, StoreError> {
        let Some(old) = self.inner.keys.dek(scope, r.dek_version)? else {
            return Ok(false);
        };
        let plain = open_record(Slot::Current, &old, scope, name, r)?;
        let key = layout::kept_version(scope, name, r.version);
        let meta = RecordMeta::of(r);
        let dek = self.inner.keys.current_dek(scope)?;
        let rec = seal_record(Slot::History, &dek, scope, name, &plain, &meta);
        if let Cas::Written(rev) = self.inner.bucket.create(&key, &rec)? {
            let at = At {
                scope,
                key: &key,
                name,
                slot: Slot::History,
            };
            self.fence(&at, &plain, &meta, dek.version, rev)?;
        }
        Ok(true)
    }

    /// Deletes the kept versions of `name` that fall out of the history
    /// now that `current` is its current version. Kept versions are
    /// consecutive (each write keeps the one it replaces; pruning takes the
    /// oldest), so without `all` they are looked up one by one from
    /// `current - keep` down until one is missing: after a write that is
    /// one delete and one miss, where a scan would list the whole bucket on
    /// NATS. `all` scans.
    pub(crate) fn prune_history(
        &self,
        scope: &Scope,
        name: &str,
        current: u64,
        all: bool,
    ) -> Result<(), StoreError> {
        let keep = self.versions_kept(scope, name)?;
        let bucket = &*self.inner.bucket;
        let stale: Vec<(Vec<u8>, keyhole_kv::Entry)> = if all {
            bucket
                .scan(&layout::versions_of_secret(scope, name))?
                .into_iter()
                .filter(|(k, _)| layout::version_suffix(k).is_some_and(|v| v + keep <= current))
                .collect()
        } else {
            let mut stale = Vec::new();
            let mut version = current.saturating_sub(keep);
            while version > 0 && stale.len() as u64 <= MAX_HISTORY {
                let key = layout::kept_version(scope, name, version);
                let Some(entry) = bucket.get(&key)? else {
                    break;
                };
                stale.push((key, entry));
                version -= 1;
            }
            stale
        };
        for (key, entry) in stale {
            let _ = bucket.delete(&key, entry.revision)?;
        }
        Ok(())
    }
}
