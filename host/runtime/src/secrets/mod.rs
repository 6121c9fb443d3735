//! The `keyhole:listener/secrets` capability: the only door a guest has to
//! secret values.
//!
//! `get-secret` is linked by hand rather than through the `bindgen!` host
//! trait so that its string arguments arrive as [`WasmStr`] views into guest
//! memory: a hostile guest can pass a 10 MiB name and the host looks at its
//! length before copying a single byte out.
//!
//! Every failure a guest can cause or observe is a WIT `secret-error`, and
//! [`to_wit_error`] is the one place internal errors become those variants.
//! Every denial is the same `access-denied`, whichever rule denied it
//! (`access.rs`: a scope not granted, a name not declared, a grant bound
//! to another module, a secret bound to other topics, a secret the host
//! injects for the deployment, `inject.rs`); the rule is named
//! in the run record's notes and the audit entry's `reason`.
//! Traps are left for host bugs and engine limits. A failure of the store
//! itself (sealed, corrupt, an i/o error) reaches the guest only as a fixed
//! `unavailable` text: store errors can name the key file and the data
//! directory, which are the host's business. The reason goes to the run
//! record's notes instead.
//!
//! Files: `guest.rs` the WIT boundary (linking, copying arguments out of
//! guest memory), `read.rs` one read (authorise, look up, audit, reveal),
//! this file the per-run state and the error mapping.

use std::sync::Arc;

use keyhole_audit::{AuditLog, ReadOutcome, ResolvedScope, SecretRead};
use keyhole_store::{Provenance, Resolved, Scope, SecretStore, StoreError};
use smallvec::SmallVec;
use zeroize::Zeroize;

use crate::access::Access;
use crate::bindings::keyhole::listener::secrets::SecretError;
use crate::metrics::Metrics;

mod guest;
mod read;

pub use guest::add_to_linker;

/// Per-run state of the secrets capability: who is asking, what they may
/// read, and what they have read (so the run record can be scrubbed).
///
/// What stays the same for every run of a runtime ([`SecretsHost`]) and
/// of a deployment ([`Reader`]) is shared, one reference each, so setting
/// a run up touches two reference counts, not one per field (on two
/// threads those counts are contended cache lines).
pub struct SecretsCtx {
    pub(crate) host: Arc<SecretsHost>,
    pub(crate) reader: Arc<Reader>,
    pub(crate) space: Option<Arc<str>>,
    /// The event's topic, which topic-bound secrets must match.
    pub(crate) topic: Box<str>,
    /// The event's id, as each audit entry of the run names it.
    pub(crate) event_id: Box<str>,
    /// Values revealed during this run, by name, for scrubbing (inline
    /// for the usual run that reads one).
    pub(crate) revealed: SmallVec<[(String, Revealed); 1]>,
    /// What the run record should say about calls that were refused
    /// because they could not be audited.
    pub(crate) notes: Vec<String>,
}

/// What every run of a runtime reads secrets through.
pub(crate) struct SecretsHost {
    pub(crate) store: SecretStore,
    pub(crate) metrics: Arc<Metrics>,
    /// Where each call is audited; `None` while the store is sealed.
    pub(crate) audit: Option<Arc<AuditLog>>,
}

/// Who reads: a deployment, as its runs' reads are checked and audited.
pub(crate) struct Reader {
    /// The deployment's own environment.
    pub(crate) environment: Arc<str>,
    /// What the deployment may read.
    pub(crate) access: Arc<Access>,
    pub(crate) deployment: Arc<str>,
    pub(crate) module_hash: Arc<str>,
}

impl Reader {
    /// The audit entry of a read of `name` by this deployment during the
    /// event `event_id` on `topic`, now: requested in the event's own
    /// scope, found nowhere, by the listener itself, until the caller says
    /// otherwise.
    pub(crate) fn read_entry<'a>(
        &'a self,
        event_id: &'a str,
        topic: &'a str,
        name: &'a str,
        outcome: ReadOutcome,
    ) -> SecretRead<'a> {
        SecretRead {
            time_ms: crate::now_ms(),
            event_id,
            topic,
            deployment: &self.deployment,
            module_sha256: &self.module_hash,
            name,
            requested: None,
            resolved: None,
            injected: None,
            outcome,
            reason: None,
        }
    }
}

/// What a guest sees when its call could not be audited: the reason goes
/// to the run record, not to the guest.
const AUDIT_UNAVAILABLE: &str = "audit log unavailable";
/// What a guest sees while the store is sealed (no key, or a refused one).
pub(crate) const STORE_SEALED: &str = "secret store sealed";
/// What a guest sees when the store failed otherwise.
pub(crate) const STORE_UNAVAILABLE: &str = "secret store unavailable";
/// Most notes a run record gets from `get-secret` failures (each distinct).
const MAX_NOTES: usize = 16;

/// A value revealed to a guest, in the one copy the host makes of it: the
/// run keeps it to scrub the record, and wasmtime lowers the same `Arc<str>`
/// into guest memory (a host function may return `Arc<str>` for a WIT
/// `string`). wasmtime drops its reference as soon as the call returns, so
/// the run's is the last, and dropping it zeroizes the text.
pub(crate) struct Revealed(Arc<str>);

impl Revealed {
    pub(crate) fn new(value: &str) -> Self {
        Revealed(Arc::from(value))
    }

    /// Another handle on the same copy (no copy of the text), for a
    /// response body still being scrubbed of an injected value when the
    /// run ends: whichever handle drops last zeroizes the text.
    pub(crate) fn share(&self) -> Self {
        Revealed(self.0.clone())
    }

    /// The plaintext. Never log or persist it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Revealed {
    fn drop(&mut self) {
        if let Some(text) = Arc::get_mut(&mut self.0) {
            text.zeroize();
        }
    }
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Implemented by the store data of every run.
pub trait SecretsView: Send {
    fn secrets(&mut self) -> &mut SecretsCtx;
}

/// Where a read found its value, as its audit entry says it.
pub(crate) fn resolved_scope(r: &Resolved) -> ResolvedScope<'_> {
    ResolvedScope {
        space: matches!(r.scope, Scope::Space(_)),
        id: r.scope.id(),
        provenance: match r.provenance {
            Provenance::Environment => "environment",
            Provenance::SpaceOverride => "space-override",
        },
        version: r.version,
    }
}

/// A call's outcome as its audit entry says it.
pub(crate) fn read_outcome<T>(result: &Result<T, SecretError>) -> ReadOutcome {
    result.as_ref().err().map_or(ReadOutcome::Ok, error_outcome)
}

fn error_outcome(e: &SecretError) -> ReadOutcome {
    match e {
        SecretError::NotFound => ReadOutcome::NotFound,
        SecretError::AccessDenied => ReadOutcome::AccessDenied,
        SecretError::InvalidName(_) => ReadOutcome::InvalidName,
        SecretError::Unavailable(_) => ReadOutcome::Unavailable,
    }
}

/// The one mapping from store errors onto WIT `secret-error` variants.
/// Only `invalid-name` carries the store's text (about the guest's own
/// input); the store's own failures are a fixed text, never a path.
pub(crate) fn to_wit_error(err: StoreError) -> SecretError {
    match err {
        StoreError::NotFound { .. }
        | StoreError::UnknownEnvironment(_)
        | StoreError::UnknownSpace(_)
        | StoreError::SpaceNotInEnvironment { .. }
        | StoreError::VersionGone { .. } => SecretError::NotFound,
        // A denial like any other (`look_up` names its reason).
        StoreError::TopicBound { .. } => SecretError::AccessDenied,
        StoreError::InvalidName { .. } | StoreError::InvalidId { .. } => {
            SecretError::InvalidName(err.to_string())
        }
        // Listed one by one, no catch-all: a new store error does not
        // compile until someone decides what a guest sees for it.
        StoreError::Sealed { .. } => SecretError::Unavailable(STORE_SEALED.into()),
        StoreError::InvalidValue { .. }
        | StoreError::InvalidTopics { .. }
        | StoreError::AlreadyExists(_)
        | StoreError::SpaceExists { .. }
        | StoreError::BeingDeleted(_)
        // Writes' errors: a read never meets them.
        | StoreError::VersionMismatch { .. }
        | StoreError::WrongState { .. }
        | StoreError::Corrupt { .. }
        | StoreError::Integrity { .. }
        | StoreError::Locked { .. }
        | StoreError::KeyFile { .. }
        | StoreError::Unsupported(_)
        | StoreError::Contended(_)
        | StoreError::Backend(_)
        | StoreError::Io(_) => SecretError::Unavailable(STORE_UNAVAILABLE.into()),
    }
}

#[cfg(test)]
use guest::Request;

#[cfg(test)]
mod tests;
