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

use std::borrow::Cow;
use std::sync::Arc;

// The store's own limits: a name or id longer than the store accepts is
// refused before it is copied out of guest memory.
use keyhole_audit::{AuditLog, ReadOutcome, RequestedScope, ResolvedScope, SecretRead};
use keyhole_store::{
    MAX_ID_LEN, MAX_NAME_LEN, Provenance, Resolved, Scope, SecretStore, StoreError,
};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower, WasmStr};
use zeroize::Zeroize;

use crate::access::{Access, Denial};
use crate::bindings::keyhole::listener::secrets::SecretError;
use crate::metrics::{CallOutcome, Metrics};

/// The interface in each WIT version keyhole serves: 0.2.0 adds
/// `get-secret-info`; `get-secret` is the same in both.
const INTERFACE_0_1: &str = "keyhole:listener/secrets@0.1.0";
const INTERFACE_0_2: &str = "keyhole:listener/secrets@0.2.0";

/// WIT `secret-info` (0.2.0), lowered from the one host copy of the value
/// as `get-secret` lowers it (see [`Revealed`]).
#[derive(ComponentType, Lower)]
#[component(record)]
struct SecretInfo {
    value: Arc<str>,
    kind: ScopeKind,
    environment: String,
    space: Option<String>,
    version: u64,
}

/// WIT `scope-kind` (0.2.0).
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum ScopeKind {
    #[component(name = "environment")]
    Environment,
    #[component(name = "space")]
    Space,
}

/// `record scope` as it sits in guest memory, not yet copied.
#[derive(ComponentType, Lift)]
#[component(record)]
struct GuestScope {
    environment: Option<WasmStr>,
    space: Option<WasmStr>,
}

/// Per-run state of the secrets capability: who is asking, what they may
/// read, and what they have read (so the run record can be scrubbed).
pub struct SecretsCtx {
    pub(crate) store: SecretStore,
    pub(crate) environment: Arc<str>,
    pub(crate) space: Option<Arc<str>>,
    /// The event's topic, which topic-bound secrets must match.
    pub(crate) topic: Box<str>,
    /// What the deployment may read.
    pub(crate) access: Arc<Access>,
    /// Values revealed during this run, by name, for scrubbing.
    pub(crate) revealed: Vec<(String, Revealed)>,
    pub(crate) metrics: Arc<Metrics>,
    /// Where each call is audited; `None` while the store is sealed.
    pub(crate) audit: Option<AuditCtx>,
    /// What the run record should say about calls that were refused
    /// because they could not be audited.
    pub(crate) notes: Vec<String>,
}

/// The audit log, and what every entry of this run says about the run.
#[derive(Clone)]
pub(crate) struct AuditCtx {
    pub(crate) log: Arc<AuditLog>,
    pub(crate) event_id: Box<str>,
    pub(crate) deployment: Arc<str>,
    pub(crate) module_hash: Arc<str>,
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

/// Links `get-secret` of both WIT versions, and 0.2.0's `get-secret-info`,
/// into `linker`.
pub fn add_to_linker<T: SecretsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    for interface in [INTERFACE_0_1, INTERFACE_0_2] {
        let mut inst = linker.instance(interface)?;
        inst.func_wrap(
            "get-secret",
            |mut cx: StoreContextMut<'_, T>, (name, scope): (WasmStr, Option<GuestScope>)| {
                let result = call(&mut cx, &name, scope.as_ref(), false).map(|found| found.value);
                Ok((result,))
            },
        )?;
        if interface == INTERFACE_0_2 {
            inst.func_wrap(
                "get-secret-info",
                |mut cx: StoreContextMut<'_, T>, (name, scope): (WasmStr, Option<GuestScope>)| {
                    let result =
                        call(&mut cx, &name, scope.as_ref(), true).map(|found| SecretInfo {
                            value: found.value,
                            kind: found.kind,
                            environment: found.environment.unwrap_or_default(),
                            space: found.space,
                            version: found.version,
                        });
                    Ok((result,))
                },
            )?;
        }
    }
    Ok(())
}

/// One call of `get-secret` or (`info`) `get-secret-info`: the read, its
/// audit entry and its metrics.
fn call<T: SecretsView + 'static>(
    cx: &mut StoreContextMut<'_, T>,
    name: &WasmStr,
    scope: Option<&GuestScope>,
    info: bool,
) -> Result<Found, SecretError> {
    let request = read_request(cx, name, scope);
    let ctx = cx.data_mut().secrets();
    let result = match request {
        Ok(req) => ctx.get_secret(req, info),
        // Refused before anything was copied: the entry has no name.
        Err(e) => ctx
            .audited("", None, None, error_outcome(&e), None)
            .and(Err(e)),
    };
    let outcome = match &result {
        Ok(_) => CallOutcome::Ok,
        Err(SecretError::NotFound) => CallOutcome::NotFound,
        Err(SecretError::AccessDenied) => CallOutcome::AccessDenied,
        Err(SecretError::InvalidName(_)) => CallOutcome::InvalidName,
        Err(SecretError::Unavailable(_)) => CallOutcome::Unavailable,
    };
    ctx.metrics.get_secret(outcome);
    result
}

/// A value a read found, and where (the environment only when asked for:
/// `get-secret` copies nothing it does not return).
struct Found {
    value: Arc<str>,
    kind: ScopeKind,
    environment: Option<String>,
    space: Option<String>,
    version: u64,
}

struct Request {
    name: String,
    environment: Option<String>,
    space: Option<String>,
    explicit: bool,
}

/// Copies the arguments out of guest memory, refusing oversize ones first.
fn read_request<T: 'static>(
    cx: &mut StoreContextMut<'_, T>,
    name: &WasmStr,
    scope: Option<&GuestScope>,
) -> Result<Request, SecretError> {
    let name = bounded(cx, name, MAX_NAME_LEN, "secret name")?;
    let (environment, space) = match scope {
        None => (None, None),
        Some(s) => (
            s.environment
                .as_ref()
                .map(|e| bounded(cx, e, MAX_ID_LEN, "environment id"))
                .transpose()?,
            s.space
                .as_ref()
                .map(|e| bounded(cx, e, MAX_ID_LEN, "space id"))
                .transpose()?,
        ),
    };
    Ok(Request {
        name,
        environment,
        space,
        explicit: scope.is_some(),
    })
}

/// Borrows the string in place (no allocation), checks its length, and only
/// then copies it.
fn bounded<T: 'static>(
    cx: &mut StoreContextMut<'_, T>,
    s: &WasmStr,
    max: usize,
    what: &str,
) -> Result<String, SecretError> {
    let text = s
        .to_str(&*cx)
        .map_err(|_| SecretError::InvalidName(format!("{what} is not valid UTF-8")))?;
    if text.len() > max {
        return Err(SecretError::InvalidName(format!(
            "{what} is {} bytes; the limit is {max}",
            text.len()
        )));
    }
    Ok(text.into_owned())
}

/// Why a lookup gave no value: the guest's error, and for a denial the
/// rule that denied it.
struct Refusal {
    error: SecretError,
    denial: Option<Denial>,
}

impl From<SecretError> for Refusal {
    fn from(error: SecretError) -> Self {
        Refusal {
            error,
            denial: None,
        }
    }
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Refusal {
            error: SecretError::AccessDenied,
            denial: Some(denial),
        }
    }
}

impl SecretsCtx {
    fn get_secret(&mut self, req: Request, info: bool) -> Result<Found, SecretError> {
        let looked_up = self.look_up(&req, info);
        let requested = req.explicit.then_some(RequestedScope {
            environment: req.environment.as_deref(),
            space: req.space.as_deref(),
        });
        let found = looked_up.as_ref().ok().map(|(r, _)| resolved_scope(r));
        let (outcome, denial) = match &looked_up {
            Ok(_) => (ReadOutcome::Ok, None),
            Err(r) => (error_outcome(&r.error), r.denial),
        };
        if let Some(d) = denial {
            self.note(format!(
                "get-secret {}: access-denied ({})",
                req.name,
                d.reason()
            ));
        }
        // The entry is accepted before the value is handed out; if it
        // cannot be, the value drops (and zeroizes) here, unrevealed.
        self.audited(
            &req.name,
            requested,
            found,
            outcome,
            denial.map(Denial::reason),
        )?;
        let (resolved, environment) = looked_up.map_err(|r| r.error)?;
        let (kind, space) = match &resolved.scope {
            Scope::Space(s) if info => (ScopeKind::Space, Some(s.clone())),
            Scope::Space(_) => (ScopeKind::Space, None),
            Scope::Environment(_) => (ScopeKind::Environment, None),
        };
        let found = |value| Found {
            value,
            kind,
            environment,
            space,
            version: resolved.version,
        };
        // A value read again (same name, unchanged) is handed out from the
        // copy already revealed: a guest calling get-secret in a loop must
        // not grow host memory, or the scrubbing after the run, per call.
        if let Some((_, seen)) = self
            .revealed
            .iter()
            .find(|(n, v)| *n == req.name && v.expose() == resolved.value.expose())
        {
            return Ok(found(seen.0.clone()));
        }
        // The store's copy zeroizes as it drops here; see `Revealed`.
        let revealed = Revealed::new(resolved.value.expose());
        let value = revealed.0.clone();
        self.revealed.push((req.name, revealed));
        Ok(found(value))
    }

    /// What the store has for the request, and the environment it was
    /// read in, if the deployment may read it. The name is checked against
    /// the declared ones before any lookup.
    fn look_up(
        &mut self,
        req: &Request,
        info: bool,
    ) -> Result<(Resolved, Option<String>), Refusal> {
        keyhole_store::validate_name(&req.name).map_err(to_wit_error)?;
        self.access.check_name(&req.name)?;
        let result = {
            let (environment, space) = self.authorize(req)?;
            self.store
                .resolve_on_topic(&environment, space, &req.name, &self.topic)
                .map(|r| (r, info.then(|| environment.into_owned())))
        };
        result.map_err(|e| {
            if let StoreError::TopicBound { .. } = e {
                return Denial::TopicMismatch.into();
            }
            if e.is_unavailable() {
                self.note(format!("get-secret {}: {e}", req.name));
            }
            to_wit_error(e).into()
        })
    }

    /// Adds a note to the run record, unless it is there already or the
    /// record has its fill: a guest calling in a loop adds one.
    fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Records the call in the audit log, or refuses it (`unavailable`) if
    /// the entry cannot be accepted: fail closed.
    fn audited(
        &mut self,
        name: &str,
        requested: Option<RequestedScope<'_>>,
        resolved: Option<ResolvedScope<'_>>,
        outcome: ReadOutcome,
        reason: Option<&str>,
    ) -> Result<(), SecretError> {
        let refused = match &self.audit {
            // Only a sealed store has no audit log, and it serves nothing.
            None => Some("the store is sealed".to_owned()),
            Some(a) => a
                .log
                .secret_read(&SecretRead {
                    time_ms: crate::now_ms(),
                    event_id: &a.event_id,
                    topic: &self.topic,
                    deployment: &a.deployment,
                    module_sha256: &a.module_hash,
                    name,
                    requested,
                    resolved,
                    injected: None,
                    outcome,
                    reason,
                })
                .err()
                .map(|e| e.0),
        };
        match refused {
            None => {
                self.metrics.audit_entry();
                Ok(())
            }
            // Sealed: the call failed anyway, and says why.
            Some(_) if outcome != ReadOutcome::Ok && self.audit.is_none() => Ok(()),
            Some(why) => {
                self.metrics.audit_refused();
                self.note(format!("get-secret {name}: {AUDIT_UNAVAILABLE} ({why})"));
                Err(SecretError::Unavailable(AUDIT_UNAVAILABLE.into()))
            }
        }
    }

    /// Decides which scope a request reads, or denies it. Denial happens
    /// before any lookup of the name, so it reveals nothing about whether
    /// the name exists; and it does not depend on whether a scope exists
    /// outside what the deployment may read, so it reveals nothing about
    /// which scopes exist either:
    ///
    /// - an environment is denied unless it is the own one or granted,
    ///   whether it exists or not;
    /// - a space named alone is denied unless it is granted or belongs to
    ///   the own or a granted environment, so a space that exists nowhere
    ///   is denied like another environment's (answering `not-found` for
    ///   it would tell a listener which space ids exist on the host);
    /// - a space named with an allowed environment reads from that
    ///   environment: a space outside it, existing or not, is `not-found`.
    ///
    /// Allowed means the own environment, or granted (`access.rs`).
    fn authorize<'r>(&'r self, req: &'r Request) -> Result<ReadScope<'r>, Refusal> {
        if !req.explicit {
            return Ok((Cow::Borrowed(&*self.environment), self.space.as_deref()));
        }
        for id in req.environment.iter().chain(req.space.iter()) {
            keyhole_store::validate_id(id).map_err(to_wit_error)?;
        }
        let environment: Cow<'r, str> = match (&req.environment, &req.space) {
            (Some(env), _) => Cow::Borrowed(env),
            // A space named alone reads from the environment it belongs to.
            (None, Some(space)) => match self.store.space(space) {
                Ok(Some(info)) => Cow::Owned(info.environment),
                // In no environment, so in none the deployment may read.
                Ok(None) => return Err(Denial::ScopeNotGranted.into()),
                Err(e) => return Err(to_wit_error(e).into()),
            },
            (None, None) => Cow::Borrowed(&*self.environment),
        };
        self.access
            .check_scope(&self.environment, &environment, req.space.as_deref())?;
        Ok((environment, req.space.as_deref()))
    }
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

/// The environment and optional space a request reads from.
type ReadScope<'r> = (Cow<'r, str>, Option<&'r str>);

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
#[path = "secrets_tests.rs"]
mod tests;
