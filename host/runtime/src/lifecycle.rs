//! Deleting an environment or a space, from the runtime's side: its
//! listeners go with it, and nothing is dispatched to it while it goes.
//!
//! The store deletes a scope's records and data keys crash-safely
//! (`keyhole-store`'s `deletion` module: mark, sweep, remove). Listeners
//! are the runtime's, so a deletion runs here, in this order:
//!
//! 1. Unforced: count what the scope holds (secrets, spaces, listeners)
//!    and refuse ([`RuntimeError::NotEmpty`]) if it holds anything.
//! 2. Mark it (store). From here on events to it and deploys into it are
//!    refused by the one membership check (`check_scope`), and a deploy
//!    that passed the check before the mark takes itself back
//!    (`deploying.rs`).
//! 3. Unforced: count again, since a write or a deploy may have landed
//!    between 1 and 2; if anything did, cancel the mark and refuse.
//! 4. Undeploy its listeners (for an environment, its spaces' too).
//! 5. Finish (store): its spaces, secrets, every data key, its record.
//!
//! A crash after step 2 leaves the mark: the scope stays gone, and
//! [`Runtime::open`] resumes every pending deletion from step 3 before it
//! returns (as does deleting the scope again).
//!
//! Grants are not listeners in the scope: a listener elsewhere granted the
//! deleted scope keeps its grant, which then names a scope that does not
//! exist (and would reach one created again under the id).

use std::fmt;

use keyhole_store::{Scope, StoreError};
use serde::Serialize;

use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// What a scope holds: what deleting it takes with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeHoldings {
    /// Its secrets, its spaces' included.
    pub secrets: usize,
    /// An environment's spaces.
    pub spaces: Vec<String>,
    /// The listeners deployed in it (for an environment, in its spaces
    /// too), by name.
    pub listeners: Vec<String>,
}

impl ScopeHoldings {
    pub fn is_empty(&self) -> bool {
        self.secrets == 0 && self.spaces.is_empty() && self.listeners.is_empty()
    }
}

/// `3 secrets, 2 spaces and 1 listener` (only what there is).
impl fmt::Display for ScopeHoldings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counted = |n: usize, what: &str| match n {
            0 => None,
            1 => Some(format!("1 {what}")),
            n => Some(format!("{n} {what}s")),
        };
        let parts: Vec<String> = [
            counted(self.secrets, "secret"),
            counted(self.spaces.len(), "space"),
            counted(self.listeners.len(), "listener"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match parts.as_slice() {
            [] => f.write_str("nothing"),
            [one] => f.write_str(one),
            [init @ .., last] => write!(f, "{} and {last}", init.join(", ")),
        }
    }
}

/// What a deletion took with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeDeletion {
    pub scope: Scope,
    pub forced: bool,
    /// Secret records deleted, its spaces' included.
    pub secrets: usize,
    pub spaces: Vec<String>,
    /// Listeners undeployed.
    pub listeners: Vec<String>,
    /// Data keys (DEK versions) destroyed.
    pub data_keys: usize,
}

impl Runtime {
    /// What `scope` holds: its secrets, spaces and listeners.
    pub fn scope_holdings(&self, scope: &Scope) -> Result<ScopeHoldings, RuntimeError> {
        let contents = self.inner.store.scope_contents(scope)?;
        Ok(ScopeHoldings {
            secrets: contents.secrets,
            spaces: contents.spaces,
            listeners: self.listeners_in(scope)?,
        })
    }

    /// Deletes an environment or a space. Unless `force`, only an empty
    /// one: otherwise [`RuntimeError::NotEmpty`] says what it holds. Forced,
    /// its spaces, secrets, data keys and listeners go with it. Deleting a
    /// scope whose deletion was interrupted finishes it. See the module
    /// docs for the order of the steps.
    pub fn delete_scope(&self, scope: &Scope, force: bool) -> Result<ScopeDeletion, RuntimeError> {
        let store = &self.inner.store;
        if !force && store.require_scope(scope).is_ok() {
            self.refuse_unless_empty(scope)?;
        }
        let forced = store.begin_delete(scope, force)?;
        self.go_ahead(scope, forced)
    }

    /// Steps 3-5, for a scope already marked.
    fn go_ahead(&self, scope: &Scope, forced: bool) -> Result<ScopeDeletion, RuntimeError> {
        let store = &self.inner.store;
        if !forced && let Err(e) = self.refuse_unless_empty(scope) {
            store.cancel_delete(scope)?;
            return Err(e);
        }
        let mut listeners = Vec::new();
        for name in self.listeners_in(scope)? {
            match self.undeploy(&name) {
                Ok(()) => listeners.push(name),
                Err(RuntimeError::UnknownListener(_)) => {} // gone meanwhile
                Err(e) => return Err(e),
            }
        }
        let report = store.finish_delete(scope)?;
        Ok(ScopeDeletion {
            scope: scope.clone(),
            forced,
            secrets: report.secrets,
            spaces: report.spaces,
            listeners,
            data_keys: report.data_keys,
        })
    }

    fn refuse_unless_empty(&self, scope: &Scope) -> Result<(), RuntimeError> {
        let holdings = self.scope_holdings(scope)?;
        if holdings.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::NotEmpty {
            scope: scope.clone(),
            holdings,
        })
    }

    /// The listeners deployed in `scope` (an environment's include its
    /// spaces'), from the stored deployment records, by name.
    fn listeners_in(&self, scope: &Scope) -> Result<Vec<String>, RuntimeError> {
        let mut names = Vec::new();
        for (_, entry) in self.inner.deployment_records.scan(b"")? {
            let d = crate::deploy_record::decode(&entry.value)?;
            let inside = match scope {
                Scope::Environment(id) => d.spec.environment == *id,
                Scope::Space(id) => d.spec.space.as_deref() == Some(id.as_str()),
            };
            if inside {
                names.push(d.spec.name);
            }
        }
        Ok(names)
    }

    /// Resumes every deletion a crash (or a failure) left half-done, at
    /// open: environments first (their spaces go with them). One that fails
    /// again is left marked, still gone, for the next open or a retry.
    pub(crate) fn finish_pending_deletions(&self) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        if store.is_sealed() {
            return Ok(()); // a sealed store writes nothing
        }
        let mut pending = store.pending_deletions()?;
        pending.sort_by_key(|p| matches!(p.scope, Scope::Space(_)));
        for p in pending {
            let resumed = store
                .begin_delete(&p.scope, p.forced)
                .map_err(RuntimeError::from)
                .and_then(|forced| self.go_ahead(&p.scope, forced));
            match resumed {
                Ok(done) => tracing::info!(
                    scope = %p.scope,
                    forced = done.forced,
                    "finished an interrupted deletion"
                ),
                // Gone with its environment, already finished, or cancelled
                // because it is not empty.
                Err(RuntimeError::Store(
                    StoreError::UnknownEnvironment(_) | StoreError::UnknownSpace(_),
                ))
                | Err(RuntimeError::NotEmpty { .. }) => {}
                Err(e) => tracing::warn!(
                    scope = %p.scope,
                    "could not finish an interrupted deletion: {e}"
                ),
            }
        }
        Ok(())
    }
}
