//! Deleting an environment or a space with everything it holds, so that
//! its values cannot be recovered afterwards, not even by someone who holds
//! the master key and reads the backend: every secret record *and every
//! DEK version* of the scope is deleted, and a value sealed under a DEK
//! that no longer exists anywhere is noise.
//!
//! The seam has no multi-key transactions and several hosts may share it,
//! so a deletion is a sequence of single-key steps, each safe to stop
//! after:
//!
//! 1. **Mark** the scope record `Deleting` (compare-and-set on its
//!    revision, [`SecretStore::begin_delete`]). From then on the scope is
//!    gone for every reader, writer, event and deploy (`scopes.rs`), and
//!    the mark is the durable intent: deleting again, or the runtime's next
//!    open ([`SecretStore::pending_deletions`]), finishes it.
//! 2. For an environment, delete each of its spaces the same way.
//! 3. **Sweep** the scope's secret records, then its DEKs, pass after pass
//!    until one finds none (`sweep.rs`).
//! 4. Delete the scope record. Its id is free again.
//!
//! A writer that checked the scope before the mark reads the scope record
//! again after its write ([`live_fence`]): a write that landed before the
//! mark is found by the sweep, which starts after the mark; one that landed
//! after it finds the mark and takes itself back. The same fence guards a
//! DEK created by a scope's first write or by a rotation, and a space
//! created in an environment being deleted.
//!
//! DEK versions of a scope id are never reused: the scope's `dek-current`
//! pointer (a number, no key) outlives it, so a scope created again under
//! the same id starts at the next version with a fresh key. Every host's
//! DEK cache is keyed by version and relies on that.
//!
//! An unforced deletion goes ahead only while the scope is empty. Its
//! caller counts before marking and again after (a write may have landed
//! in between, and is then counted); if something is there it cancels the
//! mark. A crash in between leaves an unforced mark, which the next open
//! finishes if the scope is still empty and cancels otherwise.
//!
//! Residual: a writer that crashes between its write and its fence, while
//! a deletion of the same scope runs past its last sweep, leaves that one
//! record (sealed under a destroyed key: unreadable) or that one DEK
//! (destroyed at the next open, [`SecretStore::destroy_orphan_keys`]).

mod sweep;
#[cfg(test)]
mod tests;

pub(crate) use sweep::live_fence;

use serde::Serialize;

use crate::error::StoreError;
use crate::layout;
use crate::model::{Scope, now_ms};
use crate::open::SecretStore;
use crate::records::DeleteMark;
use crate::scopes::{read_scope, scan_scopes};

/// How often a step that lost a compare-and-set race tries again.
const ATTEMPTS: usize = 16;

/// What a deletion took with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeleteReport {
    /// Secret records deleted, its spaces' included.
    pub secrets: usize,
    /// The spaces deleted with an environment.
    pub spaces: Vec<String>,
    /// Data keys (DEK versions) destroyed, its spaces' included.
    pub data_keys: usize,
}

/// What a scope holds: what deleting it would take with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeContents {
    /// Its secrets, and for an environment its spaces' secrets too.
    pub secrets: usize,
    /// An environment's spaces, by id.
    pub spaces: Vec<String>,
}

impl ScopeContents {
    pub fn is_empty(&self) -> bool {
        self.secrets == 0 && self.spaces.is_empty()
    }
}

/// A deletion that was begun and not finished or cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDeletion {
    pub scope: Scope,
    pub forced: bool,
}

impl SecretStore {
    /// What `scope` holds, whether live or being deleted.
    pub fn scope_contents(&self, scope: &Scope) -> Result<ScopeContents, StoreError> {
        if read_scope(&*self.inner.bucket, scope)?.is_none() {
            return Err(StoreError::unknown(scope));
        }
        let bucket = &*self.inner.bucket;
        let mut contents = ScopeContents {
            secrets: live_secrets(bucket, scope)?,
            spaces: Vec::new(),
        };
        if let Scope::Environment(id) = scope {
            for space in self.spaces_of(id)? {
                contents.secrets += live_secrets(bucket, &space)?;
                contents.spaces.push(space.id().to_owned());
            }
        }
        Ok(contents)
    }

    /// Marks `scope` as being deleted (step 1). Marking a scope already
    /// marked is a retry: it keeps the mark, making it forced if `force`.
    /// Returns whether the deletion is forced.
    pub fn begin_delete(&self, scope: &Scope, force: bool) -> Result<bool, StoreError> {
        let bucket = &*self.inner.bucket;
        for _ in 0..ATTEMPTS {
            let rec = read_scope(bucket, scope)?.ok_or_else(|| StoreError::unknown(scope))?;
            if let Some(mark) = rec.mark
                && (mark.forced || !force)
            {
                return Ok(mark.forced);
            }
            let mark = DeleteMark {
                forced: force,
                since_ms: rec.mark.map_or_else(now_ms, |m| m.since_ms),
            };
            let key = scope_record_key(scope);
            if bucket.update(&key, &rec.encode(Some(mark)), rec.revision)?
                != keyhole_kv::Cas::Conflict
            {
                self.flush()?;
                return Ok(force);
            }
        }
        Err(StoreError::Contended(format!("{scope}")))
    }

    /// Takes back an unforced mark: the scope is live again, as it was.
    /// Returns `false` (and changes nothing) if the deletion is forced; a
    /// forced deletion is only ever finished.
    pub fn cancel_delete(&self, scope: &Scope) -> Result<bool, StoreError> {
        let bucket = &*self.inner.bucket;
        for _ in 0..ATTEMPTS {
            let rec = read_scope(bucket, scope)?.ok_or_else(|| StoreError::unknown(scope))?;
            match rec.mark {
                None => return Ok(true),
                Some(mark) if mark.forced => return Ok(false),
                Some(_) => {}
            }
            let key = scope_record_key(scope);
            if bucket.update(&key, &rec.encode(None), rec.revision)? != keyhole_kv::Cas::Conflict {
                self.flush()?;
                return Ok(true);
            }
        }
        Err(StoreError::Contended(format!("{scope}")))
    }

    /// Finishes a deletion [`SecretStore::begin_delete`] began (steps 2-4):
    /// its spaces, its secrets, every version of its data key, and last its
    /// record. Safe to run again, and on several hosts at once.
    pub fn finish_delete(&self, scope: &Scope) -> Result<DeleteReport, StoreError> {
        let bucket = &*self.inner.bucket;
        let rec = read_scope(bucket, scope)?.ok_or_else(|| StoreError::unknown(scope))?;
        if rec.mark.is_none() {
            // Cancelled meanwhile (an unforced deletion found not empty).
            return Err(StoreError::Contended(format!("the deletion of {scope}")));
        }
        let mut report = DeleteReport::default();
        if let Scope::Environment(id) = scope {
            // Spaces created after the mark are taken back by their
            // creators' fence; these are all the others.
            for space in self.spaces_of(id)? {
                let done = match self
                    .begin_delete(&space, true)
                    .and_then(|_| self.finish_delete(&space))
                {
                    // Finished by another host meanwhile.
                    Err(StoreError::UnknownSpace(_)) => DeleteReport::default(),
                    other => other?,
                };
                report.secrets += done.secrets;
                report.data_keys += done.data_keys;
                report.spaces.push(space.id().to_owned());
            }
        }
        let (secrets, data_keys) = self.sweep(scope)?;
        report.secrets += secrets;
        report.data_keys += data_keys;
        self.remove_marked_record(scope)?;
        self.flush()?;
        Ok(report)
    }

    /// Every deletion begun and not finished: what a crash (or a failure)
    /// left. The runtime finishes them when it opens, after undeploying
    /// their listeners.
    ///
    /// Also listed, as forced: a space whose environment has no record,
    /// which only a creator that crashed before its fence, while the
    /// environment was being deleted, leaves behind.
    pub fn pending_deletions(&self) -> Result<Vec<PendingDeletion>, StoreError> {
        let bucket = &*self.inner.bucket;
        let environments = scan_scopes(bucket, layout::ENV_PREFIX)?;
        let spaces = scan_scopes(bucket, layout::SPACE_PREFIX)?;
        let mut out = Vec::new();
        for (scope, rec) in environments.iter().chain(&spaces) {
            let orphan = rec
                .environment
                .as_deref()
                .is_some_and(|env| !environments.iter().any(|(e, _)| e.id() == env));
            if rec.mark.is_some() || orphan {
                out.push(PendingDeletion {
                    scope: scope.clone(),
                    forced: orphan || rec.mark.is_some_and(|m| m.forced),
                });
            }
        }
        Ok(out)
    }

    /// The spaces of environment `id`, live or being deleted.
    fn spaces_of(&self, id: &str) -> Result<Vec<Scope>, StoreError> {
        Ok(scan_scopes(&*self.inner.bucket, layout::SPACE_PREFIX)?
            .into_iter()
            .filter(|(_, rec)| rec.environment.as_deref() == Some(id))
            .map(|(scope, _)| scope)
            .collect())
    }
}

fn scope_record_key(scope: &Scope) -> Vec<u8> {
    match scope {
        Scope::Environment(id) => layout::env(id),
        Scope::Space(id) => layout::space(id),
    }
}

/// How many live (not deleted) secrets `scope` holds.
fn live_secrets(bucket: &dyn keyhole_kv::Bucket, scope: &Scope) -> Result<usize, StoreError> {
    let mut live = 0;
    for (_, e) in bucket.scan(&layout::secrets_of(scope))? {
        live += usize::from(matches!(
            crate::records::decode_current(&e.value)?,
            crate::records::Current::Live(_)
        ));
    }
    Ok(live)
}
