//! The steps of a deletion that remove records: sweeping a marked scope's
//! secrets and DEKs, removing its record, the writers' fence, and the
//! clean-up of DEKs whose scope is gone.
//!
//! Every removal is a compare-and-set on the revision the sweep scanned,
//! and each pass first checks that the scope is still marked. So a sweep
//! that runs late (another host finished the deletion, and the id was
//! created again) stops instead of deleting the new scope's records: a
//! record it scanned existed before that check, and a scope that is marked
//! at the check is one being deleted, whichever it is.

use std::collections::HashSet;

use keyhole_kv::{Bucket, Cas, Revision};

use super::ATTEMPTS;
use crate::error::StoreError;
use crate::layout;
use crate::model::Scope;
use crate::open::SecretStore;
use crate::scopes::{is_live, read_scope, scan_scopes};

/// Most passes over a scope before a sweep reports that writers kept
/// adding records (each is taken back by its writer's fence anyway).
const SWEEP_PASSES: usize = 16;

/// After writing `key` at `revision` into `scope`: if the scope is no
/// longer live (a deletion marked it after the writer's check), take the
/// write back and answer that the scope is gone. A conflict on the take-back
/// means the deletion's sweep, or a later write (which fences itself), got
/// there first.
pub(crate) fn live_fence(
    bucket: &dyn Bucket,
    scope: &Scope,
    key: &[u8],
    revision: Revision,
) -> Result<(), StoreError> {
    if is_live(bucket, scope)? {
        return Ok(());
    }
    let _ = bucket.delete(key, revision)?;
    bucket.flush()?;
    Err(StoreError::unknown(scope))
}

/// Whether the record of `scope` is there and marked for deletion.
fn marked(bucket: &dyn Bucket, scope: &Scope) -> Result<bool, StoreError> {
    Ok(read_scope(bucket, scope)?.is_some_and(|r| r.mark.is_some()))
}

impl SecretStore {
    /// Deletes the secret records of a marked scope, then its DEKs, pass
    /// after pass until one finds none or the scope is no longer marked.
    /// Returns how many of each this sweep deleted.
    pub(super) fn sweep(&self, scope: &Scope) -> Result<(usize, usize), StoreError> {
        let bucket = &*self.inner.bucket;
        let (mut secrets, mut deks) = (0, 0);
        for _ in 0..SWEEP_PASSES {
            #[cfg(test)]
            crate::test_hooks::hit(crate::test_hooks::Point::BeforeSweepPass);
            let mut records = bucket.scan(&layout::secrets_of(scope))?;
            records.extend(bucket.scan(&layout::versions_of(scope))?);
            records.extend(bucket.scan(&layout::keeps_of(scope))?);
            let keys = bucket.scan(&layout::deks_of(scope))?;
            if records.is_empty() && keys.is_empty() {
                return Ok((secrets, deks));
            }
            if !marked(bucket, scope)? {
                return Ok((secrets, deks));
            }
            // Values first, then the keys they are sealed under.
            for (key, entry) in &records {
                if bucket.delete(key, entry.revision)? != Cas::Conflict {
                    secrets += 1;
                }
            }
            for (key, entry) in &keys {
                if bucket.delete(key, entry.revision)? != Cas::Conflict {
                    deks += 1;
                }
                self.inner.keys.deks.remove(key);
            }
        }
        Err(StoreError::Contended(format!("the records of {scope}")))
    }

    /// Deletes the record of `scope` if it is still marked (not if another
    /// host finished the deletion and the id was created again).
    pub(super) fn remove_marked_record(&self, scope: &Scope) -> Result<(), StoreError> {
        let bucket = &*self.inner.bucket;
        for _ in 0..ATTEMPTS {
            let Some(rec) = read_scope(bucket, scope)?.filter(|r| r.mark.is_some()) else {
                return Ok(());
            };
            let key = super::scope_record_key(scope);
            if bucket.delete(&key, rec.revision)? != Cas::Conflict {
                return Ok(());
            }
        }
        Err(StoreError::Contended(format!("{scope}")))
    }

    /// Destroys every DEK whose scope has no record at all: what a writer
    /// or rotation that crashed before its fence, while the scope was being
    /// deleted, may have left. Run when an unsealed store opens. Returns
    /// how many it destroyed.
    ///
    /// The DEKs are listed before the scopes: a scope record is created
    /// before any of its DEKs and removed after all of them, so a DEK
    /// listed first whose scope is missing from the later list is one its
    /// deletion did not see. One whose scope was created again in between
    /// is skipped (its scope is listed).
    pub(crate) fn destroy_orphan_keys(&self) -> Result<usize, StoreError> {
        let bucket = &*self.inner.bucket;
        let keys = bucket.scan(layout::DEK_PREFIX)?;
        if keys.is_empty() {
            return Ok(0);
        }
        let mut scopes = HashSet::new();
        for prefix in [layout::ENV_PREFIX, layout::SPACE_PREFIX] {
            scopes.extend(scan_scopes(bucket, prefix)?.into_iter().map(|(s, _)| s));
        }
        let mut destroyed = 0;
        for (key, entry) in keys {
            let Some(scope) = layout::dek_scope(&key) else {
                continue; // not a DEK key this version writes; leave it
            };
            if !scopes.contains(&scope) && bucket.delete(&key, entry.revision)? != Cas::Conflict {
                self.inner.keys.deks.remove(&key);
                destroyed += 1;
            }
        }
        if destroyed > 0 {
            self.flush()?;
        }
        Ok(destroyed)
    }
}
